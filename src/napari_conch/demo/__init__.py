"""The demo model: a small CoCa trained here on openly licensed tissue images. Not CONCH.

CONCH's weights are gated and may not be redistributed, so the package ships this small model
(our architecture code, our own byte-level BPE tokenizer, trained by ``train/train_demo.py`` on
the real images listed in ``train/data.json``) so that the plugin works out of the box. It knows
a handful of concepts (tumour cells, stroma, inflammatory cells, DAB-positive staining, tissue
versus glass); see ``docs/demo-model.md`` for its data, held-out metrics and limits. It is a
demo, not for diagnosis.

Importing this module imports nothing heavy; :func:`load_demo_model` loads torch.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from napari_conch.errors import CheckpointError

if TYPE_CHECKING:
    from napari_conch.model import LoadedModel

#: How the demo model is labelled wherever it appears (widgets, CLI output, stores).
DEMO_MODEL_NAME = "demo model"
#: Tile side, in pixels at about 0.5 um/px (20x), that the demo model was trained on.
DEMO_TILE_SIZE = 128

WEIGHTS_FILE = "demo_coca.pt"
CONFIG_FILE = "demo_coca.json"
TOKENIZER_FILE = "demo_tokenizer.json"


def demo_model_paths() -> tuple[Path, Path, Path]:
    """The shipped ``(weights, config, tokenizer)`` files inside the installed package.

    Raises
    ------
    CheckpointError
        When a file is missing (a broken installation).
    """
    folder = resources.files("napari_conch.demo") / "data"
    paths = []
    for name in (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE):
        entry = folder / name
        if not isinstance(entry, Path) or not entry.is_file():
            raise CheckpointError(
                f"the {DEMO_MODEL_NAME}'s file {name!r} is missing from the installed package "
                f"({folder}); reinstall napari-conch"
            )
        paths.append(entry)
    return paths[0], paths[1], paths[2]


def load_demo_model(device=None, precision: str | None = None) -> LoadedModel:
    """Load the demo model (once per device; see :func:`napari_conch.model.load_model`).

    Parameters
    ----------
    device : str or torch.device, optional
        Default: CUDA, else MPS, else CPU.
    precision : str, optional
        As for :func:`~napari_conch.model.load_model` (default fp32).
    """
    from napari_conch.model import load_model

    weights, config, tokenizer = demo_model_paths()
    # The weights ship as float16 (half the size); loading computes in float32.
    return load_model(
        weights, config=config, tokenizer=tokenizer, device=device, precision=precision
    )


__all__ = [
    "DEMO_MODEL_NAME",
    "DEMO_TILE_SIZE",
    "demo_model_paths",
    "load_demo_model",
]
