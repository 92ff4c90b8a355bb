"""Reading a store's arrays without ever turning a damaged chunk into numbers.

Stores made by this version have a ``crc32c`` checksum after the ``zstd`` codec of every chunk
(zarr 3's ``Crc32cCodec``): flipped bytes and truncated chunk files fail to decode. Older stores
have no checksum; a truncated or garbled chunk usually fails ``zstd`` instead. Either way, the
functions here read an array band by band (one row of chunks), and when a band fails they read
its chunks one by one: the chunks that fail are reported and read as the array's fill value.

What a damaged chunk means for the tiles is decided by
:class:`~napari_conch.engine.store.embedding_store.EmbeddingStore` (tiles whose status cannot be
read are not DONE; DONE tiles whose embedding cannot be read, or is not finite, are treated as not
embedded). :class:`StoreReport` is the result of ``EmbeddingStore.verify()`` and its one-line
verdict.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Arrays of a store, in the order they are checked (``tile_check`` only in stores made since
#: place checks: see :func:`tile_checks`).
ARRAYS = ("status", "embeddings", "tissue", "tissue_fraction", "tile_check")
#: The arrays every store has.
REQUIRED = ARRAYS[:4]
#: Status fill value of stores with place checks: a status chunk that is missing reads as this
#: impossible value, never as PENDING (every status chunk is written when the store is made).
UNWRITTEN = 255
_U64 = np.uint64
#: How many damaged tiles a one-line message names.
EXAMPLES = 3


class StoreDamageWarning(UserWarning):
    """A store has damaged chunks; the affected tiles are treated as not embedded."""


@dataclass(frozen=True)
class BadChunk:
    """A chunk that could not be decoded."""

    array: str
    coords: tuple[int, ...]
    reason: str

    def region(self, chunks: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
        """The array region the chunk covers (clipped to the array)."""
        spans = zip(self.coords, chunks, shape, strict=True)
        return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in spans)


def damage_reason(exc: BaseException) -> str:
    """A short reason for a chunk that failed to decode."""
    text = str(exc)
    if "checksum" in text.lower():
        return "checksum mismatch"
    if "zstd" in text.lower() or "decompress" in text.lower():
        return "cannot be decompressed"
    return f"unreadable ({type(exc).__name__})"


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): every bit mixes every bit."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def check_key(signature_hash: str) -> np.uint64:
    """The per-store key of :func:`tile_checks`, from the store's signature hash (hex)."""
    return _U64(int(signature_hash[:16], 16))


def tile_checks(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, key: np.uint64
) -> np.ndarray:
    """uint32 place checks of tiles ``(rows, cols)`` holding float16 ``values [N, D]``.

    A check is the CRC-32 of the embedding's exact bytes, started from a value that mixes the
    store's key with the tile's row and column: an embedding read anywhere else than where it
    was written (a chunk file moved or swapped, or restored from another store) does not match
    the check stored for its place. It is never 0 (0 is the fill value: "no check"). A guard
    against chunks in the wrong place by accident, not against someone forging a store.
    """
    rows = np.asarray(rows, dtype=np.uint64).ravel()
    cols = np.asarray(cols, dtype=np.uint64).ravel()
    data = np.ascontiguousarray(values, dtype="<f2").reshape(len(rows), -1)  # one byte order
    size = data.shape[1] * data.itemsize
    flat = memoryview(data.view(np.uint8).reshape(-1))
    starts = (_mix((rows << _U64(32)) ^ cols ^ _U64(key)) >> _U64(32)).tolist()
    out = np.fromiter(
        (zlib.crc32(flat[i * size : (i + 1) * size], seed) for i, seed in enumerate(starts)),
        dtype=np.uint32,
        count=len(starts),
    )
    out[out == 0] = 1
    return out


def misplaced(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, checks: np.ndarray, key: np.uint64
) -> np.ndarray:
    """bool ``[N]``: tiles whose float16 ``values`` do not match their stored ``checks``."""
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    return tile_checks(rows, cols, values, key) != np.asarray(checks, dtype=np.uint32).ravel()


def _chunk_grid(array: Any) -> list[range]:
    return [range(math.ceil(s / c)) for s, c in zip(array.shape, array.chunks, strict=True)]


def read_band(
    array: Any, name: str, band: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, list[BadChunk]]:
    """Read row-band ``band`` (chunk row) of ``array``; damaged chunks read as the fill value.

    Returns the band's values and the chunks that could not be decoded.
    """
    rows = array.chunks[0]
    r0, r1 = band * rows, min((band + 1) * rows, array.shape[0])
    try:
        return np.asarray(array[r0:r1]), []
    except MemoryError:
        raise
    except Exception:  # zarr raises several kinds for one damaged chunk: find which
        pass
    values = np.full((r1 - r0, *array.shape[1:]), array.fill_value, dtype=array.dtype)
    bad = []
    for rest in itertools.product(*_chunk_grid(array)[1:]):
        chunk = BadChunk(name, (band, *rest), "")
        region = chunk.region(array.chunks, array.shape)
        local = (slice(0, r1 - r0), *region[1:])
        try:
            values[local] = array[region]
        except MemoryError:
            raise
        except Exception as exc:
            bad.append(BadChunk(name, chunk.coords, damage_reason(exc)))
    return values, bad


def iter_bands(array: Any, name: str) -> Iterator[tuple[slice, np.ndarray, list[BadChunk]]]:
    """Yield ``(rows, values, damaged chunks)`` for each row band of chunks of ``array``."""
    for band in range(math.ceil(array.shape[0] / array.chunks[0])):
        values, bad = read_band(array, name, band)
        r0 = band * array.chunks[0]
        yield slice(r0, r0 + len(values)), values, bad


def read_array(array: Any, name: str) -> tuple[np.ndarray, list[BadChunk]]:
    """Read a whole array; damaged chunks read as the fill value and are returned."""
    if array.shape[0] == 0:
        return np.asarray(array[...]), []
    try:  # the common case in one call (zarr reads the chunks concurrently)
        return np.asarray(array[...]), []
    except MemoryError:
        raise
    except Exception:
        pass
    parts, bad = [], []
    for _, values, damaged in iter_bands(array, name):
        parts.append(values)
        bad.extend(damaged)
    return np.concatenate(parts, axis=0), bad


def tiles_of(bad: list[BadChunk], chunks: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """bool ``[rows, cols]``: tiles covered by the given damaged chunks."""
    mask = np.zeros(shape[:2], dtype=bool)
    for chunk in bad:
        mask[chunk.region(chunks, shape)[:2]] = True
    return mask


def tile_examples(mask: np.ndarray, limit: int = EXAMPLES) -> str:
    """``row 0 col 3, row 5 col 1, ...`` for the first tiles of a mask."""
    rows, cols = np.nonzero(mask)
    text = ", ".join(f"row {r} col {c}" for r, c in zip(rows[:limit], cols[:limit], strict=True))
    return text + (", ..." if len(rows) > limit else "")


@dataclass
class StoreReport:
    """What :meth:`EmbeddingStore.verify` found.

    Attributes
    ----------
    path
        The store folder.
    counts
        Tiles per status after damaged tiles are taken as not DONE.
    bad_chunks
        Chunks that could not be decoded (checksum mismatch, truncated, garbled).
    lost
        bool ``[rows, cols]``: tiles whose data is lost: status unreadable or invalid, or DONE
        with an embedding that is unreadable, missing or not finite.
    checksums
        Whether the store's chunks carry checksums (stores made before 0.x have none).
    repaired
        True when :meth:`EmbeddingStore.repair` made the damaged tiles PENDING again.
    """

    path: Path
    counts: dict[str, int]
    bad_chunks: list[BadChunk] = field(default_factory=list)
    lost: np.ndarray | None = None
    nonfinite: int = 0
    invalid_status: int = 0
    misplaced: int = 0
    checksums: bool = True
    placed: bool = True
    repaired: bool = False

    @property
    def lost_count(self) -> int:
        """Number of tiles whose data is lost."""
        return 0 if self.lost is None else int(np.count_nonzero(self.lost))

    @property
    def healthy(self) -> bool:
        """True when nothing is damaged."""
        return not self.bad_chunks and self.lost_count == 0

    def problems(self) -> str:
        """What is damaged, shortly: ``embeddings: 1 chunk (checksum mismatch); ...``."""
        parts = []
        for name in ARRAYS:
            chunks = [c for c in self.bad_chunks if c.array == name]
            if chunks:
                reasons = sorted({c.reason for c in chunks})
                parts.append(f"{name}: {len(chunks)} chunk(s) ({', '.join(reasons)})")
        if self.nonfinite:
            parts.append(f"{self.nonfinite} done tile(s) without a finite embedding")
        if self.invalid_status:
            parts.append(f"{self.invalid_status} tile(s) with an invalid status")
        if self.misplaced:
            parts.append(
                f"{self.misplaced} done tile(s) whose embedding is not the one written there "
                "(a chunk moved, swapped or restored from elsewhere)"
            )
        return "; ".join(parts)

    def tiles_text(self) -> str:
        """``5 tile(s) (row 0 col 1, ...)`` or ``no tiles``."""
        if not self.lost_count:
            return "no tiles"
        return f"{self.lost_count} tile(s) ({tile_examples(self.lost)})"

    def line(self) -> str:
        """The one-line verdict."""
        counts = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        if self.healthy:
            if not self.checksums:
                sums = "no chunk checksums (older store)"
            elif not self.placed:
                sums = "checksummed, no place checks (older store)"
            else:
                sums = "checksummed"
            return f"{self.path}: healthy: {counts}; {sums}"
        if self.repaired:
            return (
                f"{self.path}: repaired: {self.tiles_text()} set to PENDING, to be embedded "
                f"again [{self.problems()}]"
            )
        return f"{self.path}: damaged: {self.tiles_text()} lost [{self.problems()}]"

    def warning(self) -> str:
        """One line for readers: what is damaged and that it is treated as not embedded."""
        return (
            f"{self.path}: damaged store: {self.tiles_text()} treated as not embedded "
            f"[{self.problems()}]; repair with: napari-conch verify --repair {self.path}"
        )
