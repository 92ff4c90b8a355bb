"""The demo model: a small CoCa trained here on openly licensed tissue images. Not CONCH.

CONCH's weights are gated and may not be redistributed, so the package ships this small model
(our architecture code, our own byte-level BPE tokenizer, trained by ``train/train_demo.py`` on
the real images listed in ``train/data.json``) so that the plugin works out of the box. It knows
a handful of concepts (tumour cells, stroma, inflammatory cells, DAB-positive staining, tissue
versus glass); see ``docs/demo-model.md`` for its data, held-out metrics and limits. It is a
demo, not for diagnosis.

Importing this package registers the model source ``demo`` (see
:mod:`napari_conch.model.sources`, which imports it when ``demo`` is first asked for), so
``load_model("demo")``, ``--model demo`` and the Model panel's ``demo`` all mean this model. It
imports nothing heavy; :func:`load_demo_model` loads torch.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from napari_conch.errors import CheckpointError
from napari_conch.model.sources import BUNDLED, ResolvedSource, SourceInfo, register_source
from napari_conch.samples import SAMPLE_CONCEPTS

if TYPE_CHECKING:
    from napari_conch.model import LoadedModel

#: How the demo model is labelled wherever it appears (widgets, CLI output, stores).
DEMO_MODEL_NAME = "demo model"
#: The model source name of the demo model (``load_model("demo")``, ``--model demo``).
DEMO_SOURCE = "demo"
#: Tile side, in pixels at about 0.5 um/px (20x), that the demo model was trained on.
DEMO_TILE_SIZE = 128
#: The prompts the demo model was trained and evaluated on, one per concept (see
#: docs/demo-model.md for their held-out AUCs and the other phrasings it knows). H&E: tumour,
#: stroma, inflammation, tissue (skin), glass; IHC: DAB-positive, DAB-negative.
DEMO_CONCEPTS = SAMPLE_CONCEPTS
#: The prompts the first view shows on the H&E sample: the three H&E concepts measured there.
DEMO_VIEW_PROMPTS = ("tumor cells", "stroma", "inflammatory cells")
#: What the demo model is, for the source registry.
DEMO_SOURCE_INFO = SourceInfo(
    name=DEMO_SOURCE,
    kind=BUNDLED,
    display_name=DEMO_MODEL_NAME,
    is_demo=True,
    default_tile_size=DEMO_TILE_SIZE,
    description="the demo model shipped with napari-conch (not CONCH; not for diagnosis)",
)

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


def resolve_demo(token: str | None = None) -> ResolvedSource:
    """The demo model's files, for the source registry (``token`` is not needed)."""
    weights, config, tokenizer = demo_model_paths()
    return ResolvedSource(DEMO_SOURCE_INFO, weights, config, tokenizer)


register_source(DEMO_SOURCE_INFO, resolve_demo)


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

    # The weights ship as float16 (half the size); loading computes in float32.
    return load_model(DEMO_SOURCE, device=device, precision=precision)


__all__ = [
    "DEMO_CONCEPTS",
    "DEMO_MODEL_NAME",
    "DEMO_SOURCE",
    "DEMO_SOURCE_INFO",
    "DEMO_TILE_SIZE",
    "DEMO_VIEW_PROMPTS",
    "demo_model_paths",
    "load_demo_model",
    "resolve_demo",
]
