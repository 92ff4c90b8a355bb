"""The parity gate of a fast number format: does the image encoder still give fp32's answers?

bf16 and int8 change every embedding a little. The gate measures how much on real tissue, through
the model's own preprocessing: the tiles of the held-out H&E sample shipped with the package
(:data:`napari_conch.samples.HGSC_HELDOUT`, never seen by the demo model in training) at the
model's tile size, embedded once in fp32 and once in the candidate format. It passes when

- every tile's embedding has cosine >= :data:`MIN_COSINE` to its fp32 embedding, and
- the labels map (each tile's best prompt among :data:`napari_conch.samples.SAMPLE_CONCEPTS`) agrees
  with fp32's on >= :data:`MIN_LABEL_AGREEMENT` of the tiles. Without a tokenizer the "prompts"
  are the fp32 embeddings of a few evenly spaced tiles (said in the result).

The result is cached per model fingerprint and format in the user cache folder
(``precision-gate/``), so a model is gated once; ``--precision auto`` consults it before picking
bf16 on a CPU (:func:`napari_conch.model.precision_choice.apply_precision`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_conch.errors import TokenizerNotFoundError
from napari_conch.model.formats import PrecisionWarning

__all__ = ["GateResult", "PrecisionWarning", "cached_gate", "gate_tiles", "run_gate"]

logger = logging.getLogger("napari_conch")

#: Every tile's cosine to its fp32 embedding must reach this.
MIN_COSINE = 0.999
#: The share of tiles whose label must equal fp32's.
MIN_LABEL_AGREEMENT = 0.99
#: Tiles per model call while gating.
GATE_BATCH = 16
#: Anchor tiles standing in for prompts when the model has no tokenizer.
ANCHORS = 7
#: Tiles of the sample the gate measures (``None``: all of them; 325 at 128 px, 18 at 448 px).
GATE_MAX_TILES: int | None = None
#: Bump when what the gate measures changes (old cached results are then not used).
GATE_VERSION = 1
LABELS_PROMPTS = "prompts"
LABELS_ANCHORS = "anchor tiles"


@dataclass(frozen=True)
class GateResult:
    """What the gate measured for one model and format.

    Attributes
    ----------
    precision : str
        The format gated (``bf16``, ``int8``).
    min_cosine : float
        The smallest per-tile cosine to fp32 (NaN when an embedding was not finite).
    label_agreement : float
        Share of tiles whose label equals fp32's.
    tiles : int
        Tiles measured.
    labels : str
        What the labels were made from: ``"prompts"`` or ``"anchor tiles"``.
    """

    precision: str
    min_cosine: float
    label_agreement: float
    tiles: int
    labels: str = LABELS_PROMPTS

    @property
    def passed(self) -> bool:
        """Both thresholds met (a NaN cosine never passes)."""
        return bool(self.min_cosine >= MIN_COSINE and self.label_agreement >= MIN_LABEL_AGREEMENT)

    def summary(self) -> str:
        """``min cosine 0.99995, labels 100 % of 325 tiles``."""
        pct = 100 * self.label_agreement
        shown = f"{pct:.0f}" if pct in (0.0, 100.0) else f"{min(pct, 99.9):.1f}"
        labels = "" if self.labels == LABELS_PROMPTS else f" ({self.labels})"
        return f"min cosine {self.min_cosine:.5f}, labels {shown} %{labels} of {self.tiles} tiles"

    def failure(self) -> str:
        """What fell short, e.g. ``min cosine 0.98 < 0.999``; empty when passed."""
        parts = []
        if not self.min_cosine >= MIN_COSINE:
            parts.append(f"min cosine {self.min_cosine:.5f} < {MIN_COSINE}")
        if self.label_agreement < MIN_LABEL_AGREEMENT:
            parts.append(
                f"labels agree on {100 * self.label_agreement:.1f} % < "
                f"{100 * MIN_LABEL_AGREEMENT:.0f} %"
            )
        return "; ".join(parts)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GateResult:
        """A result from :func:`dataclasses.asdict`'s form (a ``KeyError``/``TypeError`` if
        malformed)."""
        return cls(
            precision=str(values["precision"]),
            min_cosine=float(values["min_cosine"]),
            label_agreement=float(values["label_agreement"]),
            tiles=int(values["tiles"]),
            labels=str(values["labels"]),
        )


def gate_tiles(tile_size: int, max_tiles: int | None = None) -> np.ndarray:
    """Tiles ``uint8 [N, tile_size, tile_size, 3]`` of the held-out H&E sample.

    Half-overlapping tiles cover the 1664 x 896 px sample; ``max_tiles`` keeps that many, evenly
    spaced (for quick checks of big models).
    """
    import tifffile

    from napari_conch.samples import HGSC_HELDOUT

    image = np.asarray(tifffile.imread(HGSC_HELDOUT))[..., :3]
    height, width = image.shape[:2]
    size = min(int(tile_size), height, width)
    step = max(size // 2, 1)
    tiles = [
        image[y : y + size, x : x + size]
        for y in range(0, height - size + 1, step)
        for x in range(0, width - size + 1, step)
    ]
    if max_tiles is not None and len(tiles) > max_tiles:
        keep = np.linspace(0, len(tiles) - 1, int(max_tiles)).round().astype(int)
        tiles = [tiles[i] for i in keep]
    return np.ascontiguousarray(np.stack(tiles))


def embed_all(embed: Callable[[np.ndarray], torch.Tensor], tiles: np.ndarray) -> torch.Tensor:
    """``embed`` over ``tiles`` in batches of :data:`GATE_BATCH`, as float32 ``[N, D]``."""
    parts = [embed(tiles[i : i + GATE_BATCH]).float() for i in range(0, len(tiles), GATE_BATCH)]
    return torch.cat(parts)


def compare(
    reference: torch.Tensor,
    candidate: torch.Tensor,
    classes: torch.Tensor,
    centre: torch.Tensor | None = None,
) -> tuple[float, float]:
    """``(min cosine, label agreement)`` of normalised ``candidate`` against ``reference``.

    ``classes`` ``[K, D]`` are the label directions; a tile's label is its best class.
    ``centre`` is subtracted from the embeddings before labelling (anchor tiles: tiles of one
    slide are nearly parallel, and their labels are only meaningful relative to the mean).
    """
    ref, cand = unit(reference), unit(candidate)
    cosine = (ref * cand).sum(dim=-1)
    if centre is not None:
        ref, cand = ref - centre, cand - centre
    finite = bool(torch.isfinite(cand).all())
    min_cosine = float(cosine.min()) if finite else float("nan")
    labels_ref = (ref @ classes.float().T).argmax(dim=-1)
    labels_cand = (cand @ classes.float().T).argmax(dim=-1)
    agreement = float((labels_ref == labels_cand).float().mean()) if finite else 0.0
    return min_cosine, agreement


def unit(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32, L2-normalised along its last axis."""
    return torch.nn.functional.normalize(x.float(), dim=-1)


def label_classes(reference_model: Any, reference: torch.Tensor, prompts: Sequence[str]):
    """``(classes, centre, labels)``: the prompts' text embeddings (no centre), else
    :data:`ANCHORS` tiles far apart (farthest-point) in the centred fp32 embeddings."""
    try:
        return reference_model.embed_texts(list(prompts)), None, LABELS_PROMPTS
    except TokenizerNotFoundError:
        pass
    units = unit(reference)
    centre = units.mean(dim=0)
    centred = units - centre
    chosen = [int(centred.norm(dim=-1).argmax())]
    nearest = (centred - centred[chosen[0]]).norm(dim=-1)
    while len(chosen) < min(ANCHORS, len(units)):
        chosen.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, (centred - centred[chosen[-1]]).norm(dim=-1))
    return centred[chosen], centre, LABELS_ANCHORS


def run_gate(
    reference_model: Any,
    candidate_model: Any,
    precision: str,
    tiles: np.ndarray | None = None,
    prompts: Sequence[str] | None = None,
) -> GateResult:
    """Gate ``candidate_model`` (in ``precision``) against ``reference_model`` (fp32).

    Both have ``embed_images`` (uint8 tiles -> embeddings, through the model's preprocessing);
    ``tiles`` defaults to :func:`gate_tiles` at the model's tile size, ``prompts`` to the demo
    concepts.
    """
    if tiles is None:
        tiles = gate_tiles(reference_model.default_tile_size, GATE_MAX_TILES)
    if prompts is None:
        from napari_conch.samples import SAMPLE_CONCEPTS

        prompts = SAMPLE_CONCEPTS
    reference = embed_all(reference_model.embed_images, tiles)
    candidate = embed_all(candidate_model.embed_images, tiles)
    classes, centre, labels = label_classes(reference_model, reference, prompts)
    min_cosine, agreement = compare(reference, candidate, classes, centre)
    return GateResult(precision, min_cosine, agreement, len(tiles), labels)


# ------------------------------------------------------------------------------ the cache
def gate_cache_folder() -> Path:
    """``<user cache>/precision-gate``."""
    from napari_conch.cache_dir import user_cache_root

    return user_cache_root() / "precision-gate"


def gate_cache_path(model: Any, precision: str, extra: dict[str, Any] | None = None) -> Path:
    """Where the gate result of ``model`` in ``precision`` is kept.

    Keyed by the weights' fingerprint and what else changes the numbers: the format, the model's
    tile size and preprocessing, torch's version, the CPU's bf16 flag and ``extra`` (the int8
    path adds ONNX Runtime's version).
    """
    from napari_conch.model.formats import cpu_native_bf16

    key = {
        "gate": GATE_VERSION,
        "tile": int(model.default_tile_size),
        "preprocess": model.preprocess_info,
        "torch": torch.__version__,
        "cpu_bf16": cpu_native_bf16(),
        "device": str(model.device),
        **(extra or {}),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return gate_cache_folder() / f"{str(model.fingerprint)[:16]}-{precision}-{digest[:12]}.json"


def read_cached(path: Path) -> GateResult | None:
    """The result kept at ``path``, or ``None`` when there is none or it is unreadable."""
    try:
        return GateResult.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.info("precision gate: ignoring the unreadable cached result %s (%s)", path, exc)
        return None


def write_cached(path: Path, result: GateResult) -> None:
    """Keep ``result`` at ``path``, atomically (a temporary file renamed); a folder that cannot
    be written only costs running the gate again next time."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gate-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(result), f)
        os.replace(tmp, path)
    except OSError as exc:
        logger.info("precision gate: could not keep the result in %s (%s)", path, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cached_gate(
    reference_model: Any,
    candidate_model: Any,
    precision: str,
    extra: dict[str, Any] | None = None,
) -> GateResult:
    """:func:`run_gate` once per model fingerprint and format; later calls read the result."""
    path = gate_cache_path(reference_model, precision, extra)
    result = read_cached(path)
    if result is None or result.precision != precision:
        result = run_gate(reference_model, candidate_model, precision)
        write_cached(path, result)
    return result
