"""Run options: how a slide is tiled and embedded, with one set of defaults.

:class:`RunOptions` is the single place where the embedding options and their defaults live. The
Python API (:func:`napari_conch.engine.embed.embed`), the distributed client, the CLI's ``embed``
arguments and the napari docks all build one from what they are given, so a store made by one is
found again by the others. Every value is checked when the object is made, before anything is
created on disk.

The other option sets a command line and a dock both show live here too: how a region is
captioned (:class:`CaptionOptions`, with the command line's :data:`CAPTION_DEFAULTS` and the
dock's quicker :data:`DOCK_CAPTION_DEFAULTS`), how many tiles a search lists
(:class:`SearchOptions`) and how prompts become maps (:class:`PromptOptions`: template set and
threshold).

Each field carries, in its metadata, its :class:`~napari_conch.bounds.Bounds` and a
:class:`Surface`: its command-line flag and help, its panel label and widget hints. The command
line's arguments (:mod:`napari_conch.cli.option_arguments`) and the docks' fields
(:mod:`napari_conch.engine.option_fields`) are made from them, with the defaults of the
dataclass: no default is written anywhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from napari_conch.bounds import BOUNDS_KEY, Bounds, bounds_of, check_fields
from napari_conch.engine.prompts import TEMPLATE_SETS
from napari_conch.errors import InputError
from napari_conch.model.config import STRATEGIES, GenerationConfig
from napari_conch.model.formats import AUTO, PRECISION_CHOICES

#: Largest tile side accepted (pixels of the grid's level); larger tiles would not fit in memory.
MAX_TILE_SIZE = 8192
#: Device types a panel offers (``model.device.COMPUTE_DEVICES``; ``None``: the best there is).
PANEL_DEVICES = ("cpu", "cuda", "mps")
#: Compute precisions a run accepts (``None``: the device's default).
#: A map's threshold: a probability (0..1) or, for one prompt, a cosine (-1..1).
THRESHOLD_BOUNDS = Bounds(minimum=-1, maximum=1, optional=True)
#: Key of a :class:`Surface` in a dataclass field's metadata.
SURFACE_KEY = "napari_conch.surface"


@dataclass(frozen=True)
class Surface:
    """How an option shows itself on the command line and in a dock's panel.

    Attributes
    ----------
    help : str
        What the option is, in a few words (the CLI's help; the panel's tooltip unless
        ``tooltip`` says more). The default is added where it is shown, never written here.
    flag : str, optional
        The command-line flag (``"--min-tissue"``); ``None``: not on the command line.
    metavar : str, optional
        The flag's value in the usage line.
    unset : str, optional
        What the option left out (``None``) means, in words: ``"the model's own"``.
    choices : tuple of str, optional
        The values a text option accepts.
    panel_choices : tuple of str, optional
        The values a panel offers for a text option that accepts more (a device: ``cuda:1``
        on the command line, ``cuda`` in the panel).
    label : str, optional
        The panel field's label; ``None``: in no panel.
    tooltip : str, optional
        The panel's tooltip, when the panel says more than the help.
    slider : bool
        The panel shows a slider rather than a spin box.
    folder : bool
        A folder: the panel shows a folder chooser (empty: ``unset``).
    step : float, optional
        The panel's step for a decimal number.
    panel_min, panel_max : float, optional
        The panel's range where the bounds have none (or a wider one than a panel shows).
    zero_unset : bool
        The panel's 0 stands for ``None`` even though the option accepts 0 (a threshold).
    unset_text : str, optional
        The panel's text for the 0 (or the choice) that stands for ``None`` (``"model's own"``,
        ``"auto"``).
    """

    help: str
    flag: str | None = None
    metavar: str | None = None
    unset: str | None = None
    choices: tuple[str, ...] | None = None
    panel_choices: tuple[str, ...] | None = None
    label: str | None = None
    tooltip: str | None = None
    slider: bool = False
    folder: bool = False
    step: float | None = None
    panel_min: float | None = None
    panel_max: float | None = None
    zero_unset: bool = False
    unset_text: str | None = None


def option(default: Any, *, bounds: Bounds | dict[str, Any] | None = None, **surface: Any) -> Any:
    """A dataclass field holding an option: its ``default``, its ``bounds`` (a :class:`Bounds`,
    or its keywords) and its :class:`Surface` (``surface``'s keywords)."""
    metadata: dict[str, Any] = {SURFACE_KEY: Surface(**surface)}
    if bounds is not None:
        metadata[BOUNDS_KEY] = bounds if isinstance(bounds, Bounds) else Bounds(**bounds)
    return field(default=default, metadata=metadata)


def surface_of(cls: Any, name: str) -> Surface:
    """The :class:`Surface` of dataclass ``cls``'s field ``name`` (a ``KeyError`` when none)."""
    for f in dataclasses.fields(cls):
        if f.name == name and SURFACE_KEY in f.metadata:
            return f.metadata[SURFACE_KEY]
    raise KeyError(f"{cls.__name__}.{name} has no surface")


def surfaced_fields(cls: Any) -> tuple[str, ...]:
    """The names of ``cls``'s fields that carry a :class:`Surface`, in their order."""
    return tuple(f.name for f in dataclasses.fields(cls) if SURFACE_KEY in f.metadata)


def default_text(surface: Surface, default: Any) -> str | None:
    """The default as the help says it: ``"default 0.25"``, ``"default: the model's own"``, or
    ``None`` when an option left out has nothing to say."""
    if default is None:
        return None if surface.unset is None else f"default: {surface.unset}"
    if isinstance(default, bool) or not isinstance(default, int | float):
        return f"default: {default}"
    return f"default {default:g}"


def help_text(cls: Any, name: str, defaults: Any = None, *, words: str | None = None) -> str:
    """The help of ``cls``'s option ``name`` with its default (from ``defaults``, an instance;
    ``None``: the dataclass's own default) filled in; ``words`` replace the option's own."""
    surface = surface_of(cls, name)
    base = cls() if defaults is None else defaults
    said = default_text(surface, getattr(base, name))
    text = surface.help if words is None else words
    return text if said is None else f"{text} ({said})"


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

    level: int | None = option(
        None, bounds=dict(kind=int, minimum=0, optional=True), flag="--level", metavar="N",
        help="pyramid level of the grid", unset="level 0", label="Level", panel_max=0,
    )  # fmt: skip
    mpp: float | None = option(
        None, bounds=dict(minimum=0, above=True, optional=True), flag="--mpp", metavar="X",
        help="grid resolution in microns/px", unset="by level", label="Or MPP",
        tooltip="microns per pixel of the tiles", step=0.05, panel_max=100,
    )  # fmt: skip
    tile_size: int | None = option(
        None, bounds=dict(kind=int, minimum=1, maximum=MAX_TILE_SIZE, optional=True),
        flag="--tile-size", metavar="N", help="tile side in pixels of the grid",
        unset="the model's own", label="Tile size", unset_text="model's own",
    )  # fmt: skip
    stride: int | None = option(
        None, bounds=dict(kind=int, minimum=1, maximum=MAX_TILE_SIZE, optional=True),
        flag="--stride", metavar="N", help="step between tiles in pixels of the grid",
        unset="the tile size, no overlap", label="Stride", unset_text="tile size",
    )  # fmt: skip
    min_tissue: float = option(
        0.25, bounds=dict(minimum=0, maximum=1), flag="--min-tissue", metavar="F",
        help="minimum tissue fraction of a tile", label="Min tissue", slider=True,
        tooltip="tiles with less tissue than this fraction are background, never embedded",
    )  # fmt: skip
    batch_size: int = option(
        32, bounds=dict(kind=int, minimum=1), flag="--batch-size", metavar="N",
        help="tiles per model call", label="Batch size", panel_max=1024,
    )  # fmt: skip
    num_readers: int = option(
        2, bounds=dict(kind=int, minimum=1), flag="--num-readers", metavar="N",
        help="threads reading tiles",
    )  # fmt: skip
    slide_mpp: float | None = option(
        None, bounds=dict(minimum=0, above=True, optional=True), flag="--slide-mpp",
        metavar="X", help="level-0 microns/px of slides without one", unset="the file's",
        label="Slide MPP", step=0.001, panel_max=100, unset_text="the file's",
        tooltip="microns per pixel of the slide at level 0, for a slide without one or with a "
        "wrong one; recorded in the store",
    )  # fmt: skip
    device: str | None = option(
        None, flag="--device", metavar="D", help="torch device: cuda, cuda:1, cpu",
        unset="CUDA, else MPS, else CPU", label="Device", panel_choices=PANEL_DEVICES,
        unset_text="auto",
    )  # fmt: skip
    precision: str = option(
        AUTO, flag="--precision", choices=PRECISION_CHOICES, label="Precision",
        tooltip="number format of the image encoder: auto picks bf16 on CPUs with native bf16 "
        "when the model passes the parity gate, else fp32 (exact)",
        help="number format of the image encoder: auto (bf16 on CUDA GPUs with bf16 and on "
        "CPUs with native bf16 where the model passes the parity gate, else fp32), fp32 "
        "(exact to the reference), bf16, fp16 (CUDA), int8 (ONNX Runtime on the CPU, with the "
        "int8 extra)",
    )  # fmt: skip
    store_root: str | None = option(
        None, flag="--store", metavar="DIR", help="folder of the stores", unset="user cache",
        label="Store folder", folder=True,
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.level is not None and self.mpp is not None:
            raise InputError(f"level={self.level} and mpp={self.mpp}: give one or the other")
        check_fields(self)
        if self.precision is None:  # options saved before "auto" was the default
            object.__setattr__(self, "precision", AUTO)
        if self.precision not in PRECISION_CHOICES:
            raise InputError(
                f"precision={self.precision!r}: expected one of {', '.join(PRECISION_CHOICES)}"
            )
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
        """The tile size to use with ``model``: the option, else the model's own tile size.

        The one place a tile size is chosen: the session's grid, ``embed`` and the distributed
        client call it; the model's own size is ``model.default_tile_size``
        (:func:`napari_conch.model.sources.model_tile_size`: its source's recommended size, else
        its input size).
        """
        if self.tile_size is not None:
            return int(self.tile_size)
        return int(model.default_tile_size)


#: The defaults, for widgets and argument parsers that show them.
DEFAULTS = RunOptions()

#: Seconds a command waits for another process writing a store (``inf``: as long as it takes).
WAIT_BOUNDS = Bounds(minimum=0, infinite=True)


def _generation(name: str) -> Bounds:
    """The bounds the model's :class:`~napari_conch.model.config.GenerationConfig` gives
    ``name`` (said there once, where the value is used)."""
    return bounds_of(GenerationConfig, name)


@dataclass(frozen=True)
class CaptionOptions:
    """How a region is captioned: the CLI's ``caption`` options and the Caption dock's fields.

    The model's :class:`~napari_conch.model.config.GenerationConfig` holds the same values and
    checks them (bounds and all); :meth:`generation_config` passes every one down, so the
    defaults that count are these.

    Parameters
    ----------
    strategy : str
        ``"greedy"``, ``"beam"``, ``"top_k"`` or ``"top_p"``.
    max_length, min_length : int
        Ids per caption at most, and before the end may come.
    num_beams : int
        Beams of ``"beam"``.
    top_k : int
        Candidates kept by ``"top_k"`` sampling.
    top_p : float
        Probability mass kept by ``"top_p"`` sampling.
    temperature : float
        Divides the logits before sampling.
    repetition_penalty : float
        Above 1 discourages repeats.
    seed : int, optional
        Makes sampling reproducible.
    """

    strategy: str = option(
        "beam", flag="--strategy", choices=STRATEGIES, help="decoding strategy", label="Strategy"
    )
    num_beams: int = option(
        4, bounds=_generation("num_beams"), flag="--beams", metavar="N", help="beams",
        label="Beams", panel_max=16,
    )  # fmt: skip
    top_k: int = option(
        50, bounds=_generation("top_k"), flag="--top-k", metavar="K",
        help="candidates kept by top_k sampling",
    )  # fmt: skip
    top_p: float = option(
        0.9, bounds=_generation("top_p"), flag="--top-p", metavar="P",
        help="probability mass kept by top_p sampling, in (0, 1]",
    )  # fmt: skip
    temperature: float = option(
        1.0, bounds=_generation("temperature"), flag="--temperature", metavar="T",
        help="divides the logits before sampling, above 0",
    )  # fmt: skip
    min_length: int = option(
        5, bounds=_generation("min_length"), flag="--min-length", metavar="N",
        help="ids before the end may come",
    )  # fmt: skip
    max_length: int = option(
        40, bounds=_generation("max_length"), flag="--max-length", metavar="N",
        help="ids per caption, at least 2", label="Max length", panel_max=128,
    )  # fmt: skip
    repetition_penalty: float = option(
        1.0, bounds=_generation("repetition_penalty"), flag="--repetition-penalty", metavar="R",
        help="above 1 discourages repeats, above 0",
    )  # fmt: skip
    seed: int | None = option(
        None, bounds=_generation("seed"), flag="--seed", metavar="S",
        help="makes sampling reproducible",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)

    def replace(self, **changes: Any) -> CaptionOptions:
        """Return a copy with ``changes`` applied (checked like a new object)."""
        return dataclasses.replace(self, **changes)

    def generation_config(self) -> GenerationConfig:
        """The model's generation config of these options (every value passed down)."""
        return GenerationConfig(**dataclasses.asdict(self))


#: The command line's captioning defaults: beam search, captions of up to 40 ids.
CAPTION_DEFAULTS = CaptionOptions()
#: The Caption dock's: greedy captions of up to 30 ids, quick enough to follow each new region.
DOCK_CAPTION_DEFAULTS = CaptionOptions(strategy="greedy", max_length=30)


@dataclass(frozen=True)
class SearchOptions:
    """How many tiles a search lists: ``top-tiles`` over one store (and the Caption dock's
    top-tiles panel), ``search`` over many.

    Parameters
    ----------
    top_tiles : int
        Tiles ``top-tiles`` lists.
    search_hits : int
        Tiles ``search`` lists over every store (and the Cohort dock's search).
    """

    top_tiles: int = option(
        10, bounds=dict(kind=int, minimum=1), flag="-k", metavar="N", help="how many tiles",
        label="k", panel_max=1000,
    )  # fmt: skip
    search_hits: int = option(
        20, bounds=dict(kind=int, minimum=1), flag="-k", metavar="N", help="how many tiles",
        label="Tiles", panel_max=1000,
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)


#: The search defaults.
SEARCH_DEFAULTS = SearchOptions()


@dataclass(frozen=True)
class PromptOptions:
    """How prompts become maps: the template set every prompt command takes (``--templates``)
    and the threshold of ``query`` and the Prompt panel.

    Parameters
    ----------
    templates : str, optional
        A name of :data:`~napari_conch.engine.prompts.TEMPLATE_SETS`; ``None``: the model's own
        (CONCH's 22 for CONCH and the demo model, QuiltNet's or PLIP's for those).
    threshold : float, optional
        Label 0 below this winning probability (one prompt: below this cosine), within
        :data:`THRESHOLD_BOUNDS` (which ``PromptRequest`` checks too). The panel's 0 is none.
    """

    templates: str | None = option(
        None, flag="--templates", choices=tuple(TEMPLATE_SETS), help="template set",
        unset="the model's own, conch for CONCH",
    )  # fmt: skip
    threshold: float | None = option(
        None, bounds=THRESHOLD_BOUNDS, flag="--threshold", metavar="F",
        help="label 0 below this winning probability (one prompt: below this cosine)",
        unset="none", label="Threshold", step=0.01, panel_min=0, panel_max=1, zero_unset=True,
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)
        if self.templates is not None and self.templates not in TEMPLATE_SETS:
            raise InputError(f"templates={self.templates!r}: expected {', '.join(TEMPLATE_SETS)}")


#: The prompt defaults: the model's own templates, no threshold.
PROMPT_DEFAULTS = PromptOptions()
#: ``rank-texts``: each ``--text`` as it is, no template, unless asked.
RANK_TEXTS_DEFAULTS = PromptOptions(templates="none")
#: ``napari-conch demo``: CONCH's templates, which the demo model was trained with.
DEMO_PROMPT_DEFAULTS = PromptOptions(templates="conch")


#: Every options dataclass that the command line and the docks are made from.
OPTION_CLASSES = (RunOptions, CaptionOptions, SearchOptions, PromptOptions)
