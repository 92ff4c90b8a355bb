"""Regions of a slide as model input: for captioning and for ranking candidate texts.

The rule (documented in the README and ``docs/``): a region is a box in level-0 pixels, read at
the chosen pyramid level. For **captioning** it is padded to a square with white (glass) around
its centre and resized to the model's input, giving one image and one caption. For **ranking
texts** a region no larger than twice the model input on its longer side is treated the same way;
a larger one is cut into input-sized tiles (edge tiles padded white), each tile embedded, and the
normalised tile embeddings averaged and renormalised (mean pooling), so a large region is judged
at the resolution the model was trained on.

Memory is bounded whatever the box: the box is first clipped to the slide (a box entirely
outside it is a one-line error); when the clipped box holds more than :data:`MAX_REGION_PIXELS`
pixels at the chosen level, it is read at the finest coarser level that fits, or, past the
coarsest level, shrunk by an integer factor while it is read band by band (logged either way).
Work is bounded too: a box that would need more than :data:`MAX_DECODE_FACTOR` times
:data:`MAX_REGION_PIXELS` pixels decoded at the coarsest level is refused in one line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_conch.engine.prompts import PromptSet, text_queries
from napari_conch.errors import NapariConchError
from napari_conch.model.generation import GenerationConfig
from napari_conch.model.loaded import LoadedModel
from napari_conch.slide import Slide
from napari_conch.slide.lowres import read_region_reduced

logger = logging.getLogger("napari_conch")

WHITE = 255
#: Largest number of pixels a region is read with (16 Mpx: 48 MB of RGB).
MAX_REGION_PIXELS = 4096 * 4096
#: Largest number of level pixels decoded to read one region shrunk (``max_pixels`` times this):
#: past the coarsest level a larger box is refused, since every one of its pixels would be
#: decoded (a 100k x 100k px TIFF without a pyramid took 138 s).
MAX_DECODE_FACTOR = 32


@dataclass(frozen=True)
class Region:
    """A box of a slide: level-0 pixel corners and the level to read it at."""

    x0: float
    y0: float
    x1: float
    y1: float
    level: int = 0

    def __post_init__(self) -> None:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise NapariConchError(
                f"box ({self.x0}, {self.y0}, {self.x1}, {self.y1}) is empty: give X0 Y0 X1 Y1 "
                "with X1 > X0 and Y1 > Y0 (level-0 pixels)"
            )


def read_region_pixels(
    slide: Slide, region: Region, max_pixels: int = MAX_REGION_PIXELS
) -> np.ndarray:
    """The region's pixels, clipped to the slide, ``uint8 [h, w, 3]``.

    Read at the region's level, or coarser when it would exceed ``max_pixels`` there (see the
    module's rule).

    Raises
    ------
    NapariConchError
        When the level does not exist or the box lies outside the slide.
    """
    if not 0 <= region.level < len(slide.levels):
        raise NapariConchError(
            f"level {region.level} does not exist in {slide.name} "
            f"(levels 0..{len(slide.levels) - 1})"
        )
    height, width = slide.shape
    x0, y0 = max(region.x0, 0.0), max(region.y0, 0.0)
    x1, y1 = min(region.x1, float(width)), min(region.y1, float(height))
    if x0 >= x1 or y0 >= y1:
        raise NapariConchError(
            f"box ({region.x0:g}, {region.y0:g}, {region.x1:g}, {region.y1:g}) lies outside "
            f"{slide.name} ({width} x {height} px at level 0)"
        )
    for level in range(region.level, len(slide.levels)):
        box = _level_box(slide, level, x0, y0, x1, y1)
        if box[2] * box[3] <= max_pixels or level == len(slide.levels) - 1:
            break
    factor = max(1, math.ceil(math.sqrt(box[2] * box[3] / max_pixels)))
    if box[2] * box[3] > MAX_DECODE_FACTOR * max_pixels:
        raise NapariConchError(
            f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) of {slide.name} is {box[2]} x {box[3]} px "
            f"at level {level}, its coarsest: reading it would decode "
            f"{_mpx(box[2] * box[3])} Mpx (at most {_mpx(MAX_DECODE_FACTOR * max_pixels)}); "
            "choose a smaller box, or a slide with a pyramid"
        )
    if level != region.level or factor > 1:
        shrunk = f" shrunk {factor} times" if factor > 1 else ""
        logger.warning(
            "%s: box (%g, %g, %g, %g) read at level %d%s to stay under %d pixels",
            *(slide.name, x0, y0, x1, y1, level, shrunk, max_pixels),
        )
    if factor > 1:
        return read_region_reduced(slide, level, *box, factor)
    return slide.read_region(level, *box)


def _mpx(pixels: float) -> str:
    mega = pixels / 1e6
    return f"{mega:,.0f}" if mega >= 1000 else f"{mega:.3g}"


def _level_box(
    slide: Slide, level: int, x0: float, y0: float, x1: float, y1: float
) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of a level-0 box (inside the slide) in a level's pixels, at least 1 x 1."""
    ds = slide.downsamples[level]
    lh, lw = slide.level_shape(level)
    x, y = min(round(x0 / ds), lw - 1), min(round(y0 / ds), lh - 1)
    w = max(1, min(round((x1 - x0) / ds), lw - x))
    h = max(1, min(round((y1 - y0) / ds), lh - y))
    return x, y, w, h


def pad_to_square(pixels: np.ndarray) -> np.ndarray:
    """Pad ``[h, w, 3]`` with white around its centre to a square."""
    h, w = pixels.shape[:2]
    side = max(h, w)
    out = np.full((side, side, 3), WHITE, dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = pixels
    return out


def split_into_tiles(pixels: np.ndarray, size: int) -> np.ndarray:
    """Cut ``[h, w, 3]`` into ``size``-pixel tiles ``[n, size, size, 3]`` (edges padded white)."""
    h, w = pixels.shape[:2]
    rows, cols = -(-h // size), -(-w // size)
    canvas = np.full((rows * size, cols * size, 3), WHITE, dtype=np.uint8)
    canvas[:h, :w] = pixels
    tiles = canvas.reshape(rows, size, cols, size, 3).swapaxes(1, 2)
    return tiles.reshape(rows * cols, size, size, 3)


def region_embedding(model: LoadedModel, pixels: np.ndarray) -> torch.Tensor:
    """One normalised embedding ``[D]`` for a region's pixels (see the module's rule)."""
    if max(pixels.shape[:2]) <= 2 * model.image_size:
        return model.embed_images(pad_to_square(pixels))[0]
    tiles = split_into_tiles(pixels, model.image_size)
    embeddings = torch.cat(
        [model.embed_images(tiles[i : i + 16]) for i in range(0, len(tiles), 16)]
    )
    return F.normalize(embeddings.mean(0), dim=-1)


def rank_texts(
    model: LoadedModel,
    slide: Slide,
    region: Region,
    candidates: Sequence[str] | PromptSet,
    templates: str | Sequence[str] = "none",
) -> list[tuple[str, float, float]]:
    """Candidate texts (or the classes of a prompt set) for a region, best first.

    Parameters
    ----------
    candidates
        Texts, each its own candidate, or a :class:`PromptSet` whose classes are ensembled the
        CONCH way (synonyms x templates, normalised, averaged, renormalised).
    templates
        For plain texts: ``"none"`` (default, the texts as given) or ``"conch"``.

    Returns
    -------
    list of (name, probability, cosine)
        Probabilities are ``softmax(logit_scale * cosine)`` over the candidates, with the
        model's own temperature.
    """
    if not isinstance(candidates, PromptSet):
        candidates = [t for t in candidates if t.strip()]
        if not candidates:
            raise NapariConchError("give at least one candidate text")
    names, text_embeddings = text_queries(model, candidates, templates)
    image = region_embedding(model, read_region_pixels(slide, region))
    cosine = torch.from_numpy(text_embeddings) @ image
    probs = (model.logit_scale * cosine).softmax(-1)
    order = torch.argsort(probs, descending=True).tolist()
    return [(names[i], float(probs[i]), float(cosine[i])) for i in order]


def caption_region(
    model: LoadedModel, slide: Slide, region: Region, cfg: GenerationConfig | None = None
) -> str:
    """A caption of the region (padded to a square and resized to the model input).

    Raises
    ------
    NoDecoderError
        When the checkpoint has no captioning decoder (the public CONCH release).
    """
    pixels = pad_to_square(read_region_pixels(slide, region))
    return model.caption(pixels, cfg)[0]
