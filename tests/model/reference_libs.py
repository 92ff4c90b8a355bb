"""The reference libraries of the CLIP models (open_clip, transformers), for parity tests only.

They are test dependencies (the ``reference`` extra), never runtime ones: a test that needs one
skips with the reason when it is not installed.

torchvision, which open_clip imports for its image transforms, is published on PyPI as a CUDA
build; next to a CPU-only torch its C++ operators cannot load, and its import then fails in
``torchvision._meta_registrations`` registering fake kernels of the two operators ``nms`` and
``qnms``, which do not exist. :func:`import_open_clip` then declares those two operator schemas
(no kernel: calling them fails) and imports torchvision again, so its Python transforms (PIL
resize, crop, normalise: what open_clip's preprocessing is) and open_clip's model code run for
real. Nothing of torchvision's is replaced.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

_DECLARED: list = []


def _import_torchvision() -> None:
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        if not _DECLARED:
            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _DECLARED.append(lib)
        import torchvision  # noqa: F401


def import_open_clip():
    """open_clip, or a skip naming what is missing."""
    for package in ("open_clip", "torchvision", "ftfy"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (pip install 'napari-conch[reference]')")
    _import_torchvision()
    import open_clip

    return open_clip


def import_transformers():
    """transformers, or a skip naming what is missing."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (pip install 'napari-conch[reference]')")
    if importlib.util.find_spec("torchvision") is not None:
        _import_torchvision()  # transformers imports it when it is installed
    import transformers

    return transformers


def import_timm():
    """timm, or a skip naming what is missing."""
    for package in ("timm", "torchvision"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (pip install 'napari-conch[reference]')")
    _import_torchvision()  # timm imports it
    import timm

    return timm
