"""Panels whose fields are labelled by plain Qt labels.

magicgui's labelled container wraps every labelled field in two more magicgui widgets, a
``Label`` and a ``_LabeledWidget`` container. magicgui checks each new widget against its
runtime protocols, which is slow on Python 3.11: the 32 labelled fields of the Prompt
highlighter cost 13-14 ms that way, against under 1 ms as plain Qt rows, inside the one
event-loop turn that opens the dock (see docs/benchmarks.md, "Event-loop pauses in napari").
Measured again for issue 20 (magicgui 0.10.2, Python 3.11, a 2-core AMD EPYC under a load of
about 10): the Prompt highlighter's four panels built 30 times, each time once with this form and
once with magicgui's own ``Container(labels=True)``, took a median 168 ms against 290 ms (fastest
75 ms against 95 ms). The form is kept for that difference, which falls in the turn that opens
the dock.

:class:`Form` is a magicgui container that puts a :class:`~qtpy.QtWidgets.QLabel` beside each
labelled field, in a plain Qt row. The field stays the magicgui widget it was (``value``,
``changed``, ``tooltip``); the row follows it: hidden and shown with it, its label text and
tooltip kept the same, removed when the field is taken out of the form. Buttons and check
boxes (which carry their own text) and widgets with an empty label get no row, as in magicgui.
"""

from __future__ import annotations

import weakref
from typing import Any

from magicgui.widgets import Container
from magicgui.widgets.bases import ButtonWidget
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QWidget

#: Pixels between a field's label and the field.
LABEL_SPACING = 6


class _RowFollowsField(QObject):
    """Keeps a field's row in step with the field (an event filter on the field's widget)."""

    def __init__(self, row: QWidget, label: QLabel, field: QWidget, form: Form) -> None:
        super().__init__(row)
        self._row = row
        self._label = label
        self._field = field
        self._form = weakref.ref(form)

    def relabel(self, text: str) -> None:
        """The field's label changed to ``text``."""
        self._label.setText(text)
        if (form := self._form()) is not None:
            form.align_labels()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.HideToParent:
            self._row.setVisible(False)
        elif kind == QEvent.Type.ShowToParent:
            self._row.setVisible(True)
        elif kind == QEvent.Type.ToolTipChange:
            self._label.setToolTip(self._field.toolTip())
        elif kind == QEvent.Type.ParentChange and self._field.parentWidget() is not self._row:
            # taken out of the form (magicgui's remove sets the parent to None): the row goes
            self._field.removeEventFilter(self)
            if (form := self._form()) is not None:
                form._forget(self._label)
            self._row.hide()
            self._row.deleteLater()
        return False


#: When a form measures its labels again: shown (polished with napari's style sheet, whose
#: font is larger than Qt's default) or given another font or style.
_REMEASURE = (QEvent.Type.Show, QEvent.Type.FontChange, QEvent.Type.StyleChange)


class _AlignWhenStyled(QObject):
    """Lines a form's labels up again once their font is known (an event filter on the form)."""

    def __init__(self, form: Form) -> None:
        super().__init__(form.native)
        self._align = weakref.WeakMethod(form.align_labels)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in _REMEASURE and (align := self._align()) is not None:
            align()
        return False


class Form(Container):
    """A vertical magicgui container whose labelled fields are plain Qt rows (see module doc).

    Parameters
    ----------
    widgets : sequence of magicgui widgets
        The fields, top to bottom; a widget with a non-empty ``label`` gets it beside it.
    **kwargs
        Passed to magicgui's ``Container`` (``labels`` and ``layout`` are the form's own).

    """

    def __init__(self, widgets: Any = (), **kwargs: Any) -> None:
        kwargs["labels"] = False
        kwargs["layout"] = "vertical"
        super().__init__(widgets=widgets, **kwargs)
        self._row_labels: list[tuple[Any, QLabel]] = []
        for widget in self:
            self._put_in_row(widget)
        self.align_labels()  # with the font of now: laid out right at once when it does not change
        self.native.installEventFilter(_AlignWhenStyled(self))

    def insert(self, key: int, widget: Any) -> None:
        """Insert ``widget`` at ``key``, in a labelled row when it has a label."""
        super().insert(key, widget)
        self._put_in_row(widget)
        self.align_labels()

    def _put_in_row(self, widget: Any) -> None:
        text = widget.label
        if not text or isinstance(widget, ButtonWidget):
            return
        field = widget.native
        layout = self.native.layout()
        index = layout.indexOf(field)
        if index < 0:  # already in a row
            return
        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.setSpacing(LABEL_SPACING)
        label = QLabel(text)
        label.setToolTip(field.toolTip())
        label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        label.setBuddy(field)
        label.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Preferred)
        hidden = field.isHidden()
        layout.insertWidget(index, row)
        row_layout.addWidget(label)
        row_layout.addWidget(field, 1)
        if hidden:  # a hidden field's row is hidden; the field, moved, stays hidden
            row.hide()
            field.hide()
        follower = _RowFollowsField(row, label, field, self)
        field.installEventFilter(follower)
        widget.label_changed.connect(follower.relabel, check_nargs=False)
        self._row_labels.append((widget, label))

    def _forget(self, label: QLabel) -> None:
        self._row_labels = [(f, lab) for f, lab in self._row_labels if lab is not label]

    def label_of(self, widget: Any) -> QLabel | None:
        """The QLabel beside ``widget`` in this form, or None."""
        return next((label for field, label in self._row_labels if field is widget), None)

    def align_labels(self) -> None:
        """Give every label of the form the width of the widest, so that the fields line up.

        Measured with the labels' font of the moment: again when the form is shown (napari's
        style sheet, applied then, has a larger font than the one a new label has).
        """
        labels = [label for _field, label in getattr(self, "_row_labels", ())]
        if not labels:
            return
        widest = max(label.sizeHint().width() for label in labels)
        for label in labels:
            label.setMinimumWidth(widest)
