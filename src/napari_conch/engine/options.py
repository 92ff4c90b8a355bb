"""Run options: how a slide is tiled and embedded, with one set of defaults.

:class:`RunOptions` is the single place where the embedding options and their defaults live. The
Python API (:func:`napari_conch.engine.embed.embed`), the distributed client, the CLI's ``embed``
arguments and the napari docks all build one from what they are given, so a store made by one is
found again by the others. Every value is checked when the object is made, before anything is
created on disk.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from napari_conch.errors import InputError

#: Largest tile side accepted (pixels of the grid's level); larger tiles would not fit in memory.
MAX_TILE_SIZE = 8192


@dataclass(frozen=True)
class RunOptions:
    """How a slide is tiled and embedded.

    Parameters
    ----------
    level : int, optional
        Pyramid level of the grid (exclusive with ``mpp``; neither: level 0).
    mpp : float, optional
        Grid resolution in microns per pixel (resampled from the next finer level).
    tile_size : int, optional
        Tile side in pixels of the grid; ``None``: the model's own tile size
        (``LoadedModel.default_tile_size``: 448 for CONCH, 128 for the demo model).
    stride : int, optional
        Step between tiles in pixels of the grid; ``None``: the tile size (no overlap).
    min_tissue : float
        Minimum tissue fraction of a tile; other tiles are background and never embedded.
    batch_size : int
        Tiles per model call.
    num_readers : int
        Threads reading and decoding tiles while the model runs.
    slide_mpp : float, optional
        Level-0 microns per pixel stated by the user, for slides whose file does not say it
        (or says it wrong): it takes precedence over the file's, and it is recorded in the
        store's signature, so a store made with another stated MPP is not reused. The CLI's
        ``--slide-mpp``; a dock's Slide panel sets it with ``Session.set_options``.
    device : str, optional
        Torch device (``"cuda"``, ``"cuda:1"``, ``"cpu"``); ``None``: CUDA, else MPS, else CPU.
    precision : str, optional
        ``"fp32"``, ``"bf16"`` or ``"fp16"``; ``None``: the device's default.
    store_root : str, optional
        Folder of the stores; ``None``: the user cache folder.
    """

    level: int | None = None
    mpp: float | None = None
    tile_size: int | None = None
    stride: int | None = None
    min_tissue: float = 0.25
    batch_size: int = 32
    num_readers: int = 2
    slide_mpp: float | None = None
    device: str | None = None
    precision: str | None = None
    store_root: str | None = None

    def __post_init__(self) -> None:
        if self.level is not None and self.mpp is not None:
            raise InputError(f"level={self.level} and mpp={self.mpp}: give one or the other")
        _check_int("level", self.level, minimum=0, optional=True)
        _check_positive("mpp", self.mpp)
        _check_positive("slide_mpp", self.slide_mpp)
        _check_int("tile_size", self.tile_size, minimum=1, optional=True, maximum=MAX_TILE_SIZE)
        _check_int("stride", self.stride, minimum=1, optional=True, maximum=MAX_TILE_SIZE)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("num_readers", self.num_readers, minimum=1)
        value = _number("min_tissue", self.min_tissue)
        if not 0.0 <= value <= 1.0:
            raise InputError(f"min_tissue={self.min_tissue}: must be between 0 and 1")
        if self.precision is not None and self.precision not in ("fp32", "bf16", "fp16"):
            raise InputError(f"precision={self.precision!r}: expected fp32, bf16 or fp16")
        if self.store_root is not None:
            object.__setattr__(self, "store_root", str(self.store_root))
        if self.device is not None:
            object.__setattr__(self, "device", str(self.device))

    def replace(self, **changes: Any) -> RunOptions:
        """Return a copy with ``changes`` applied (checked like a new object)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunOptions:
        """Options from a dict such as :meth:`to_dict` gives; unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(f"unknown run option(s): {', '.join(unknown)}")
        return cls(**values)

    def tile_size_for(self, model: Any) -> int:
        """The tile size to use with ``model``: the option, else the model's own tile size."""
        if self.tile_size is not None:
            return int(self.tile_size)
        return int(getattr(model, "default_tile_size", None) or model.image_size)


def _number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r}: expected a number") from None
    if not math.isfinite(number):
        raise InputError(f"{name}={value!r}: expected a finite number")
    return number


def _check_positive(name: str, value: Any) -> None:
    if value is not None and _number(name, value) <= 0:
        raise InputError(f"{name}={value}: must be greater than 0")


def _check_int(
    name: str,
    value: Any,
    *,
    minimum: int,
    optional: bool = False,
    maximum: int | None = None,
) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}={value!r}: expected a whole number")
    if value < minimum:
        raise InputError(f"{name}={value}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InputError(f"{name}={value}: must be at most {maximum}")


#: The defaults, for widgets and argument parsers that show them.
DEFAULTS = RunOptions()
