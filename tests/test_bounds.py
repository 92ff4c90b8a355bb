"""Bounds: what a numeric option accepts, checked in one place for the API, the CLI and docks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from napari_conch.bounds import Bounds, bounded, bounds_of, check_fields
from napari_conch.errors import InputError


@pytest.mark.parametrize(
    ("bounds", "value", "problem"),
    [
        (Bounds(), float("nan"), "expected a finite number"),
        (Bounds(), float("inf"), "expected a finite number"),
        (Bounds(infinite=True), float("-inf"), "expected a finite number"),
        (Bounds(infinite=True), float("nan"), "expected a finite number"),
        (Bounds(minimum=0), -1, "must be at least 0"),
        (Bounds(minimum=0, above=True), 0, "must be greater than 0"),
        (Bounds(minimum=0, maximum=1), 1.5, "must be between 0 and 1"),
        (Bounds(maximum=3), 4, "must be at most 3"),
        (Bounds(kind=int), 2.5, "expected a whole number"),
        (Bounds(kind=int), True, "expected a number, not true/false"),
        (Bounds(), "x", "expected a number"),
        (Bounds(), None, "a value is required"),
    ],
)
def test_refusals_say_why(bounds, value, problem):
    assert bounds.problem(value) == problem


def test_accepted_values():
    assert Bounds(infinite=True).problem(math.inf) is None
    assert Bounds(optional=True).problem(None) is None
    assert Bounds(kind=int, minimum=1).check("n", np.int64(3)) == 3
    assert type(Bounds(kind=int).check("n", np.int64(3))) is int


@dataclass(frozen=True)
class Settings:
    count: int = field(default=1, metadata=bounded(kind=int, minimum=1))
    free: str = "x"

    def __post_init__(self) -> None:
        check_fields(self)


def test_fields_carry_their_bounds():
    assert bounds_of(Settings, "count") == Bounds(kind=int, minimum=1)
    with pytest.raises(KeyError):
        bounds_of(Settings, "free")
    with pytest.raises(InputError, match=r"^count=0: must be at least 1$"):
        Settings(count=0)
    assert type(Settings(count=np.int32(2)).count) is int
