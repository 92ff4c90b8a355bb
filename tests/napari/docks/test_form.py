"""Forms: labelled fields as plain Qt rows that follow their field."""

from __future__ import annotations

import pytest
from magicgui.widgets import CheckBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox

from napari_conch._napari.docks.form import Form
from napari_conch._napari.docks.panels import SlidePanel

pytestmark = pytest.mark.gui


def shown_form(qtbot, widgets):
    form = Form(widgets=widgets)
    qtbot.addWidget(form.native)
    form.native.show()
    qtbot.waitExposed(form.native)
    return form


def test_labelled_fields_have_their_label_beside_them_and_line_up(qtbot):
    name = LineEdit(label="Name", tooltip="what it is called")
    size = SpinBox(label="A much longer label")
    path = FileEdit(label="File", mode="r")
    go = PushButton(text="Go")
    tick = CheckBox(text="Tick")
    note = Label(value="a note")
    form = shown_form(qtbot, [name, size, path, go, tick, note])

    fields = (name, size, path)
    labels = [form.label_of(w) for w in fields]
    assert [label.text() for label in labels] == ["Name", "A much longer label", "File"]
    assert labels[0].toolTip() == "what it is called"
    assert all(label.isVisible() for label in labels)
    # beside the field, in one row; the fields start at the same x
    for label, widget in zip(labels, fields, strict=True):
        assert label.parentWidget() is widget.native.parentWidget()
        assert label.geometry().right() < widget.native.geometry().left()
    starts = {
        w.native.mapTo(form.native, w.native.rect().topLeft()).x() for w in (name, size, path)
    }
    assert len(starts) == 1
    # buttons, check boxes and unlabelled widgets carry their own text: no label
    assert all(form.label_of(w) is None for w in (go, tick, note))
    assert [w.native.parentWidget() for w in (go, tick, note)] == [form.native] * 3
    # still magicgui's own widgets, in order
    assert list(form) == [name, size, path, go, tick, note]


def test_a_row_follows_its_field(qtbot):
    name = LineEdit(label="Name")
    form = shown_form(qtbot, [name, SpinBox(label="Other")])
    label = form.label_of(name)

    name.visible = False
    assert not label.isVisible() and label.parentWidget().isHidden()
    name.visible = True
    assert label.isVisible() and name.native.isVisible()

    name.tooltip = "now with a tooltip"
    assert label.toolTip() == "now with a tooltip"
    name.label = "A new and longer name"
    assert label.text() == "A new and longer name"
    other = form.label_of(form[1])
    assert other.minimumWidth() == label.minimumWidth()  # aligned again

    row = label.parentWidget()
    form.remove(name)
    assert name not in list(form) and name.native.parentWidget() is None
    assert row.isHidden()  # at once; deleted in a later turn
    qtbot.waitUntil(lambda: not _alive(row))
    assert form.label_of(name) is None
    form.native.hide()
    form.native.show()  # the labels are measured again: the removed one is not among them
    assert form.label_of(form[0]).isVisible()


def _alive(widget) -> bool:
    try:
        widget.objectName()
    except RuntimeError:  # deleted by Qt
        return False
    return True


def test_a_field_hidden_before_the_form_is_made_stays_hidden_with_its_label(qtbot):
    hidden = LineEdit(label="Hidden", visible=False)
    form = shown_form(qtbot, [hidden, LineEdit(label="Shown")])
    assert not form.label_of(hidden).isVisible() and not hidden.native.isVisible()
    hidden.visible = True
    assert form.label_of(hidden).isVisible() and hidden.native.isVisible()


def test_a_field_appended_later_gets_its_row(qtbot):
    form = shown_form(qtbot, [LineEdit(label="First")])
    later = SpinBox(label="Added later")
    form.append(later)
    label = form.label_of(later)
    assert label is not None and label.text() == "Added later"
    assert form.label_of(form[0]).minimumWidth() == label.minimumWidth()


def test_a_panel_makes_no_magicgui_label_scaffolding(qtbot):
    """The reason for the form: no extra magicgui Label and container per labelled field."""
    panel = SlidePanel()
    qtbot.addWidget(panel.native)

    def magicgui_widgets(container):
        for widget in container:
            yield widget
            if isinstance(widget, Container):
                yield from magicgui_widgets(widget)

    every = list(magicgui_widgets(panel))
    assert not any(type(w).__name__ == "_LabeledWidget" for w in every)
    assert all(w._labeled_widget() is None for w in every)  # magicgui ties no label to a field
    assert panel.label_of(panel.layer).text() == "Image layer"
    assert panel.more.label_of(panel.tile_size).text() == "Tile size"
    assert panel.more.label_of(panel.tile_size).toolTip() == panel.tile_size.tooltip


def test_labels_are_measured_again_with_the_style_they_are_shown_with(qtbot):
    # napari's style sheet, applied when a dock is shown, has a larger font than a new label:
    # widths measured at construction cut "Image layer" to "Image laye"
    form = Form(widgets=[LineEdit(label="Image layer"), SpinBox(label="Level")])
    qtbot.addWidget(form.native)
    form.native.setStyleSheet("QLabel { font-size: 22pt; }")
    form.native.show()
    qtbot.waitExposed(form.native)
    labels = [form.label_of(w) for w in form]
    assert all(label.width() >= label.sizeHint().width() for label in labels)
    assert labels[0].width() == labels[1].width()
