"""The on-disk embedding store: one zarr 3 group per (slide, model, grid).

Layout (see ``docs/store.md``)::

    <slide-name>-<hash>.zarr/
        zarr.json            group attributes: ``signature`` and the run information
        embeddings/          float16 [rows, cols, D], chunks (16, 16, D), NaN where never written
        status/              uint8 [rows, cols], :class:`TileStatus`
        tissue/              bool [rows, cols], the tissue mask of the last run
        tissue_fraction/     float16 [rows, cols], the tissue fraction of each tile
        tile_check/          uint32 [rows, cols], the place check of each DONE tile's embedding

Crash safety rests on two rules. Each chunk file is written whole to a temporary file and renamed
into place (zarr's ``LocalStore`` does this since zarr 3.1.3, checked by :func:`check_zarr`), so a
reader sees either the old or the new chunk, never half of one. A tile's status becomes DONE only
after the embeddings chunk holding it is written. A run killed at any moment therefore leaves only
DONE tiles with their final embeddings, and tiles still PENDING that the next run computes again.
A new store is built in a temporary sibling folder and renamed into place when complete.

Opening a store for writing takes its writer lock (:mod:`.store_lock`): one writing process per
store, readers unaffected. Every chunk of a new store carries a crc32c checksum, and reading never
turns a damaged chunk into numbers (:mod:`.store_integrity`): :meth:`EmbeddingStore.verify`
reports the damage, :meth:`EmbeddingStore.repair` makes the affected tiles PENDING again. Each
DONE tile's embedding is bound to its place by a check (``tile_check``), so a chunk file moved,
swapped or restored from another store is damage too; stores made before place checks are read
and written as they are (:attr:`EmbeddingStore.placed`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch.engine.store import lock as store_lock
from napari_conch.engine.store.integrity import (
    ARRAYS,
    REQUIRED,
    UNWRITTEN,
    BadChunk,
    StoreDamageWarning,
    StoreReport,
    check_key,
    damage_reason,
    iter_bands,
    misplaced,
    read_array,
    tile_checks,
    tiles_of,
)
from napari_conch.engine.store.lock import StoreBusyError
from napari_conch.errors import StoreError

__all__ = [
    "EmbeddingStore",
    "StoreBusyError",
    "StoreDamageWarning",
    "StoreReport",
    "TileStatus",
    "default_cache_root",
    "make_info",
    "make_signature",
    "signature_matches",
    "store_path_for",
]

if TYPE_CHECKING:
    from napari_conch.slide import TileGrid

#: Version of the layout below; part of the signature so an old layout is never misread.
STORE_FORMAT = 1
#: Tiles per side of an embeddings chunk.
BLOCK = 16
#: Tiles per side of a status / tissue chunk.
MAP_BLOCK = 256
#: The first zarr release whose LocalStore writes chunk files atomically (temp file + rename).
ZARR_ATOMIC_WRITES = (3, 1, 3)
_TMP_PREFIX = ".creating-"
#: The compute precision a signature without a ``precision`` entry stands for.
DEFAULT_PRECISION = "fp32"


class TileStatus(IntEnum):
    """What is known about a tile of the grid."""

    PENDING = 0
    DONE = 1
    FAILED = 2
    BACKGROUND = 3


def check_zarr() -> None:
    """Raise :class:`StoreError` when the installed zarr cannot write chunks atomically."""
    import zarr

    parts = re.findall(r"\d+", zarr.__version__)[:3]
    version = tuple(int(p) for p in parts)
    if version < ZARR_ATOMIC_WRITES:
        need = ".".join(map(str, ZARR_ATOMIC_WRITES))
        raise StoreError(
            f"zarr {zarr.__version__} does not write chunks atomically; "
            f"embedding stores need zarr>={need} (pip install -U zarr)"
        )


def default_cache_root() -> Path:
    """Return the folder holding stores when the user names none.

    ``$NAPARI_CONCH_CACHE`` when set, else the platform's user cache folder
    (``platformdirs.user_cache_dir("napari-conch")``): ``~/.cache/napari-conch`` (or
    ``$XDG_CACHE_HOME/napari-conch``) on Linux, ``~/Library/Caches/napari-conch`` on macOS,
    ``%LOCALAPPDATA%\\napari-conch\\Cache`` on Windows.
    """
    from napari_conch.cache_dir import user_cache_root

    return user_cache_root()


def _normalise(value: Any) -> Any:
    """Return ``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def make_signature(slide: Any, model: Any, grid: TileGrid) -> dict[str, Any]:
    """Return what a store is made from: two stores with equal signatures hold the same numbers.

    The compute precision (``model.precision``) is recorded when it is not ``fp32``; a float32
    signature has no ``precision`` entry, so stores made before it was recorded (all float32)
    keep their signature and their folder name. Likewise the slide's MPP is recorded
    (``slide_mpp``) only when the user stated it (``mpp_source == "caller"``): a store made with
    another stated MPP, or with the file's own, is not reused.
    """
    signature = {
        "format": STORE_FORMAT,
        "slide_fingerprint": slide.fingerprint,
        "model_fingerprint": model.fingerprint,
        "grid": grid.to_dict(),
        "preprocessing": model.preprocess_info,
        "embed_dim": int(model.embed_dim),
    }
    precision = getattr(model, "precision", None) or DEFAULT_PRECISION
    if precision != DEFAULT_PRECISION:
        signature["precision"] = str(precision)
    if getattr(slide, "mpp_source", None) == "caller":  # stated by the user (--slide-mpp)
        signature["slide_mpp"] = float(slide.mpp)
    return _normalise(signature)


def make_info(slide: Any, model: Any) -> dict[str, Any]:
    """Return the descriptive attributes of a new store (not compared when reopening)."""
    from napari_conch import __version__

    return _normalise(
        {
            "version": __version__,
            "slide_path": str(Path(slide.path).resolve()),
            "slide_name": slide.name,
            "slide_mpp": slide.mpp,
            "model_source": str(model.source),
            "model_config": model.config.to_dict(),
            "model_tokenizer": model.tokenizer_file,
            "logit_scale": float(model.logit_scale),
        }
    )


def signature_hash(signature: dict[str, Any]) -> str:
    """Return a short stable hash of a signature (used in store folder names)."""
    text = json.dumps(_normalise(signature), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def store_path_for(
    slide: Any, model: Any, grid: TileGrid, root: str | os.PathLike | None = None
) -> Path:
    """Return the store folder for (slide, model, grid) under ``root`` or the default cache.

    The compute precision is left out of the folder name: a store made in bf16 on a GPU is found
    by a float32 session on a CPU (to read it; continuing it in another precision is refused by
    :meth:`EmbeddingStore.open_or_create`).
    """
    base = Path(root).expanduser() if root is not None else default_cache_root()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(slide.name)).strip("._") or "slide"
    signature = make_signature(slide, model, grid)
    signature.pop("precision", None)
    return base / f"{name[:80]}-{signature_hash(signature)}.zarr"


def signature_matches(
    found: dict[str, Any], wanted: dict[str, Any], *, writing: bool = True
) -> bool:
    """True when a store of signature ``found`` serves a request of signature ``wanted``.

    Writing needs the exact signature, compute precision included. Reading (queries, maps) only
    needs the same slide, model, grid and preprocessing: embeddings made in bf16 are read by a
    float32 model as they are.
    """
    found, wanted = _normalise(found), _normalise(wanted)
    if not writing:
        found.pop("precision", None)
        wanted.pop("precision", None)
    return found == wanted


def describe_mismatch(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    """Return a short text naming the signature entries that differ."""
    found, wanted = _normalise(found), _normalise(wanted)
    if "precision" in found or "precision" in wanted:  # absent means fp32: say so
        found.setdefault("precision", DEFAULT_PRECISION)
        wanted.setdefault("precision", DEFAULT_PRECISION)
    parts = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), wanted.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            parts.append(
                f"{key} ({', '.join(f'{k}: {a.get(k)!r} != {b.get(k)!r}' for k in sub[:4])})"
            )
        else:
            parts.append(f"{key} ({_short(a)} != {_short(b)})")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class EmbeddingStore:
    """A zarr group of tile embeddings over one grid of one slide, made by one model.

    Use :meth:`open` to read an existing store and :meth:`open_or_create` to get one for writing.
    A store opened for writing holds the store's writer lock until :meth:`close` (or the end of
    a ``with`` block, or the object being garbage collected, or the process ending).
    """

    def __init__(self, path: Path, group: Any, *, lock_key: str | None = None) -> None:
        self.path = Path(path)
        self._group = group
        self._lock_key = lock_key
        self._release = weakref.finalize(self, store_lock.release, lock_key) if lock_key else None
        self._warned: set[str] = set()
        self._validate()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls, path: str | os.PathLike, *, writable: bool = False, wait: float | None = None
    ) -> EmbeddingStore:
        """Open an existing store; raise :class:`StoreError` when it is missing or damaged.

        Parameters
        ----------
        path
            The store folder.
        writable
            Take the store's writer lock and allow writing. Reading takes no lock.
        wait
            With ``writable``: seconds to wait while another process holds the lock
            (``None``: fail at once, naming the holder; ``float('inf')``: no limit).
        """
        import zarr
        from zarr.storage import LocalStore

        path = Path(path).expanduser()
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not an embedding store (no zarr.json)")
        check_metadata(path)
        if writable:
            check_zarr()
        key = store_lock.acquire(path, wait) if writable else None
        try:
            group = zarr.open_group(
                LocalStore(path, read_only=not writable), mode="r+" if writable else "r"
            )
            return cls(path, group, lock_key=key)
        except StoreError:
            if key:
                store_lock.release(key)
            raise
        except Exception as exc:  # zarr raises many types for damaged metadata
            if key:
                store_lock.release(key)
            raise StoreError(f"{path}: cannot open the store ({exc})") from exc

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike,
        signature: dict[str, Any],
        *,
        shape: tuple[int, int] | None = None,
        info: dict[str, Any] | None = None,
        wait: float | None = None,
    ) -> EmbeddingStore:
        """Open the store at ``path`` for writing (taking its writer lock), creating it if absent.

        Parameters
        ----------
        path
            The store folder.
        signature
            What the store is made from (:func:`make_signature`). An existing store is reused
            only when its signature is exactly this one; otherwise :class:`StoreError` says what
            differs and nothing is touched.
        shape
            ``(rows, cols)`` of the grid; by default read from ``signature["grid"]``.
        info
            Descriptive attributes of a new store (:func:`make_info`).
        wait
            Seconds to wait while another process writes the store (see :meth:`open`).
        """
        check_zarr()
        path = Path(path).expanduser()
        signature = _normalise(signature)
        if not path.exists():
            if shape is None:
                from napari_conch.slide import TileGrid

                shape = TileGrid.from_dict(signature["grid"]).shape
            _create_atomically(path, signature, tuple(shape), info or {})
        store = cls.open(path, writable=True, wait=wait)
        try:
            if not signature_matches(store.signature, signature, writing=True):
                raise StoreError(
                    f"{path}: store was made from something else: "
                    f"{describe_mismatch(store.signature, signature)}; "
                    "choose another store folder or delete this one"
                )
            store._remove_partial_files()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def writable(self) -> bool:
        """True while the store is open for writing (its writer lock held)."""
        return self._release is not None and self._release.alive

    def close(self) -> None:
        """Give back the writer lock (a no-op for a read-only store); reading still works."""
        if self._release is not None:
            self._release()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _validate(self) -> None:
        attrs = self._group.attrs.asdict()
        missing = [name for name in REQUIRED if not self._has_array(name)]
        if not missing and self.placed and not self._has_array("tile_check"):
            missing = ["tile_check"]
        if "signature" not in attrs or missing:
            raise StoreError(
                f"{self.path}: damaged embedding store (missing {sorted(missing) or 'signature'})"
            )
        rows, cols, dim = self._group["embeddings"].shape
        if self._group["status"].shape != (rows, cols):
            raise StoreError(f"{self.path}: damaged embedding store (status shape differs)")
        if dim != attrs["signature"].get("embed_dim"):
            raise StoreError(f"{self.path}: damaged embedding store (embed_dim differs)")

    def _has_array(self, name: str) -> bool:
        # looked up by name: listing the group's members would trip over the lock file and
        # other non-zarr files of the folder (zarr warns about each of them)
        try:
            import zarr

            return isinstance(self._group[name], zarr.Array)
        except KeyError:
            return False

    def _remove_partial_files(self) -> None:
        """Delete temporary files a killed writer left in the zarr arrays (never read by zarr).

        Only zarr's own files are touched: anything else in the store folder (the lock file,
        ``annotations/``) is left alone.
        """
        leftovers = list(self.path.glob("zarr.*.partial"))
        for name in self._arrays():
            leftovers.extend((self.path / name).rglob("*.partial"))
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading
    @property
    def attrs(self) -> dict[str, Any]:
        """All attributes: ``signature`` and the information (version, slide path, ...)."""
        return self._group.attrs.asdict()

    @property
    def signature(self) -> dict[str, Any]:
        """What the store is made from (see :func:`make_signature`)."""
        return self.attrs["signature"]

    @property
    def precision(self) -> str:
        """The compute precision the embeddings were made in (``fp32`` when not recorded)."""
        return str(self.signature.get("precision", DEFAULT_PRECISION))

    @property
    def placed(self) -> bool:
        """True when the store binds each embedding to its place (stores made since 0.x).

        Such a store has a ``tile_check`` array (a check of each DONE tile's embedding mixed
        with its row, column and the store's signature: see
        :func:`~napari_conch.engine.store.integrity.tile_checks`), and its status chunks are
        all written when it is made (fill value :data:`UNWRITTEN`), so that a missing status
        chunk is damage rather than PENDING tiles.
        """
        return int(self._group["status"].fill_value) == UNWRITTEN

    @property
    def _key(self) -> np.uint64:
        return check_key(signature_hash(self.signature))

    def _arrays(self) -> tuple[str, ...]:
        """The arrays this store has (``tile_check`` only where :attr:`placed`)."""
        return ARRAYS if self.placed else REQUIRED

    @property
    def checksums(self) -> bool:
        """True when every array's chunks carry a crc32c checksum (stores made since 0.x)."""
        for name in self._arrays():
            codecs = self._group[name].metadata.to_dict().get("codecs", ())
            if not any(isinstance(c, dict) and c.get("name") == "crc32c" for c in codecs):
                return False
        return True

    @property
    def grid(self) -> TileGrid:
        """The tile grid the store covers."""
        from napari_conch.slide import TileGrid

        return TileGrid.from_dict(self.signature["grid"])

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the grid."""
        return tuple(self._group["status"].shape)

    @property
    def embed_dim(self) -> int:
        """Size of each embedding."""
        return int(self.signature["embed_dim"])

    @property
    def logit_scale(self) -> float | None:
        """The model's logit scale (``exp`` of it is the softmax temperature)."""
        return self.attrs.get("logit_scale")

    def _scan_status(self) -> tuple[np.ndarray, StoreReport]:
        """The status with unreadable or invalid tiles as PENDING, and what was wrong."""
        array = self._group["status"]
        raw, bad = read_array(array, "status")
        status = np.asarray(raw, dtype=np.uint8)
        if self.placed:  # every status chunk was written: one that is not there was deleted
            bad.extend(_missing_chunks(status, bad, array))
        invalid = (status > max(TileStatus)) & ~tiles_of(bad, array.chunks, array.shape)
        lost = tiles_of(bad, array.chunks, array.shape) | invalid
        status = np.where(lost, np.uint8(TileStatus.PENDING), status)
        report = StoreReport(
            self.path, {}, bad, lost, invalid_status=int(np.count_nonzero(invalid))
        )
        return status, report

    def _warn(self, report: StoreReport) -> None:
        """Say once per store object and damage what is damaged (a StoreDamageWarning)."""
        if report.healthy:
            return
        text = report.warning()
        if text not in self._warned:
            self._warned.add(text)
            warnings.warn(text, StoreDamageWarning, stacklevel=3)

    def status(self) -> np.ndarray:
        """uint8 ``[rows, cols]`` of :class:`TileStatus` values.

        Tiles whose status chunk is damaged (or holds an impossible value) read as PENDING, with
        a :class:`StoreDamageWarning`.
        """
        status, report = self._scan_status()
        self._warn(report)
        return status

    def tissue(self) -> np.ndarray:
        """bool ``[rows, cols]``: the tissue mask of the last run (damaged chunks: False)."""
        values, bad = read_array(self._group["tissue"], "tissue")
        self._warn(StoreReport(self.path, {}, bad))
        return np.asarray(values, dtype=bool)

    def tissue_fraction(self) -> np.ndarray:
        """float32 ``[rows, cols]``: the tissue fraction of each tile (damaged chunks: 0)."""
        values, bad = read_array(self._group["tissue_fraction"], "tissue_fraction")
        self._warn(StoreReport(self.path, {}, bad))
        return np.asarray(values, dtype=np.float32)

    def embeddings(self) -> np.ndarray:
        """float32 ``[rows, cols, D]``; NaN where the tile is not DONE.

        DONE tiles whose embeddings chunk is damaged or missing, or whose embedding is not
        finite, are NaN too (never numbers read from a damaged chunk), with a
        :class:`StoreDamageWarning` naming them.
        """
        status, report = self._scan_status()
        checks = self._read_checks(report)
        array = self._group["embeddings"]
        raw, bad = read_array(array, "embeddings")
        out = np.asarray(raw, dtype=np.float32)
        done = status == TileStatus.DONE
        unreadable = tiles_of(bad, array.chunks, array.shape) & done
        nonfinite = done & ~unreadable & ~np.isfinite(out).all(axis=-1)
        wrong = self._wrong_place(raw, done & ~unreadable & ~nonfinite, checks, report)
        lost = unreadable | nonfinite | wrong
        out[~done | lost] = np.nan
        report.bad_chunks.extend(bad)
        report.lost |= lost
        report.nonfinite = int(np.count_nonzero(nonfinite))
        self._warn(report)
        return out

    def embeddings_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float32 ``[N, D]`` embeddings of the given tiles; NaN where not DONE.

        As in :meth:`embeddings`, tiles whose embedding cannot be read or is not finite are NaN.
        """
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        array = self._group["embeddings"]
        report = StoreReport(self.path, {}, lost=np.zeros(self.shape, dtype=bool))
        try:
            raw = np.asarray(array.vindex[self._points(rows, cols)])
        except MemoryError:
            raise
        except Exception:  # a damaged chunk: read the chunks one by one
            raw, bad = self._gather(rows, cols)
            report.bad_chunks.extend(bad)
        raw = raw.reshape(len(rows), self.embed_dim)
        out = raw.astype(np.float32)
        try:
            status = np.asarray(self._group["status"].vindex[rows, cols])
        except MemoryError:
            raise
        except Exception:
            full, status_report = self._scan_status()
            status = full[rows, cols]
            report.bad_chunks.extend(status_report.bad_chunks)
            report.lost |= status_report.lost
        done = status == TileStatus.DONE
        nonfinite = done & ~np.isfinite(out).all(axis=-1)
        wrong = np.zeros_like(done)
        if self.placed:
            sound = np.flatnonzero(done & ~nonfinite)
            checks = self._checks_at(rows[sound], cols[sound], report)
            wrong[sound] = misplaced(rows[sound], cols[sound], raw[sound], checks, self._key)
            report.misplaced = int(np.count_nonzero(wrong))
        lost = nonfinite | wrong
        report.lost[rows[lost], cols[lost]] = True
        report.nonfinite = int(np.count_nonzero(nonfinite))
        out[~done | lost] = np.nan
        self._warn(report)
        return out

    def _gather(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, list[BadChunk]]:
        """Embeddings (float16) of tiles read chunk by chunk; tiles of damaged chunks are NaN."""
        array = self._group["embeddings"]
        out = np.full((len(rows), self.embed_dim), np.nan, dtype=np.float16)
        bad = []
        br, bc = array.chunks[0], array.chunks[1]
        keys = (rows // br) * (self.shape[1] // bc + 1) + cols // bc
        for key in np.unique(keys):
            pick = np.flatnonzero(keys == key)
            coords = (int(rows[pick[0]] // br), int(cols[pick[0]] // bc), 0)
            chunk = BadChunk("embeddings", coords, "")
            region = chunk.region(array.chunks, array.shape)
            try:
                block = np.asarray(array[region])
            except MemoryError:
                raise
            except Exception as exc:
                bad.append(BadChunk("embeddings", chunk.coords, damage_reason(exc)))
                continue
            out[pick] = block[rows[pick] - region[0].start, cols[pick] - region[1].start]
        return out, bad

    def _points(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """Coordinate selection of whole embeddings of tiles ``(rows, cols)``, shape [N, D]."""
        return rows[:, None], cols[:, None], np.arange(self.embed_dim)[None, :]

    def counts(self) -> dict[str, int]:
        """Number of tiles in each status, by lower-case name."""
        values = np.bincount(self.status().ravel(), minlength=len(TileStatus))
        return {s.name.lower(): int(values[s]) for s in TileStatus}

    def iter_embedding_blocks(
        self,
    ) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """Yield ``(rows, embeddings [r, cols, D] float32, done [r, cols])`` band by band.

        A band is one row of embeddings chunks (16 grid rows), so memory stays bounded on big
        stores. Tiles that are not DONE, or whose embedding is damaged, are NaN and not ``done``.
        """
        status, report = self._scan_status()
        checks = self._read_checks(report)
        array = self._group["embeddings"]
        for rows, values, bad in iter_bands(array, "embeddings"):
            out = np.asarray(values, dtype=np.float32)
            done = status[rows] == TileStatus.DONE
            unreadable = tiles_of(bad, array.chunks, array.shape)[rows]
            lost = done & (unreadable | ~np.isfinite(out).all(axis=-1))
            lost |= self._wrong_place(values, done & ~lost, checks, report, rows)
            done &= ~lost
            out[~done] = np.nan
            report.bad_chunks.extend(bad)
            report.lost[rows] |= lost
            yield rows, out, done
        self._warn(report)

    # ------------------------------------------------------------------ integrity
    def _read_checks(self, report: StoreReport) -> np.ndarray | None:
        """The place checks ``[rows, cols]`` (None in older stores); damaged chunks read 0."""
        if not self.placed:
            return None
        values, bad = read_array(self._group["tile_check"], "tile_check")
        report.bad_chunks.extend(bad)
        return np.asarray(values, dtype=np.uint32)

    def _checks_at(self, rows: np.ndarray, cols: np.ndarray, report: StoreReport) -> np.ndarray:
        """The place checks of tiles ``(rows, cols)``; those of a damaged chunk read 0."""
        try:
            return np.asarray(self._group["tile_check"].vindex[rows, cols], dtype=np.uint32)
        except MemoryError:
            raise
        except Exception:  # a damaged chunk: read them all, band by band
            return self._read_checks(report)[rows, cols]

    def _wrong_place(
        self,
        raw: np.ndarray,
        candidates: np.ndarray,
        checks: np.ndarray | None,
        report: StoreReport,
        rows: slice = slice(None),
    ) -> np.ndarray:
        """bool like ``candidates``: tiles (of grid rows ``rows``) whose float16 embedding in
        ``raw`` does not match the check written for its place (or whose check is lost)."""
        wrong = np.zeros_like(candidates)
        if checks is None:
            return wrong
        r, c = np.nonzero(candidates)
        start = rows.start or 0
        wrong[r, c] = misplaced(r + start, c, raw[r, c], checks[rows][r, c], self._key)
        lost_checks = {b for b in report.bad_chunks if b.array == "tile_check"}
        unreadable = tiles_of(list(lost_checks), *self._check_layout())[rows]
        report.misplaced += int(np.count_nonzero(wrong & ~unreadable))
        return wrong

    def _check_layout(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        array = self._group["tile_check"]
        return array.chunks, array.shape

    def verify(self) -> StoreReport:
        """Read every chunk of the store and report what is damaged.

        Checked: each chunk decodes (and its checksum matches, where the store has them), every
        status value is a :class:`TileStatus`, and every DONE tile has a finite embedding (a
        missing embeddings chunk reads as NaN). Reads band by band: memory stays bounded.
        """
        status, report = self._scan_status()
        checks = self._read_checks(report)
        array = self._group["embeddings"]
        nonfinite = 0
        for rows, values, bad in iter_bands(array, "embeddings"):
            done = status[rows] == TileStatus.DONE
            band_shape = (values.shape[0], *array.shape[1:])
            unreadable = np.zeros_like(done)
            for chunk in bad:
                local = BadChunk(chunk.array, (0, *chunk.coords[1:]), chunk.reason)
                unreadable[local.region(array.chunks, band_shape)[:2]] = True
            unreadable &= done
            missing = done & ~unreadable & ~np.isfinite(values).all(axis=-1)
            wrong = self._wrong_place(values, done & ~unreadable & ~missing, checks, report, rows)
            report.lost[rows] |= unreadable | missing | wrong
            report.bad_chunks.extend(bad)
            nonfinite += int(np.count_nonzero(missing))
        report.nonfinite = nonfinite
        for name in ("tissue", "tissue_fraction"):
            for _, _, bad in iter_bands(self._group[name], name):
                report.bad_chunks.extend(bad)
        final = np.where(report.lost, np.uint8(TileStatus.PENDING), status)
        values = np.bincount(final.ravel(), minlength=len(TileStatus))
        report.counts = {s.name.lower(): int(values[s]) for s in TileStatus}
        report.checksums = self.checksums
        report.placed = self.placed
        return report

    def repair(self, *, warn: bool = True) -> StoreReport:
        """Verify the store and make damaged tiles PENDING so that the next run embeds them.

        Damaged chunks are removed (they then read as never written: NaN embeddings, PENDING
        status, no tissue); DONE tiles whose embedding was lost become PENDING; the tissue mask
        is recomputed by the next run. Needs the store open for writing. Returns the report
        (``repaired`` True when something was done) and, when ``warn``, says it in one line as
        a :class:`StoreDamageWarning`. Other files of the store folder are left alone.
        """
        self._require_writable("repair")
        report = self.verify()
        if report.healthy:
            return report
        with self._io("repair the store"):
            for chunk in report.bad_chunks:  # status first: the tiles it held become PENDING
                if chunk.array == "status":
                    self._delete_chunk(chunk)
            lost_rows, lost_cols = np.nonzero(report.lost)
            self.set_status(lost_rows, lost_cols, TileStatus.PENDING)
            for chunk in report.bad_chunks:
                if chunk.array != "status":
                    self._delete_chunk(chunk)
        report.repaired = True
        if warn:
            warnings.warn(report.line(), StoreDamageWarning, stacklevel=2)
        return report

    def _delete_chunk(self, chunk: BadChunk) -> None:
        array = self._group[chunk.array]
        key = array.metadata.encode_chunk_key(chunk.coords)
        (self.path / chunk.array / key).unlink(missing_ok=True)

    # ------------------------------------------------------------------ writing
    def _require_writable(self, action: str) -> None:
        if not self.writable:
            raise StoreError(
                f"{self.path}: cannot {action}: the store is not open for writing "
                "(EmbeddingStore.open(path, writable=True))"
            )

    @contextmanager
    def _io(self, action: str) -> Iterator[None]:
        """Turn an OSError of the file system (full disk, read-only) into one StoreError."""
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise StoreError(f"{self.path}: cannot {action} ({reason})") from exc

    def write_embeddings(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        """Write embeddings ``[N, D]`` of tiles ``(rows, cols)``, then mark them DONE.

        The status is written only after every embeddings chunk is on disk, so a kill between
        the two leaves the tiles PENDING (computed again), never DONE with a wrong vector.
        """
        self._require_writable("write embeddings")
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if len(rows) == 0:
            return
        values = np.asarray(values, dtype=np.float16).reshape(len(rows), self.embed_dim)
        with self._io("write embeddings"):
            self._group["embeddings"].vindex[self._points(rows, cols)] = values
            if self.placed:  # the checks of the place, before the tiles are DONE
                checks = tile_checks(rows, cols, values, self._key)
                self._group["tile_check"].vindex[rows, cols] = checks
        self.set_status(rows, cols, TileStatus.DONE)

    def set_status(self, rows: np.ndarray, cols: np.ndarray, status: TileStatus) -> None:
        """Set the status of tiles ``(rows, cols)``."""
        self._require_writable("write tile status")
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if len(rows):
            with self._io("write tile status"):
                self._group["status"].vindex[rows, cols] = np.full(len(rows), status, np.uint8)

    def set_tissue(self, mask: np.ndarray, fraction: np.ndarray) -> np.ndarray:
        """Record the tissue mask of a run and reconcile statuses with it; return the status.

        Tissue tiles that were BACKGROUND become PENDING; non-tissue tiles that are PENDING or
        FAILED become BACKGROUND; DONE tiles stay DONE (their embedding is valid whatever the
        tissue threshold).
        """
        self._require_writable("write the tissue mask")
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape:
            raise StoreError(
                f"{self.path}: tissue mask {mask.shape} does not fit grid {self.shape}"
            )
        with self._io("write the tissue mask"):
            self._group["tissue"][...] = mask
            self._group["tissue_fraction"][...] = np.asarray(fraction, dtype=np.float16)
        status = self.status()
        new = status.copy()
        new[mask & (status == TileStatus.BACKGROUND)] = TileStatus.PENDING
        new[~mask & (status != TileStatus.DONE)] = TileStatus.BACKGROUND
        if not np.array_equal(new, status):
            with self._io("write tile status"):
                self._group["status"][...] = new
        return new

    def update_info(self, **values: Any) -> None:
        """Merge descriptive attributes (counts, times, run parameters) into the group's."""
        self._require_writable("update the store's attributes")
        values = _normalise(values)
        values.pop("signature", None)
        with self._io("update the store's attributes"):
            self._group.attrs.update(values)

    def __repr__(self) -> str:
        rows, cols = self.shape
        mode = ", writable" if self.writable else ""
        return f"EmbeddingStore({str(self.path)!r}, grid={rows}x{cols}, D={self.embed_dim}{mode})"


def _missing_chunks(status: np.ndarray, bad: list[BadChunk], array: Any) -> list[BadChunk]:
    """Status chunks that read as :data:`UNWRITTEN` everywhere: their file is gone."""
    rows, cols = np.nonzero(status == UNWRITTEN)
    if len(rows) == 0:
        return []
    known = {chunk.coords for chunk in bad}
    found = []
    for coords in sorted(set(zip(rows // array.chunks[0], cols // array.chunks[1], strict=True))):
        coords = (int(coords[0]), int(coords[1]))
        chunk = BadChunk("status", coords, "missing")
        region = chunk.region(array.chunks, array.shape)
        if coords not in known and (status[region] == UNWRITTEN).all():
            found.append(chunk)
    return found


def check_metadata(path: Path) -> None:
    """Raise :class:`StoreError` when a ``zarr.json`` of the store is unreadable or not JSON."""
    for name in ("", *ARRAYS):
        meta = path / name / "zarr.json"
        if name and not meta.exists():
            continue  # a missing array is reported by EmbeddingStore._validate
        try:
            json.loads(meta.read_bytes())
        except (OSError, ValueError) as exc:
            what = "not valid JSON" if isinstance(exc, ValueError) else (exc.strerror or str(exc))
            raise StoreError(
                f"{path}: damaged store: {meta.relative_to(path)} cannot be read ({what}); "
                "it cannot be repaired: delete the store and embed the slide again"
            ) from exc


def _create_atomically(
    path: Path, signature: dict[str, Any], shape: tuple[int, int], info: dict[str, Any]
) -> None:
    """Build a new store in a temporary sibling folder, then rename it to ``path``."""
    import zarr
    from zarr.storage import LocalStore

    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.parent / f"{_TMP_PREFIX}{path.name}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        group = zarr.open_group(LocalStore(tmp), mode="w")
        rows, cols = shape
        dim = int(signature["embed_dim"])
        block = (min(BLOCK, rows), min(BLOCK, cols), dim)
        mblock = (min(MAP_BLOCK, rows), min(MAP_BLOCK, cols))
        arrays = (
            ("embeddings", (rows, cols, dim), block, "float16", np.nan),
            ("status", shape, mblock, "uint8", UNWRITTEN),
            ("tissue", shape, mblock, "bool", False),
            ("tissue_fraction", shape, mblock, "float16", 0.0),
            ("tile_check", shape, mblock, "uint32", 0),
        )
        for name, array_shape, chunks, dtype, fill in arrays:
            group.create_array(
                name,
                shape=array_shape,
                chunks=chunks,
                dtype=dtype,
                fill_value=fill,
                compressors=_compressors(),
            )
        # every status chunk on disk from the start: one missing later was deleted
        group["status"][...] = np.zeros(shape, dtype=np.uint8)
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        group.attrs.update(
            _normalise({**info, "created": now, "updated": now, "signature": signature})
        )
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "zarr.json").is_file():  # lost a race only if someone else made it
                raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreError(f"{path}: cannot create the store ({reason})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _compressors() -> tuple[Any, ...]:
    """zstd, then a crc32c checksum of the compressed bytes (verified on every read)."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(level=0), Crc32cCodec())


def _remove_stale_temporaries(path: Path) -> None:
    """Delete half-built stores left by killed processes (their pid is gone)."""
    for tmp in path.parent.glob(f"{_TMP_PREFIX}{path.name}.*"):
        try:
            pid = int(tmp.name[len(_TMP_PREFIX) + len(path.name) + 1 :].split(".")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C there: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
