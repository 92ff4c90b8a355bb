"""Sample data for napari's File > Open Sample menu; all work offline.

- :func:`hgsc_heldout`: held-out parts of the demo model's H&E training images (``data/``),
  where the demo model is known to work; what ``napari-conch view`` opens by default.
- :func:`cmu_small_region`: the real CC0 slide shipped with the package (``data/``).
- :func:`synthetic_slide`: a 50,000 x 50,000 pixel tissue-like slide whose chunks are computed
  when napari shows them (see :mod:`.synthetic`); nothing is stored.
"""

from __future__ import annotations

from typing import Any

from napari_conch._napari.layers.slide_source import META_KEY
from napari_conch._napari.reader import LayerData, read_slide
from napari_conch._napari.synthetic import SyntheticSlide, SyntheticSpec
from napari_conch.samples import CMU_SMALL_REGION, HGSC_HELDOUT

#: Layer name of the synthetic slide.
SYNTHETIC_NAME = "synthetic tissue"


def hgsc_heldout() -> list[LayerData]:
    """Held-out H&E of high-grade serous ovarian carcinoma (1664 x 896 px; BSD-3, histolytics).

    The two stripes of the demo model's H&E training images that it never saw in training, on
    white glass: a tumour nest with lymphocytes above, stroma below.
    """
    return read_slide(HGSC_HELDOUT)


def cmu_small_region() -> list[LayerData]:
    """The real H&E slide CMU-1-Small-Region (2967 x 2220 px at 0.499 um/px)."""
    return read_slide(CMU_SMALL_REGION)


def synthetic_slide(spec: SyntheticSpec | None = None) -> list[LayerData]:
    """A deterministic tissue-like multiscale slide, made chunk by chunk on demand."""
    synthetic = SyntheticSlide(spec)
    spec = synthetic.spec
    levels = synthetic.levels()
    metadata: dict[str, Any] = {
        "path": None,
        "name": SYNTHETIC_NAME,
        "mpp": spec.mpp,
        "mpp_source": "synthetic",
        "levels": len(levels),
        "level_shapes": [list(lv.shape[:2]) for lv in levels],
        "downsamples": [float(d) for d in spec.downsamples],
        "fingerprint": spec.fingerprint(),
    }
    kwargs = {
        "name": SYNTHETIC_NAME,
        "rgb": True,
        "multiscale": True,
        "contrast_limits": (0, 255),
        "scale": (spec.mpp, spec.mpp),
        "units": ("um", "um"),
        "metadata": {META_KEY: metadata},
    }
    return [(levels, kwargs, "image")]
