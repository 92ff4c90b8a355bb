"""Sample data shipped with the package (no heavy imports, usable headless)."""

from __future__ import annotations

from pathlib import Path

#: OpenSlide's CMU-1-Small-Region: a real H&E skin slide, Aperio SVS, 0.499 um/px, CC0 1.0
#: (licence notice next to the file).
CMU_SMALL_REGION = Path(__file__).parent / "_napari" / "data" / "cmu_small_region.svs"
#: The held-out stripes of the demo model's two H&E training images (high-grade serous ovarian
#: carcinoma: tumour nest, stroma) on white glass, 1664 x 896 px, no MPP; BSD-3 (histolytics,
#: licence next to the file). The demo model never saw these pixels in training.
HGSC_HELDOUT = Path(__file__).parent / "_napari" / "data" / "hgsc_heldout.tif"

#: Concepts a prompt can find on the shipped H&E samples: those the demo model was trained on
#: (``napari_conch.demo.DEMO_CONCEPTS``), and the labels of the precision gate's map.
SAMPLE_CONCEPTS = (
    "tumor cells",
    "stroma",
    "inflammatory cells",
    "tissue",
    "background glass",
    "dab positive staining",
    "negative immunostaining",
)
