"""Sample data shipped with the package (no heavy imports, usable headless)."""

from __future__ import annotations

from pathlib import Path

#: OpenSlide's CMU-1-Small-Region: a real H&E skin slide, Aperio SVS, 0.499 um/px, CC0 1.0
#: (licence notice next to the file).
CMU_SMALL_REGION = Path(__file__).parent / "_napari" / "data" / "cmu_small_region.svs"
