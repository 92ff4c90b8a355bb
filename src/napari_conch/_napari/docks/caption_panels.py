"""The parts of the caption and retrieval widget, with their widgets as attributes (no behaviour).

The model part is the prompt highlighter's :class:`~.panels.ModelPanel`; see
:mod:`.caption_widget` for what the buttons do.
"""

from __future__ import annotations

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    Table,
    TextEdit,
)

from napari_conch._napari.docks.form import Form
from napari_conch._napari.docks.option_widgets import option_widget
from napari_conch._napari.docks.panels import MORE_OPTIONS, advanced
from napari_conch.engine.options import (
    DOCK_CAPTION_DEFAULTS,
    CaptionOptions,
    RunOptions,
    SearchOptions,
)

DRAW_TEXT = "Draw a rectangle"
CLICK_TEXT = "Click a point (a tile-sized box)"
CLICK_ARMED_TEXT = "Click on the slide (click here to stop)"


def _wrapping_label(value: str = "") -> Label:
    from qtpy.QtCore import Qt

    label = Label(value=value)
    label.native.setWordWrap(True)
    label.native.setTextFormat(Qt.TextFormat.PlainText)  # captions may hold "<" and "&"
    return label


def _table(columns: tuple[str, ...]) -> Table:
    from qtpy.QtWidgets import QHeaderView

    table = Table(columns=list(columns))
    table.read_only = True
    table.min_height = 120
    table.native.verticalHeader().setVisible(False)  # no row numbers: room for the text
    header = table.native.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # no sideways scrolling
    return table


#: What a "Model's templates" box means.
MODEL_TEMPLATES_TIP = (
    "each text in the model's own zero-shot templates: CONCH's 22 for CONCH and the demo model, "
    "QuiltNet's, PLIP's, KEEP's or BiomedCLIP's for those; unchecked: the texts as typed"
)


class RegionPanel(Form):
    """Slide layer, reading level, click-box size; draw / click; the region's box."""

    def __init__(self) -> None:
        self.layer = ComboBox(label="Image layer", choices=())
        self.level = option_widget(
            RunOptions, "level", label="Read level", tooltip="pyramid level the region is read at"
        )
        self.box_size = SpinBox(
            label="Click box", min=16, max=8192, value=448,
            tooltip="side (pixels of the read level) of the box around a clicked point",
        )  # fmt: skip
        self.draw = PushButton(text=DRAW_TEXT)
        self.click = PushButton(text=CLICK_TEXT)
        self.auto = CheckBox(text="Caption and rank each new region", value=True)
        self.box = Label(value="No region yet.")
        self.more = advanced(self.level, self.box_size)
        super().__init__(
            widgets=[self.layer, self.draw, self.click, self.auto, self.box, self.more]
        )
        self.folds = [(self.more, MORE_OPTIONS)]


class CaptionPanel(Form):
    """Generation strategy, beams, maximum length; Caption; the caption."""

    def __init__(self) -> None:
        # label, range, default and tooltip: engine.options.CaptionOptions (the dock's preset)
        caption = DOCK_CAPTION_DEFAULTS
        self.strategy = option_widget(CaptionOptions, "strategy", caption)
        self.num_beams = option_widget(CaptionOptions, "num_beams", caption)
        self.max_length = option_widget(CaptionOptions, "max_length", caption)
        self.caption = PushButton(text="Caption")
        self.reason = _wrapping_label()
        self.text = _wrapping_label()
        self.more = advanced(self.strategy, self.num_beams, self.max_length)
        super().__init__(widgets=[self.caption, self.reason, self.text, self.more])
        self.folds = [(self.more, MORE_OPTIONS)]


class RankPanel(Form):
    """Candidate texts (one per line) or a prompt-set JSON; Rank; the ranking."""

    def __init__(self) -> None:
        self.texts = TextEdit(label="Candidates", tooltip="one candidate text per line")
        self.texts.max_height = 110
        self.prompt_file = FileEdit(
            label="Or prompt set", mode="r", nullable=True, filter="*.json",
            tooltip='CONCH JSON: {"classnames": {CLASS: [synonyms]}, "templates": [...]}',
        )  # fmt: skip
        self.templates = CheckBox(
            text="Model's templates", value=False, tooltip=MODEL_TEMPLATES_TIP
        )
        self.rank = PushButton(text="Rank texts")
        self.table = _table(("text", "probability", "cosine"))
        self.more = advanced(self.prompt_file, self.templates)
        super().__init__(widgets=[self.texts, self.more, self.rank, self.table])
        self.folds = [(self.more, MORE_OPTIONS)]


class TopTilesPanel(Form):
    """Prompt, k, templates, store folder; Find; the tiles (click one to go there)."""

    def __init__(self) -> None:
        self.prompt = LineEdit(label="Prompt")
        self.k = option_widget(SearchOptions, "top_tiles")  # as top-tiles' -k
        self.templates = CheckBox(text="Model's templates", value=True, tooltip=MODEL_TEMPLATES_TIP)
        self.store_root = FileEdit(
            label="Store folder", mode="d", nullable=True,
            tooltip="where the slide's embeddings are (default: the Prompt highlighter's, "
            "else the cache folder)",
        )  # fmt: skip
        self.find = PushButton(text="Find top tiles")
        self.table = _table(("row", "col", "cosine"))  # rows numbered by rank
        self.status = _wrapping_label()
        self.more = advanced(self.templates, self.store_root)
        super().__init__(
            widgets=[self.prompt, self.k, self.more, self.find, self.table, self.status]
        )
        self.folds = [(self.more, MORE_OPTIONS)]
