"""How a stored array's axes map onto the YXC uint8 RGB that every slide level exposes.

Rules, applied the same way to lazy (dask) levels and to regions read for tiles:

- The array must have one ``Y`` and one ``X`` axis. A channel axis is ``C`` or ``S`` (TIFF
  samples); any other axis (``T``, ``Z``, ...) must have size 1 and is dropped.
- The dtype must be ``uint8``; anything else is a :class:`~napari_conch.errors.SlideError`
  (we never rescale intensities silently).
- Channels: 1 (greyscale) is replicated to RGB; 3 is RGB as is; 2 (greyscale + alpha) and 4
  (RGBA) are composited over white, as transparent parts are empty glass:
  ``(c * a + 255 * (255 - a)) / 255`` rounded, or ``c + 255 - a`` for premultiplied
  (associated) alpha; the grey result is replicated. Any other count is a SlideError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_conch.errors import SlideError

_CHANNEL_AXES = ("C", "S")


@dataclass(frozen=True)
class Layout:
    """Axes of a stored level and how to turn a slice of it into YXC RGB.

    Attributes
    ----------
    axes : str
        One upper-case letter per stored dimension, with ``S`` already renamed ``C``.
    shape : tuple of int
        The stored shape.
    """

    axes: str
    shape: tuple[int, ...]
    premultiplied: bool = False

    @property
    def height(self) -> int:
        return self.shape[self.axes.index("Y")]

    @property
    def width(self) -> int:
        return self.shape[self.axes.index("X")]

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("C")] if "C" in self.axes else 1

    def index(self, y0: int, y1: int, x0: int, x1: int) -> tuple:
        """Return the stored-array index of the region rows ``y0:y1``, columns ``x0:x1``."""
        items: list = []
        for axis in self.axes:
            if axis == "Y":
                items.append(slice(y0, y1))
            elif axis == "X":
                items.append(slice(x0, x1))
            elif axis == "C":
                items.append(slice(None))
            else:
                items.append(0)
        return tuple(items)

    def full_index(self) -> tuple:
        """Return the index of the whole level."""
        return self.index(0, self.height, 0, self.width)

    def to_rgb(self, data):
        """Turn ``stored[self.index(...)]`` (numpy or dask) into ``(h, w, 3)`` RGB."""
        kept = [a for a in self.axes if a in "YXC"]
        order = [kept.index(a) for a in "YXC" if a in kept]
        data = data.transpose(order)
        if "C" not in kept:
            data = data[..., None]
        channels = data.shape[-1]
        if channels == 1:
            return data[..., [0, 0, 0]]
        if channels == 2:
            return over_white(data[..., :1], data[..., 1:2], self.premultiplied)[..., [0, 0, 0]]
        if channels == 4:
            return over_white(data[..., :3], data[..., 3:4], self.premultiplied)
        return data


def over_white(colour, alpha, premultiplied: bool = False):
    """Composite ``uint8`` colour channels with their alpha over white (numpy or dask)."""
    c, a = colour.astype(np.uint16), alpha.astype(np.uint16)
    if premultiplied:
        return np.minimum(c + (255 - a), 255).astype(np.uint8)
    return ((c * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def make_layout(
    axes: str, shape: tuple[int, ...], dtype, where: str, *, premultiplied: bool = False
) -> Layout:
    """Check a stored level and return its :class:`Layout`.

    Parameters
    ----------
    axes : str
        Axis letters as the file names them (tifffile series axes, NGFF axis names).
    shape : tuple of int
        The stored shape.
    dtype : numpy dtype
        The stored dtype; only ``uint8`` is accepted.
    where : str
        The file and level, for error messages.
    premultiplied : bool
        Whether an alpha channel is associated (colours already multiplied by alpha).

    Raises
    ------
    SlideError
        When the axes, channel count or dtype cannot be shown as 8-bit RGB.
    """
    axes = "".join("C" if a in _CHANNEL_AXES else a for a in axes.upper())
    if len(axes) != len(shape):
        raise SlideError(f"{where}: axes {axes!r} do not match the array shape {tuple(shape)}")
    if axes.count("Y") != 1 or axes.count("X") != 1:
        raise SlideError(f"{where}: needs one Y and one X axis, found axes {axes!r}")
    if axes.count("C") > 1:
        axes = _drop_extra_channel_axes(axes, shape, where)
    for axis, size in zip(axes, shape, strict=True):
        if axis not in "YXC" and size != 1:
            raise SlideError(
                f"{where}: axis {axis!r} has size {size}; only 2-D RGB or greyscale images "
                "are supported"
            )
    if np.dtype(dtype) != np.uint8:
        raise SlideError(
            f"{where}: pixel type is {np.dtype(dtype)}; only 8-bit (uint8) RGB or greyscale "
            "images are supported"
        )
    layout = Layout(axes, tuple(int(s) for s in shape), premultiplied)
    if layout.channels not in (1, 2, 3, 4):
        raise SlideError(
            f"{where}: has {layout.channels} channels; expected 1 (grey), 2 (grey+alpha), "
            "3 (RGB) or 4 (RGBA)"
        )
    return layout


def _drop_extra_channel_axes(axes: str, shape: tuple[int, ...], where: str) -> str:
    """Rename size-1 channel axes when there are several, so that one ``C`` remains."""
    sizes = [s for a, s in zip(axes, shape, strict=True) if a == "C"]
    if sum(s > 1 for s in sizes) > 1:
        raise SlideError(f"{where}: has several channel axes {axes!r} with more than one entry")
    keep = next((i for i, s in enumerate(shape) if axes[i] == "C" and s > 1), axes.index("C"))
    return "".join("Q" if a == "C" and i != keep else a for i, a in enumerate(axes))
