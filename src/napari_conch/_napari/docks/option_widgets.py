"""magicgui widgets of the option fields that :mod:`napari_conch.engine.option_fields` describes.

A panel asks for an option's widget by name (:func:`option_widget`):
its kind, range, step, default and tooltip all come from the options dataclasses, so a panel
writes none of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from magicgui.widgets import ComboBox, FileEdit, FloatSlider, FloatSpinBox, LineEdit, SpinBox

from napari_conch.engine.option_fields import OptionField, panel_field


def field_widget(field: OptionField) -> Any:
    """The magicgui widget of ``field``, holding its default."""
    common = {"label": field.label, "tooltip": field.tooltip}
    if field.kind == "folder":
        return FileEdit(mode="d", nullable=True, value=field.value, **common)
    if field.kind == "choice":
        return ComboBox(choices=field.choices, value=field.value, **common)
    if field.kind == "text":
        return LineEdit(value=field.value or "", **common)
    if field.kind == "int":
        kind: Any = SpinBox
    else:
        kind = FloatSlider if field.slider else FloatSpinBox
    numeric = {"min": field.minimum, "max": field.maximum, "step": field.step}
    numeric = {key: value for key, value in numeric.items() if value is not None}
    widget = kind(value=field.value, **numeric, **common)
    if field.unset_text is not None:
        widget.native.setSpecialValueText(field.unset_text)  # shown in place of the 0
    return widget


def option_widget(cls: Any, name: str, defaults: Any = None, **words: str) -> Any:
    """The widget of ``cls``'s option ``name`` (default from ``defaults``, else the class's).

    ``words`` (``label``, ``tooltip``) replace the option's own where a panel uses the option
    for something of its own (the level a region is read at).
    """
    field = panel_field(cls, name, defaults)
    if words:
        field = dataclasses.replace(field, **words)
    return field_widget(field)
