"""Run options: how a slide is tiled and embedded, with one set of defaults.

:class:`RunOptions` is the single place where the embedding options and their defaults live. The
Python API (:func:`napari_conch.engine.embed.embed`), the distributed client, the CLI's ``embed``
arguments and the napari docks all build one from what they are given, so a store made by one is
found again by the others. Every value is checked when the object is made, before anything is
created on disk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from napari_conch.bounds import Bounds, bounded, bounds_of, check_fields
from napari_conch.errors import InputError
from napari_conch.model.formats import AUTO, PRECISION_CHOICES

#: Key of a field's allowed values in its metadata (see :func:`check_choices`).
CHOICES = "choices"

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
    precision : str
        The image encoder's number format, one of
        :data:`~napari_conch.model.formats.PRECISION_CHOICES`: ``"auto"`` (bf16 on CUDA GPUs
        that support it and on CPUs with native bf16 where the model passes the parity gate,
        else fp32), ``"fp32"`` (CONCH-exact), ``"bf16"``, ``"fp16"`` (CUDA) or ``"int8"``
        (ONNX Runtime on the CPU; the extra ``napari-conch[int8]``). ``None`` means ``"auto"``.
    store_root : str, optional
        Folder of the stores; ``None``: the user cache folder.
    """

    level: int | None = field(default=None, metadata=bounded(kind=int, minimum=0, optional=True))
    mpp: float | None = field(default=None, metadata=bounded(minimum=0, above=True, optional=True))
    tile_size: int | None = field(
        default=None, metadata=bounded(kind=int, minimum=1, maximum=MAX_TILE_SIZE, optional=True)
    )
    stride: int | None = field(
        default=None, metadata=bounded(kind=int, minimum=1, maximum=MAX_TILE_SIZE, optional=True)
    )
    min_tissue: float = field(default=0.25, metadata=bounded(minimum=0, maximum=1))
    batch_size: int = field(default=32, metadata=bounded(kind=int, minimum=1))
    num_readers: int = field(default=2, metadata=bounded(kind=int, minimum=1))
    slide_mpp: float | None = field(
        default=None, metadata=bounded(minimum=0, above=True, optional=True)
    )
    device: str | None = None
    precision: str = field(default=AUTO, metadata={CHOICES: PRECISION_CHOICES})
    store_root: str | None = None

    def __post_init__(self) -> None:
        if self.level is not None and self.mpp is not None:
            raise InputError(f"level={self.level} and mpp={self.mpp}: give one or the other")
        check_fields(self)
        if self.precision is None:  # options saved before "auto" was the default
            object.__setattr__(self, "precision", AUTO)
        check_choices(self)
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


def check_choices(obj: Any) -> None:
    """Refuse a field value outside its metadata's :data:`CHOICES` (one line naming both)."""
    for f in dataclasses.fields(obj):
        allowed = f.metadata.get(CHOICES)
        value = getattr(obj, f.name)
        if allowed is not None and value not in allowed:
            raise InputError(f"{f.name}={value!r}: expected one of {', '.join(allowed)}")


def run_option_choices(name: str) -> tuple[str, ...]:
    """The allowed values of the run option ``name`` (for the argument parsers and widgets)."""
    fields = {f.name: f for f in dataclasses.fields(RunOptions)}
    return tuple(fields[name].metadata[CHOICES])


#: The defaults, for widgets and argument parsers that show them.
DEFAULTS = RunOptions()

#: Seconds a command waits for another process writing a store (``inf``: as long as it takes).
WAIT_BOUNDS = Bounds(minimum=0, infinite=True)


def run_option_bounds(name: str) -> Bounds:
    """The bounds of the run option ``name`` (for the argument parsers)."""
    return bounds_of(RunOptions, name)
