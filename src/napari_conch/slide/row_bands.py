"""Whole-image numpy work of the tissue scan, cut into bands of rows computed on threads at once.

Once the low-resolution image is read, the scan's last steps (saturation, Otsu's histogram, the
3x3 closing and opening, the tiles' box sums) ran on one core while the other waited: about
220 ms of a 20k x 20k slide's 0.4-0.6 s scan on the 2-core test machine. numpy releases the
interpreter lock inside its loops, so bands of rows computed in threads run side by side.

The numbers are those of one pass over the whole image: each band computes exactly the rows it
owns, and an operation on a neighbourhood reads ``halo`` rows more on each side of its band
and drops them (:func:`with_halo`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: Bands computed at once: the cores, at most four (the work is a few tens of milliseconds).
THREADS = max(1, min(4, os.cpu_count() or 1))
#: Fewest rows in a band: a smaller image is computed in one piece, on the calling thread.
MIN_ROWS = 256


def bands(
    height: int, threads: int | None = None, min_rows: int | None = None
) -> list[tuple[int, int]]:
    """``(top, bottom)`` of up to ``threads`` bands of about equal height covering ``height`` rows.

    One band (the whole) when a band would have fewer than ``min_rows`` rows. Defaults:
    :data:`THREADS` and :data:`MIN_ROWS`, read at each call.
    """
    threads = THREADS if threads is None else threads
    min_rows = MIN_ROWS if min_rows is None else min_rows
    count = max(1, min(threads, height // max(1, min_rows)))
    edges = [round(height * k / count) for k in range(count + 1)]
    return [(top, bottom) for top, bottom in itertools.pairwise(edges)]


def on_threads(work: Callable[..., T], parts: Sequence[tuple]) -> list[T]:
    """``work(*part)`` for each part, in order; on threads at once (a single part runs here).

    An exception of a part is raised here, after every part has ended.
    """
    if len(parts) <= 1:
        return [work(*part) for part in parts]
    with ThreadPoolExecutor(len(parts), thread_name_prefix="napari-conch-bands") as pool:
        futures = [pool.submit(work, *part) for part in parts]
        return [future.result() for future in futures]


def with_halo(top: int, bottom: int, height: int, halo: int) -> tuple[int, int, slice]:
    """Rows to compute for the band ``[top, bottom)`` of an operation reaching ``halo`` rows.

    Returns ``(start, stop, keep)``: compute rows ``[start, stop)`` (the band and up to
    ``halo`` rows each side, inside the image), then keep ``result[keep]``, the band's rows.
    """
    start, stop = max(0, top - halo), min(height, bottom + halo)
    return start, stop, slice(top - start, bottom - start)
