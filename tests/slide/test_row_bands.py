from __future__ import annotations

import itertools
import threading

import pytest

from napari_conch.slide import row_bands
from napari_conch.slide.row_bands import bands, on_threads, with_halo


@pytest.mark.parametrize(
    ("height", "threads", "min_rows", "count"),
    [(1000, 4, 256, 3), (1000, 2, 256, 2), (255, 4, 256, 1), (0, 4, 256, 1), (9, 4, 1, 4)],
)
def test_bands_cover_the_rows_once_in_order(height, threads, min_rows, count):
    parts = bands(height, threads, min_rows)
    assert len(parts) == count
    assert parts[0][0] == 0 and parts[-1][1] == height
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    sizes = [bottom - top for top, bottom in parts]
    assert max(sizes) - min(sizes) <= 1


def test_bands_read_the_module_defaults_at_each_call(monkeypatch):
    monkeypatch.setattr(row_bands, "THREADS", 3)
    monkeypatch.setattr(row_bands, "MIN_ROWS", 10)
    assert len(bands(100)) == 3
    monkeypatch.setattr(row_bands, "THREADS", 1)
    assert bands(100) == [(0, 100)]


def test_on_threads_runs_the_calls_at_once_and_keeps_their_order():
    barrier = threading.Barrier(3, timeout=10)  # passes only if all three run at once

    def call(k):
        return (barrier.wait(), k, threading.current_thread().name)[1:]

    results = on_threads(call, [(k,) for k in range(3)])
    assert [k for k, _ in results] == [0, 1, 2]
    assert all(name.startswith("napari-conch-bands") for _, name in results)
    assert on_threads(threading.current_thread, [()]) == [threading.current_thread()]
    assert on_threads(call, []) == []


def test_on_threads_raises_a_calls_error_after_every_call_ended():
    ended = []

    def band(k):
        if k == 2:
            raise ValueError("band 2")
        threading.Event().wait(0.2)
        ended.append("slow")

    with pytest.raises(ValueError, match="band 2"):
        on_threads(band, [(1,), (2,)])
    assert ended == ["slow"]


def test_with_halo_stays_inside_the_image():
    assert with_halo(0, 50, 100, 4) == (0, 54, slice(0, 50))
    assert with_halo(50, 100, 100, 4) == (46, 100, slice(4, 54))
    assert with_halo(30, 60, 100, 4) == (26, 64, slice(4, 34))
