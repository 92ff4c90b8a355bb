"""What a numeric option accepts, said once and checked where the value enters.

Every numeric option carries a :class:`Bounds`: the fields of the options dataclasses in their
metadata (``field(default=..., metadata=bounded(minimum=0))``, read back with
:func:`bounds_of` and checked together by :func:`check_fields` when the object is made), the
few options that are no dataclass field as a named constant next to their default. The command
line parses each numeric argument with the same bounds (``napari_conch.cli.common.number``), so
``nan``, ``inf`` and values out of range are refused in one line before any work, by the CLI,
the Python API and the docks alike.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from napari_conch.errors import InputError

#: Key of a :class:`Bounds` in a dataclass field's metadata.
BOUNDS_KEY = "napari_conch.bounds"


@dataclass(frozen=True)
class Bounds:
    """The numbers an option accepts.

    Attributes
    ----------
    kind : type
        ``int`` (whole numbers; ``bool`` is refused) or ``float``.
    minimum, maximum : float, optional
        The range, ends included (``None``: unbounded).
    above : bool
        The minimum itself is refused (``> minimum``).
    infinite : bool
        ``+inf`` is accepted (a time limit meaning "for ever"); NaN never is.
    optional : bool
        ``None`` is accepted (the option left out).
    """

    kind: type = float
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    infinite: bool = False
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (a phrase such as ``"must be at least 1"``), or ``None``."""
        if value is None:
            return None if self.optional else "a value is required"
        if isinstance(value, bool):
            return "expected a number, not true/false"
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return "expected a whole number"
            number: float = int(value)
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return "expected a number"
            if math.isnan(number) or (math.isinf(number) and not (self.infinite and number > 0)):
                return "expected a finite number"
        return self._range_problem(number)

    def _range_problem(self, number: float) -> str | None:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not self.above and not low <= number <= high:
            return f"must be between {_text(low)} and {_text(high)}"
        if low is not None and self.above and not number > low:
            return f"must be greater than {_text(low)}"
        if low is not None and not number >= low:
            return f"must be at least {_text(low)}"
        if high is not None and not number <= high:
            return f"must be at most {_text(high)}"
        return None

    def check(self, name: str, value: Any) -> Any:
        """``value`` when it is accepted (whole numbers as ``int``); else an :class:`InputError`
        ``"name=value: what is wrong"``."""
        problem = self.problem(value)
        if problem is not None:
            raise InputError(f"{name}={value!r}: {problem}")
        if value is not None and self.kind is int:
            return int(value)
        return value


def _text(limit: float) -> str:
    """A limit as written: ``0``, ``0.5``, ``9223372036854775807``."""
    return str(int(limit)) if float(limit).is_integer() else f"{limit:g}"


def bounded(**bounds: Any) -> dict[str, Bounds]:
    """Field metadata holding ``Bounds(**bounds)``: ``field(default=1, metadata=bounded(...))``."""
    return {BOUNDS_KEY: Bounds(**bounds)}


def bounds_of(cls: Any, name: str) -> Bounds:
    """The bounds of dataclass ``cls``'s field ``name`` (a ``KeyError`` when it has none)."""
    for f in dataclasses.fields(cls):
        if f.name == name and BOUNDS_KEY in f.metadata:
            return f.metadata[BOUNDS_KEY]
    raise KeyError(f"{cls.__name__}.{name} has no bounds")


def check_fields(obj: Any) -> None:
    """Check every bounded field of dataclass instance ``obj`` (frozen ones too).

    Whole numbers are stored as ``int`` (a widget's ``numpy.int64`` becomes JSON-able).

    Raises
    ------
    InputError
        Naming the first field whose value is refused, and why.
    """
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get(BOUNDS_KEY)
        if bounds is not None:
            object.__setattr__(obj, f.name, bounds.check(f.name, getattr(obj, f.name)))
