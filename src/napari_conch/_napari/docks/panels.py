"""The parts of the prompt highlighter: four magicgui containers with their widgets as attributes.

They hold no behaviour (see :mod:`.widget`), so a test can set ``.value`` on any part and call
the widget's handlers, as a user would by typing and clicking.
"""

from __future__ import annotations

import os
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSlider,
    Label,
    LineEdit,
    Password,
    ProgressBar,
    PushButton,
    TextEdit,
)

from napari_conch._napari.docks.form import Form
from napari_conch._napari.docks.option_widgets import field_widget, option_widget
from napari_conch.engine.option_fields import panel_field, panel_fields, path_or_none
from napari_conch.engine.options import PromptOptions, RunOptions
from napari_conch.errors import InputError

#: Colormaps offered for the heatmap and probability layers.
COLORMAPS = ("inferno", "magma", "viridis", "turbo", "plasma", "gray")
#: The prompt box's placeholder before a model tells what it knows.
PROMPT_PLACEHOLDER = "one prompt per line, e.g.\ntumor\nstroma"
#: Title of the folded section of advanced options in every panel.
MORE_OPTIONS = "More options"
#: Colour ranges of the similarity map: one for every prompt, or each prompt's own.
RANGES = ("shared", "per prompt")
#: The Model panel's device: "auto" (CUDA, then MPS, then CPU) or a device type.
DEVICE_FIELD = panel_field(RunOptions, "device")
#: The Model panel's number format (``--precision``).
PRECISION_FIELD = panel_field(RunOptions, "precision")
#: The Export panel's choices for a .tif map: shown text -> ``--map-render``.
TIFF_RENDERS = {"values": "float", "colours": "rgb"}
#: CONCH on the Hugging Face Hub (gated).
CONCH_HUB = "hf_hub:MahmoodLab/conch"
#: The known-model list's first entry, which names none.
CHOOSE_MODEL = "choose one"
#: The run options the Slide panel shows, in its order.
SLIDE_OPTIONS = (
    "level", "mpp", "slide_mpp", "tile_size", "stride", "min_tissue", "batch_size", "store_root",
)  # fmt: skip
#: Their fields (label, range, default, tooltip), made from ``RunOptions``' field metadata.
SLIDE_FIELDS = panel_fields(RunOptions, SLIDE_OPTIONS)
#: What the Model section says before a model is loaded.
NO_MODEL_NOTE = (
    "Load CONCH's checkpoint (pytorch_model.bin, or hf_hub:MahmoodLab/conch with a token), "
    "or try the demo model shipped with the plugin."
)


def known_models() -> dict[str, str]:
    """The Model panel's list of known models: shown name -> what it loads (``--model``).

    CONCH (gated: a token), the demo model, then the open models napari-conch reads
    (``napari-conch models`` says more); nothing is read from disk here.
    """
    from napari_conch.model.clip_sources import KNOWN_MODELS

    known = {CHOOSE_MODEL: "", "CONCH": CONCH_HUB, "demo model (not CONCH)": "demo"}
    known.update({card.name: card.source for card in KNOWN_MODELS})
    return known


def known_model_note(source: str) -> str:
    """One line on a known model: its licence, and its files: cached, or fetched on Load."""
    from napari_conch.model.clip_sources import KNOWN_MODELS, where_found

    if source == CONCH_HUB:
        return (
            "CONCH: gated weights (CC-BY-NC-ND): request access on Hugging Face, then give "
            "your token under More options"
        )
    if source == "demo":
        return "The demo model shipped with napari-conch: not CONCH, not for diagnosis."
    for card in KNOWN_MODELS:
        if card.source == source:
            if not card.supported:
                return f"{card.name}, licence {card.licence}: not yet supported"
            where = where_found(card)
            then = (
                "Load uses them offline"
                if where.startswith("found")
                else ("Load downloads them (pip install 'napari-conch[hub]')")
            )
            return f"{card.name}, licence {card.licence}: files {where}; {then}"
    return ""


def advanced(*widgets: Any) -> Form:
    """A sub-container of advanced options (folded away by the dock)."""
    return Form(widgets=list(widgets), label="")


class ModelPanel(Form):
    """Checkpoint (file or ``hf_hub:`` id + token), config, tokenizer, device; Load."""

    def __init__(self) -> None:
        self.known = ComboBox(
            label="Known model",
            choices=list(known_models()),
            value=CHOOSE_MODEL,
            tooltip="fills the checkpoint with a model napari-conch knows (napari-conch models)",
        )
        self.source = LineEdit(
            label="Checkpoint",
            tooltip="pytorch_model.bin of CONCH, a folder holding it, hf_hub:MahmoodLab/conch, "
            "or demo (the demo model shipped with napari-conch; not CONCH)",
            value=os.environ.get("NAPARI_CONCH_MODEL", ""),
        )
        self.browse = FileEdit(label="", mode="r", tooltip="choose a checkpoint file")
        self.token = Password(label="HF token", tooltip="Hugging Face token for hf_hub: sources")
        self.config = FileEdit(
            label="Config JSON", mode="r", nullable=True, tooltip="only for non-CONCH models"
        )
        self.tokenizer = FileEdit(
            label="Tokenizer",
            mode="r",
            nullable=True,
            tooltip="conch_byte_level_bpe_uncased.json (found next to the checkpoint if empty)",
        )
        self.device = field_widget(DEVICE_FIELD)
        self.precision = field_widget(PRECISION_FIELD)
        self.load = PushButton(text="Load model")
        self.demo = PushButton(
            text="Use the demo model (not CONCH)",
            tooltip="a small CoCa trained on a few openly licensed images, shipped with the "
            "plugin: for trying it without CONCH's weights; not for diagnosis",
        )
        self.info = Label(value="No model loaded.")
        self.note = Label(value=NO_MODEL_NOTE)
        self.more = advanced(self.token, self.config, self.tokenizer, self.device, self.precision)
        super().__init__(
            widgets=[
                self.known,
                self.source,
                self.browse,
                self.more,
                self.load,
                self.demo,
                self.info,
                self.note,
            ]
        )
        #: Sub-containers the dock folds away: (container, title).
        self.folds = [(self.more, MORE_OPTIONS)]
        self.browse.changed.connect(lambda path: setattr(self.source, "value", str(path)))
        self.known.changed.connect(self._known_chosen)

    def _known_chosen(self, name: str) -> None:
        """A known model chosen: its source in the checkpoint field, its files in the note."""
        source = known_models().get(name, "")
        if source:
            self.source.value = source
            self.note.value = known_model_note(source) or self.note.value

    def load_arguments(self) -> dict[str, Any]:
        """What the panel names, as keyword arguments of ``Session.prepare_model``.

        Raises
        ------
        InputError
            When no checkpoint is given.
        """
        source = self.source.value.strip()
        if not source:
            raise InputError(
                "give a checkpoint path, hf_hub:MahmoodLab/conch, or demo (the demo model)"
            )
        return {
            "source": source,
            "config": optional_path(self.config.value),
            "tokenizer": optional_path(self.tokenizer.value),
            "device": DEVICE_FIELD.read(self.device.value),
            "precision": PRECISION_FIELD.read(self.precision.value),
            "token": self.token.value or None,
        }


class SlidePanel(Form):
    """Image layer, level or MPP, tile size, stride, minimum tissue; Embed, Cancel, progress."""

    def __init__(self) -> None:
        self.layer = ComboBox(label="Image layer", choices=())
        fields = SLIDE_FIELDS  # label, range, default and tooltip: engine.options.RunOptions
        self.level = field_widget(fields["level"])  # its range: the slide's levels, once chosen
        self.mpp = field_widget(fields["mpp"])
        self.slide_mpp = field_widget(fields["slide_mpp"])
        self.slide_mpp.native.setDecimals(4)
        self.tile_size = field_widget(fields["tile_size"])
        self.stride = field_widget(fields["stride"])
        self.min_tissue = field_widget(fields["min_tissue"])
        self.batch_size = field_widget(fields["batch_size"])
        self.store_root = field_widget(fields["store_root"])
        self.embed = PushButton(text="Embed")
        self.embed_visible = PushButton(text="Embed visible region first")
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="Progress", min=0, max=1, value=0)
        self.status = Label(value="")
        self.more = advanced(
            self.level,
            self.mpp,
            self.slide_mpp,
            self.tile_size,
            self.stride,
            self.min_tissue,
            self.batch_size,
            self.store_root,
        )
        super().__init__(
            widgets=[
                self.layer,
                self.more,
                self.embed,
                self.embed_visible,
                self.cancel,
                self.progress,
                self.status,
            ]
        )
        self.folds = [(self.more, MORE_OPTIONS)]

    #: The widgets whose values make the run options.
    OPTION_WIDGETS = tuple(SLIDE_OPTIONS)

    def run_options(self, base: RunOptions) -> RunOptions:
        """``base`` with the panel's values (0 tile size / stride / MPP: not set)."""
        values = {name: SLIDE_FIELDS[name].read(getattr(self, name).value) for name in SLIDE_FIELDS}
        if values["mpp"] is not None:
            values["level"] = None  # a grid by MPP, not by level
        return base.replace(**values)

    def show_options(self, options: RunOptions) -> None:
        """Show ``options`` in the panel's widgets."""
        for name, field in SLIDE_FIELDS.items():
            widget = getattr(self, name)
            value = field.shown(getattr(options, name))
            if field.read(widget.value) != field.read(value):
                widget.value = value


class PromptPanel(Form):
    """Prompts (one per line), templates, background, threshold, display; more like this."""

    def __init__(self) -> None:
        self.text = TextEdit(label="Prompts", tooltip="one prompt per line")
        self.text.native.setPlaceholderText(PROMPT_PLACEHOLDER)
        self.text.max_height = 90
        self.templates = CheckBox(
            text="Model's templates",
            value=True,
            tooltip="the model's own zero-shot templates: CONCH's 22 for CONCH, QuiltNet's, PLIP's",
        )
        self.background = LineEdit(label="Background", tooltip="optional: its wins are label 0")
        self.threshold = option_widget(PromptOptions, "threshold")  # 0: none
        self.show_class = ComboBox(label="Show", choices=())
        self.colormap = ComboBox(label="Colormap", choices=COLORMAPS, value="inferno")
        self.opacity = FloatSlider(label="Opacity", min=0.0, max=1.0, value=0.6)
        self.range = ComboBox(
            label="Range", choices=RANGES, value=RANGES[0],
            tooltip="similarity colours: one range for every prompt (comparable), or each "
            "prompt's own (more contrast)",
        )  # fmt: skip
        self.more_like_this = PushButton(text="More like this (click a tile)")
        self.legend = Label(value="")
        self.cursor = Label(value="")
        self.prompt_file = FileEdit(
            label="Or prompt set", mode="r", nullable=True, filter="*.json",
            tooltip='a CONCH prompt file {"classnames": {CLASS: [synonyms]}, "templates": [...]}'
            ": its classes replace the prompts typed above",
        )  # fmt: skip
        self.more = advanced(
            self.prompt_file, self.background, self.threshold, self.colormap, self.opacity
        )
        super().__init__(
            widgets=[
                self.text,
                self.templates,
                self.show_class,
                self.range,
                self.legend,
                self.more,
                self.more_like_this,
                self.cursor,
            ]
        )
        self.folds = [(self.more, MORE_OPTIONS)]


class ExportPanel(Form):
    """Export the current map: TIFF, GeoJSON, CSV or NPY by the file's extension."""

    def __init__(self) -> None:
        self.path = FileEdit(
            label="Export to", mode="w", filter="*.tif *.tiff *.geojson *.csv *.npy"
        )
        self.tiff_as = ComboBox(
            label="TIFF as",
            choices=list(TIFF_RENDERS),
            value=next(iter(TIFF_RENDERS)),
            tooltip="a .tif map: its values (float OME-TIFF, for analysis) or its colours "
            "(an RGBA pyramid QuPath and OpenSlide open over the slide)",
        )
        self.export = PushButton(text="Export")
        super().__init__(widgets=[self.path, self.tiff_as, self.export])

    def map_render(self) -> str:
        """How a ``.tif`` map is written: ``"float"`` or ``"rgb"`` (``--map-render``)."""
        return TIFF_RENDERS[self.tiff_as.value]


def optional_path(value: Any) -> str | None:
    """A FileEdit value as a path string, None when empty."""
    return path_or_none(value)


def model_summary(model: Any) -> str:
    """The loaded model in a few words: the checkpoint's file name, not its whole path.

    The dock shows this; the full :meth:`~napari_conch.model.LoadedModel.describe` (with the
    path) is its tooltip.
    """
    from pathlib import Path

    source = str(model.source)
    shown = source if source.startswith("hf_hub:") or "/" not in source else Path(source).name
    decoder = "captioning decoder" if model.has_decoder else "no captioning decoder"
    name = f"{model.config.name} (not CONCH)" if model.is_demo else model.config.name
    return f"{name}: {shown}, {model.device} {model.precision}, {decoder}"


def prompt_hint(model: Any) -> str:
    """The prompt box's placeholder for ``model``: the demo model lists the concepts it knows.

    The concepts are ``napari_conch.demo.DEMO_CONCEPTS``.
    """
    from napari_conch.demo import DEMO_CONCEPTS

    if model is None or not model.is_demo:
        return PROMPT_PLACEHOLDER
    return "one prompt per line; the demo model knows:\n" + "\n".join(DEMO_CONCEPTS)


def model_note(model: Any) -> str:
    """What a user should know about a loaded model, in one line."""
    if model.is_demo:
        return (
            "Demo model, not CONCH: trained on a few openly licensed images to try the plugin; "
            "not for diagnosis."
        )
    if not model.has_decoder:
        return (
            "No captioning decoder in this checkpoint (as in the public CONCH release): "
            "prompts and maps work, captions do not."
        )
    return "Captioning decoder loaded: captions work (Caption and retrieval dock)."
