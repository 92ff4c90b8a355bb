"""Generators that yield progress and return a result: run out, or mapped."""

from __future__ import annotations

import pytest

from napari_conch.generators import drain, mapped


def _work(log: list, n: int = 3):
    try:
        yield from range(n)
        return "done"
    finally:
        log.append("closed")


def test_drain_passes_each_item_and_returns_the_result():
    log, seen = [], []
    assert drain(_work(log), seen.append) == "done"
    assert seen == [0, 1, 2] and log == ["closed"]
    assert drain(_work(log)) == "done"


def test_drain_closes_the_work_when_the_callback_raises():
    log = []

    def fail(item):
        raise RuntimeError(item)

    with pytest.raises(RuntimeError):
        drain(_work(log), fail)
    assert log == ["closed"]  # released at once, not when collected


def test_mapped_changes_the_items_keeps_the_result_and_closes_the_work():
    log = []
    doubled = mapped(_work(log), lambda i: 2 * i)
    assert drain(doubled) == "done" and log == ["closed"]
    log.clear()
    early = mapped(_work(log), str)
    assert next(early) == "0"
    early.close()
    assert log == ["closed"]
