"""The parts of the Annotate dock: magicgui containers with their widgets as attributes.

They hold no behaviour (see :mod:`.annotate_dock`; the few functions here turn a retraining
into what the panels show), so a test sets ``.value`` on any part and
calls the dock's handlers, as a user would.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    Select,
    Table,
)

from napari_conch._napari.docks.form import Form


def _row(*widgets) -> Container:
    return Container(widgets=list(widgets), layout="horizontal", labels=False)


#: Columns of the cross-validated table (short: four fit the dock's ~260 px at 1366 x 768).
TABLE_COLUMNS = ("class", "prec.", "recall", "ex.")
#: Most rows the table shows before it scrolls.
TABLE_ROWS = 6


def fit_table(table: Table, rows: int | None = None) -> None:
    """Make the table as tall as its header and rows (at most :data:`TABLE_ROWS`), its class
    column take the width left by the numbers, no row numbers: nothing clipped at laptop size.
    """
    from qtpy.QtWidgets import QHeaderView

    native = table.native
    native.verticalHeader().setVisible(False)
    header = native.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    shown = min(max(native.rowCount() if rows is None else rows, 1), TABLE_ROWS)
    height = header.sizeHint().height() + shown * native.verticalHeader().defaultSectionSize()
    table.min_height = table.max_height = height + 2 * native.frameWidth()


#: The Learn section's status before the first example.
NO_EXAMPLES = "No examples yet: the map is the prompts' zero-shot map."
#: The same when the Prompt highlighter already shows that map (no learned layer is drawn).
NO_EXAMPLES_SHOWN_BY_PROMPTS = (
    "No examples yet: the map is the prompts' zero-shot map, shown as CONCH labels; "
    "paint or draw examples to teach it."
)


def narrow_chooser(edit: FileEdit) -> None:
    """A FileEdit whose path field takes the row: its "Select file" button becomes "..."
    (beside it, at 1366 x 768, the path field was 40-80 px wide)."""
    edit.choose_btn.text = "..."
    edit.choose_btn.tooltip = "choose a file"
    edit.choose_btn.max_width = 36


class ClassPanel(Form):
    """The slide layer, the class to paint, adding a class, painting and correcting tiles."""

    def __init__(self) -> None:
        self.layer = ComboBox(label="Slide layer", tooltip="the RGB image layer of the slide")
        self.klass = ComboBox(
            label="Class",
            tooltip="the class painted, or given to a corrected tile: the prompts of the "
            "Prompt highlighter, then the classes you add",
        )
        self.new_class = LineEdit(label="New class", tooltip="a class learned from examples alone")
        self.new_class.native.setPlaceholderText("new class name")  # its row shows no label
        self.add = PushButton(text="Add class")
        self.paint = PushButton(
            text="Paint",
            tooltip="brush over tiles in the 'CONCH examples' layer: a tile whose centre you "
            "paint becomes an example of the class",
        )
        self.draw = PushButton(
            text="Draw",
            tooltip="draw polygons, rectangles or ellipses in the 'CONCH example shapes' layer: "
            "the tiles whose centre lies in a finished shape become examples of the class",
        )
        self.correct = PushButton(
            text="Correct (click)",
            tooltip="click a tile of the map: it becomes an example of the chosen class",
        )
        self.erase = PushButton(text="Clear")
        super().__init__(
            widgets=[
                self.layer,
                self.klass,
                _row(self.new_class, self.add),
                _row(self.paint, self.draw),  # two rows: four buttons cut their texts
                _row(self.correct, self.erase),
            ]
        )


class LearnPanel(Form):
    """Live retraining, the cross-validated table and the tiles to check next."""

    def __init__(self) -> None:
        self.live = CheckBox(text="Retrain as I annotate", value=True)
        self.retrain = PushButton(text="Retrain now")
        self.status = Label(value=NO_EXAMPLES)
        self.status.native.setWordWrap(True)
        self.table = Table(value={name: [] for name in TABLE_COLUMNS})
        self.table.read_only = True
        self.table.tooltip = (
            "cross-validated precision and recall of each class, and its examples (ex.)"
        )
        fit_table(self.table, rows=3)
        self.validation = Label(value="")
        self.validation.native.setWordWrap(True)
        self.check_next = Select(
            label="Check next",
            choices=[],
            tooltip="the tiles the classifier is least sure about; click one to go there",
        )
        self.check_next.max_height = 60
        super().__init__(
            widgets=[
                self.live,  # on a row of its own: beside the button its text was cut
                self.retrain,
                self.status,
                self.table,
                self.validation,
                self.check_next,
            ]
        )


class ProjectPanel(Form):
    """QuPath import, project save/load (inside the store), and export."""

    def __init__(self) -> None:
        self.geojson = FileEdit(
            label="",  # a label beside it left the path field 40 px at 1366 x 768
            mode="r",
            nullable=True,
            filter="*.geojson *.json",
            tooltip="QuPath GeoJSON annotations to import: their tiles become examples",
        )
        self.geojson.line_edit.native.setPlaceholderText("QuPath GeoJSON to import")

        self.import_ = PushButton(text="Import")
        self.save = PushButton(text="Save", tooltip="save the project in the store")
        self.load = PushButton(text="Load", tooltip="load the project saved in the store")
        self.path = FileEdit(
            label="Export to",
            mode="w",
            nullable=True,
            filter="*.tif *.tiff *.geojson *.csv *.npy",
        )
        for edit in (self.geojson, self.path):
            narrow_chooser(edit)
        self.export_map = PushButton(
            text="Export map", tooltip="the learned map: .csv, .tif, .geojson or .npy"
        )
        self.export_examples = PushButton(
            text="Export examples", tooltip="the examples as QuPath annotations (.geojson)"
        )
        super().__init__(
            widgets=[
                self.geojson,  # its path field the dock's width; named by its placeholder
                self.import_,
                _row(self.save, self.load),
                self.path,
                _row(self.export_map, self.export_examples),
            ]
        )


def outcome_status(outcome: Any, shown_by_prompts: bool) -> str:
    """The Learning section's status after a retraining (``shown_by_prompts``: no learned
    map is drawn, the Prompt highlighter's labels show the zero-shot map)."""
    if not outcome.used:
        return NO_EXAMPLES_SHOWN_BY_PROMPTS if shown_by_prompts else NO_EXAMPLES
    seconds = outcome.seconds["train"] + outcome.seconds["maps"]
    note = f", {outcome.unembedded} on tiles without embedding" if outcome.unembedded else ""
    return f"{outcome.used} examples{note}; retrained in {1000 * seconds:.0f} ms"


def check_next_choices(uncertain: list[Any]) -> dict[str, tuple[int, int]]:
    """The Check next list: a line per tile to check, least sure first, and its tile."""
    return {
        f"({u.row}, {u.col}) {u.best} or {u.second}? margin {u.margin:.2f}": (u.row, u.col)
        for u in uncertain
    }


def validation_table(v: Any, counts: dict[str, int]) -> dict[str, list[str]]:
    """The cross-validated precision, recall and example count per class, by column
    (:data:`TABLE_COLUMNS`); "-" for a class with too few examples to validate."""
    names = list(v.support) + v.not_enough
    columns = [
        names,
        [f"{v.precision[n]:.2f}" if n in v.support else "-" for n in names],
        [f"{v.recall[n]:.2f}" if n in v.support else "-" for n in names],
        [str(counts.get(n, 0)) for n in names],
    ]
    return dict(zip(TABLE_COLUMNS, columns, strict=True))
