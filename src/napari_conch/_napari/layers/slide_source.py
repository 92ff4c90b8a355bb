"""From a napari image layer to the :class:`~napari_conch.slide.Slide` the engine works on.

A layer our reader made records its file in ``metadata["napari_conch"]["path"]``: the slide is
opened from that file again (cheap: metadata and lazy levels). Any other RGB image layer (the
synthetic sample, a layer from another reader, an array) becomes an in-memory slide over the
layer's own arrays; its fingerprint comes from our metadata when there is one, else from the
level shapes and a hash of the coarsest level's pixels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch.errors import InputError

if TYPE_CHECKING:
    from napari.layers import Image

    from napari_conch.slide import Slide

#: Key of our entry in a layer's ``metadata``.
META_KEY = "napari_conch"
#: Largest coarsest level (pixels) hashed for the fingerprint of a layer without a file.
MAX_HASHED_PIXELS = 4096 * 4096


def layer_levels(layer: Image) -> list[Any]:
    """The layer's arrays, finest first (one for a plain image)."""
    return list(layer.data) if layer.multiscale else [layer.data]


def check_rgb_layer(layer: Any) -> None:
    """Raise :class:`InputError` unless ``layer`` is a 2-D RGB image layer of 8-bit pixels."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        raise InputError(f"layer {getattr(layer, 'name', layer)!r} is not an image layer")
    shape = tuple(layer_levels(layer)[0].shape)
    if not layer.rgb or len(shape) != 3 or shape[-1] not in (3, 4):
        raise InputError(
            f"layer {layer.name!r} is not a 2-D RGB image (shape {shape}); "
            "choose an RGB slide layer"
        )
    if np.dtype(layer.dtype) != np.uint8:
        raise InputError(f"layer {layer.name!r} has {layer.dtype} pixels; 8-bit RGB is needed")


def slide_for_layer(layer: Image, *, mpp: float | None = None) -> Slide:
    """Open the slide behind an RGB image layer.

    Parameters
    ----------
    layer
        A 2-D RGB image layer (multiscale or not).
    mpp
        Microns per pixel at level 0, when the user gives it (overrides the file's).

    Raises
    ------
    InputError
        When the layer is not an 8-bit RGB image.
    SlideError
        When the layer's file can no longer be opened.
    """
    check_rgb_layer(layer)
    meta = layer.metadata.get(META_KEY) or {}
    if meta.get("path"):
        from napari_conch.slide import open_slide

        return open_slide(Path(meta["path"]), mpp=mpp)
    return _array_slide(layer, meta, mpp)


def _array_slide(layer: Image, meta: dict[str, Any], mpp: float | None) -> Slide:
    from napari_conch.slide import Slide
    from napari_conch.slide.layout import make_layout
    from napari_conch.slide.readers import ArrayReader

    levels = layer_levels(layer)
    rgb, readers = [], []
    for i, level in enumerate(levels):
        layout = make_layout("YXC", tuple(level.shape), level.dtype, f"{layer.name} level {i}")
        rgb.append(layout.to_rgb(level))
        readers.append(ArrayReader(level, layout))
    known = mpp if mpp is not None else meta.get("mpp")
    source = "caller" if mpp is not None else (meta.get("mpp_source") or "unknown")
    return Slide(
        Path(meta.get("name") or layer.name),
        rgb,
        readers,
        mpp=None if known is None else float(known),
        mpp_source=source if known is not None else "unknown",
        fingerprint=meta.get("fingerprint") or _array_fingerprint(levels),
        name=meta.get("name") or layer.name,
    )


def _array_fingerprint(levels: list[Any]) -> str:
    """Hash of the level shapes and of the coarsest level's pixels (when it is small)."""
    digest = hashlib.sha256(b"layer")
    for level in levels:
        digest.update(repr(tuple(int(s) for s in level.shape)).encode())
    coarsest = levels[-1]
    if int(np.prod(coarsest.shape[:2])) <= MAX_HASHED_PIXELS:
        digest.update(np.ascontiguousarray(np.asarray(coarsest)).tobytes())
    return digest.hexdigest()[:32]
