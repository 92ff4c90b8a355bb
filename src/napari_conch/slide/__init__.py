"""Slides as lazy pyramids with physical pixel size, tile grids and tissue masks.

No torch, no Qt: ``open_slide`` reads SVS, NDPI, OME-TIFF, tiled/strip TIFF, OME-Zarr, zarr,
PNG and JPEG; ``make_grid`` lays tiles at a level or an MPP; ``scan_tissue`` finds the tiles
worth embedding and those whose data is damaged (``tissue_mask``: the mask alone;
``scan_tissue_steps``: the scan as a generator of ``(done, total)`` steps).
"""

from __future__ import annotations

from napari_conch.slide.base import Slide
from napari_conch.slide.grid import TileGrid, make_grid
from napari_conch.slide.open import open_slide
from napari_conch.slide.tissue import TissueScan, scan_tissue, scan_tissue_steps, tissue_mask

__all__ = [
    "Slide",
    "TileGrid",
    "TissueScan",
    "make_grid",
    "open_slide",
    "scan_tissue",
    "scan_tissue_steps",
    "tissue_mask",
]
