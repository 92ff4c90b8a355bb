"""The docks' option fields, described from the options dataclasses (no Qt here).

A panel field of an option is made from the option's field metadata in
:mod:`napari_conch.engine.options`: its label, tooltip and widget hints
(:class:`~napari_conch.engine.options.Surface`), its range (:class:`~napari_conch.bounds.Bounds`)
and its default (the dataclass's, or a named preset such as ``DOCK_CAPTION_DEFAULTS``).
:func:`panel_field` describes it as an :class:`OptionField`; the napari side
(``napari_conch._napari.docks.option_widgets``) turns that into a magicgui widget. A panel
shows an option that may be left out (``None``) as 0 where 0 is no value it accepts ("model's
own" tile size), and as an empty folder for a folder; :meth:`OptionField.shown` and
:meth:`OptionField.read` convert both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_conch.bounds import bounds_of
from napari_conch.engine.options import surface_of

#: The kinds of field: what widget shows it.
KINDS = ("int", "float", "choice", "folder", "text")


@dataclass(frozen=True)
class OptionField:
    """One option as a panel shows it.

    Attributes
    ----------
    name : str
        The option (the dataclass field).
    kind : str
        One of :data:`KINDS`.
    label, tooltip : str
        What the panel says.
    value : Any
        The default as the widget holds it (0 or ``None`` for an option left out).
    minimum, maximum : float, optional
        The widget's range (0 first when 0 stands for "left out").
    step : float, optional
        The widget's step (``None``: the widget's own).
    choices : tuple of str, optional
        The values of a ``"choice"`` field.
    slider : bool
        A slider rather than a spin box.
    unset_text : str, optional
        What the widget shows in place of the 0 that stands for "left out"; for a choice, the
        choice that does (``"auto"``).
    zero_is_unset : bool
        0 in the widget is the option left out (``None``).
    """

    name: str
    kind: str
    label: str
    tooltip: str
    value: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    slider: bool = False
    unset_text: str | None = None
    zero_is_unset: bool = False

    def shown(self, value: Any) -> Any:
        """The widget value of the option's ``value``."""
        if self.kind == "folder":
            return value
        if value is None and self.kind == "choice":
            return self.unset_text
        if value is None and self.kind in ("int", "float"):
            return 0 if self.kind == "int" else 0.0
        return value

    def read(self, value: Any) -> Any:
        """The option's value of the widget's ``value`` (0 or an empty folder: ``None``)."""
        if self.kind == "folder":
            return path_or_none(value)
        if self.kind == "choice":
            return None if value is not None and value == self.unset_text else value
        if self.kind == "int":
            number: Any = int(value)
        elif self.kind == "float":
            number = float(value)
        else:
            return value
        return None if self.zero_is_unset and number == 0 else number


def path_or_none(value: Any) -> str | None:
    """A folder or file widget's value as a path string; ``None`` when empty."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", ".") else text


def panel_field(cls: Any, name: str, defaults: Any = None) -> OptionField:
    """The panel field of ``cls``'s option ``name``, its value from ``defaults`` (an instance;
    ``None``: the dataclass's own default).

    Raises
    ------
    KeyError
        When the option has no panel label (it is shown in no panel).
    """
    surface = surface_of(cls, name)
    if surface.label is None:
        raise KeyError(f"{cls.__name__}.{name} has no panel label")
    base = cls() if defaults is None else defaults
    default = getattr(base, name)
    tooltip = surface.tooltip or surface.help
    if surface.folder:
        if surface.unset is not None:
            tooltip += f" (empty: {surface.unset})"
        return OptionField(name, "folder", surface.label, tooltip, default)
    choices = surface.panel_choices or surface.choices
    if choices is not None:
        unset = surface.unset_text
        return OptionField(
            name,
            "choice",
            surface.label,
            tooltip,
            unset if default is None else default,
            choices=tuple(choices) if unset is None else (unset, *choices),
            unset_text=unset,
        )
    try:
        bounds = bounds_of(cls, name)
    except KeyError:
        return OptionField(name, "text", surface.label, tooltip, default)
    kind = "int" if bounds.kind is int else "float"
    zero_is_unset = surface.zero_unset or (bounds.optional and bounds.problem(0) is not None)
    if zero_is_unset and surface.unset is not None:
        tooltip += f" (0: {surface.unset})"
    shown_default = default if default is not None else (0 if kind == "int" else 0.0)
    return OptionField(
        name,
        kind,
        surface.label,
        tooltip,
        shown_default,
        minimum=_first(surface.panel_min, 0 if zero_is_unset else None, bounds.minimum),
        maximum=_first(surface.panel_max, bounds.maximum),
        step=surface.step,
        slider=surface.slider,
        unset_text=surface.unset_text,
        zero_is_unset=zero_is_unset,
    )


def _first(*values: float | None) -> float | None:
    """The first of ``values`` that is not ``None``."""
    return next((value for value in values if value is not None), None)


def panel_fields(cls: Any, names: tuple[str, ...], defaults: Any = None) -> dict[str, OptionField]:
    """:func:`panel_field` of each of ``names``, by name."""
    return {name: panel_field(cls, name, defaults) for name in names}
