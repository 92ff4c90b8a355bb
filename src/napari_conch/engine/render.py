"""Pictures of maps over a slide, without napari: a thumbnail with the map blended on top.

Used by the headless demo (``napari-conch demo``) to write a PNG a person can look at. The
similarity map is stretched to its own range for display (the TIFF export keeps raw values);
label maps use the export's class colours. Cells that were not computed stay uncoloured.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from napari_conch.engine.colors import label_color
from napari_conch.engine.overlap import MapGeometry

#: A perceptually ordered dark-to-bright ramp (black, purple, red, orange, pale yellow).
RAMP = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


def thumbnail(slide, max_side: int = 1024) -> tuple[np.ndarray, float]:
    """The slide at most ``max_side`` pixels on its longer side, and its level-0 px per pixel.

    Reads the coarsest level that is still at least ``max_side`` pixels (or level 0) and
    block-averages it down; never reads more than that level.
    """
    height, width = slide.shape
    target = max(height, width) / max_side
    level = 0
    for i, d in enumerate(slide.downsamples):
        if d <= max(target, 1.0):
            level = i
    step = max(1, int(np.ceil(target / slide.downsamples[level])))
    data = slide.levels[level]
    if step > 1:
        data = da.coarsen(np.mean, data, {0: step, 1: step}, trim_excess=True)
    image = np.asarray(data.compute()).round().clip(0, 255).astype(np.uint8)
    return image, slide.downsamples[level] * step


def colorize(values: np.ndarray) -> np.ndarray:
    """Map values to RGB through :data:`RAMP`, stretched to their finite range; NaN -> 0."""
    finite = np.isfinite(values)
    rgb = np.zeros((*values.shape, 3), dtype=np.float32)
    if not finite.any():
        return rgb
    low, high = np.nanmin(values), np.nanmax(values)
    t = np.zeros_like(values, dtype=np.float32)
    t[finite] = (values[finite] - low) / (high - low) if high > low else 0.5
    position = t * (len(RAMP) - 1)
    index = np.clip(position.astype(int), 0, len(RAMP) - 2)
    frac = (position - index)[..., None]
    rgb[:] = RAMP[index] * (1 - frac) + RAMP[index + 1] * frac
    rgb[~finite] = 0
    return rgb


def cells_at(
    geometry: MapGeometry,
    shape: tuple[int, int],
    pixel_size: float,
    start: tuple[int, int] = (0, 0),
) -> tuple:
    """Map cell ``(row, col)`` under every pixel of a ``shape`` image, and where one exists.

    The image's pixels are ``pixel_size`` level-0 pixels wide, its pixel ``(0, 0)`` is pixel
    ``start`` of an image whose corner is the slide's; a pixel takes the cell under its centre.
    """
    ys = (np.arange(start[0], start[0] + shape[0]) + 0.5) * pixel_size
    xs = (np.arange(start[1], start[1] + shape[1]) + 0.5) * pixel_size
    rows = np.floor((ys - geometry.origin[0]) / geometry.cell_size).astype(int)
    cols = np.floor((xs - geometry.origin[1]) / geometry.cell_size).astype(int)
    inside = ((rows >= 0) & (rows < geometry.shape[0]))[:, None] & (
        (cols >= 0) & (cols < geometry.shape[1])
    )[None, :]
    rows, cols = np.clip(rows, 0, geometry.shape[0] - 1), np.clip(cols, 0, geometry.shape[1] - 1)
    return rows[:, None], cols[None, :], inside


def overlay(
    image: np.ndarray,
    pixel_size: float,
    geometry: MapGeometry,
    values: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    opacity: float = 0.55,
) -> np.ndarray:
    """Blend a similarity map (``values``) or a label map over a thumbnail; uint8 RGB."""
    rows, cols, inside = cells_at(geometry, image.shape[:2], pixel_size)
    if labels is not None:
        lut = np.array([label_color(i) for i in range(int(labels.max()) + 1)], np.float32)
        colours = lut[labels][rows, cols]
        painted = inside & (labels[rows, cols] > 0)
    else:
        colours = colorize(values)[rows, cols]
        painted = inside & np.isfinite(values)[rows, cols]
    out = image.astype(np.float32)
    out[painted] = (1 - opacity) * out[painted] + opacity * colours[painted]
    return out.round().clip(0, 255).astype(np.uint8)
