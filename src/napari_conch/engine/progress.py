"""Progress events of an embedding run and its final summary.

A run has two phases, told apart by :attr:`EmbedProgress.phase`:

- :data:`TISSUE`: finding the tissue (the slide's low-resolution image read block by block, its
  colours measured, the tiles' fractions). ``done`` / ``total`` count the scan's steps
  (:func:`~napari_conch.slide.tissue.scan_tissue_steps`), not tiles; the other counts are 0 and
  ``rows`` / ``cols`` are empty. Made by :func:`tissue_event`.
- :data:`EMBED`: tiles, as below; every event of a run after the tissue phase.

A consumer that only knows tiles skips the tissue events (``event.phase != EMBED``); one that
only reads ``rows`` / ``cols`` (adding batches to an index) or ``computed`` is right as it is.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Phase of the events of the tissue search, before any tile is embedded.
TISSUE = "tissue"
#: Phase of the events counting tiles.
EMBED = "embed"


@dataclass(frozen=True)
class EmbedProgress:
    """One step of an embedding run.

    Attributes
    ----------
    done
        Tissue tiles whose embedding is in the store (including those of earlier runs).
    total
        Tiles the run aims to have done: every tissue tile.
    failed
        Tiles that failed in this run (unreadable, or a non-finite embedding).
    computed
        Tiles embedded by this run so far.
    tiles_per_s
        This run's speed so far (0 before the first batch).
    eta_s
        Seconds left at that speed (``None`` while unknown).
    rows, cols
        The tiles of the last batch (empty for the first event), so a viewer refreshes only
        those cells of its map.
    phase
        :data:`EMBED` (tiles), or :data:`TISSUE`: then ``done`` / ``total`` count the steps of
        the tissue search (see the module's doc).
    """

    done: int
    total: int
    failed: int
    computed: int
    tiles_per_s: float
    eta_s: float | None
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)
    phase: str = EMBED

    @property
    def fraction(self) -> float:
        """Share of the phase's work done: tiles handled (done or failed), or tissue steps; 1.0
        when there is nothing to do."""
        return 1.0 if self.total == 0 else min(1.0, (self.done + self.failed) / self.total)


def tissue_event(done: int, total: int) -> EmbedProgress:
    """An event of the tissue phase: ``done`` of ``total`` steps of the tissue search."""
    empty = np.zeros(0, dtype=np.int64)
    return EmbedProgress(
        done=done,
        total=total,
        failed=0,
        computed=0,
        tiles_per_s=0.0,
        eta_s=None,
        rows=empty,
        cols=empty,
        phase=TISSUE,
    )


@dataclass
class EmbedSummary:
    """What an embedding run did."""

    store_path: Path
    total: int
    done: int
    computed: int
    failed_tiles: list[tuple[int, int, str]]
    background: int
    cancelled: bool
    elapsed_s: float

    @property
    def failed(self) -> int:
        """Number of tiles that failed (unreadable, or a non-finite embedding)."""
        return len(self.failed_tiles)

    @property
    def pending(self) -> int:
        """Tissue tiles neither embedded nor failed when the run ended (cancelled or stopped)."""
        return max(0, self.total - self.done - self.failed)

    @property
    def complete(self) -> bool:
        """True when every tissue tile is DONE (with a finite embedding) and none failed."""
        return self.done == self.total and not self.failed_tiles

    def failure_reasons(self) -> list[tuple[str, int]]:
        """Why tiles failed: ``(reason, count)``, the most frequent first."""
        return Counter(why for _, _, why in self.failed_tiles).most_common()

    def describe_failures(self, most: int = 3) -> str:
        """One line: how many tiles failed and why, e.g. ``"3 tiles failed: x (2), y (1)"``."""
        reasons = self.failure_reasons()
        parts = [f"{why} ({n})" for why, n in reasons[:most]]
        if len(reasons) > most:
            parts.append(f"{len(reasons) - most} other reason(s)")
        noun = "tile" if self.failed == 1 else "tiles"
        return f"{self.failed} {noun} failed: " + "; ".join(parts)

    @property
    def tiles_per_s(self) -> float:
        """Tiles embedded per second over the run."""
        return self.computed / self.elapsed_s if self.elapsed_s > 0 else 0.0


class RateMeter:
    """Tiles per second and ETA since the start of a run."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start

    def event(
        self, *, done: int, total: int, failed: int, computed: int, rows, cols
    ) -> EmbedProgress:
        """Return the progress event for these counts."""
        elapsed = self.elapsed()
        rate = computed / elapsed if computed and elapsed > 0 else 0.0
        left = max(0, total - done - failed)
        eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
        return EmbedProgress(
            done=done,
            total=total,
            failed=failed,
            computed=computed,
            tiles_per_s=rate,
            eta_s=eta,
            rows=np.asarray(rows, dtype=np.int64),
            cols=np.asarray(cols, dtype=np.int64),
        )
