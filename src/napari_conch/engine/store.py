"""The on-disk embedding store: one zarr 3 group per (slide, model, grid).

Layout (see ``docs/store.md``)::

    <slide-name>-<hash>.zarr/
        zarr.json            group attributes: ``signature`` and the run information
        embeddings/          float16 [rows, cols, D], chunks (16, 16, D), NaN where never written
        status/              uint8 [rows, cols], :class:`TileStatus`
        tissue/              bool [rows, cols], the tissue mask of the last run
        tissue_fraction/     float16 [rows, cols], the tissue fraction of each tile

Crash safety rests on two rules. Each chunk file is written whole to a temporary file and renamed
into place (zarr's ``LocalStore`` does this since zarr 3.1.3, checked by :func:`check_zarr`), so a
reader sees either the old or the new chunk, never half of one. A tile's status becomes DONE only
after the embeddings chunk holding it is written. A run killed at any moment therefore leaves only
DONE tiles with their final embeddings, and tiles still PENDING that the next run computes again.
A new store is built in a temporary sibling folder and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch.errors import StoreError

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

    ``$NAPARI_CONCH_CACHE`` when set, else the platform's cache folder: ``~/.cache/napari-conch``
    (or ``$XDG_CACHE_HOME/napari-conch``) on Linux, ``~/Library/Caches/napari-conch`` on macOS,
    ``%LOCALAPPDATA%\\napari-conch\\Cache`` on Windows.
    """
    env = os.environ.get("NAPARI_CONCH_CACHE")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "napari-conch" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "napari-conch"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "napari-conch"


def _normalise(value: Any) -> Any:
    """Return ``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def make_signature(slide: Any, model: Any, grid: TileGrid) -> dict[str, Any]:
    """Return what a store is made from: two stores with equal signatures hold the same numbers."""
    return _normalise(
        {
            "format": STORE_FORMAT,
            "slide_fingerprint": slide.fingerprint,
            "model_fingerprint": model.fingerprint,
            "grid": grid.to_dict(),
            "preprocessing": model.preprocess_info,
            "embed_dim": int(model.embed_dim),
        }
    )


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
    """Return the store folder for (slide, model, grid) under ``root`` or the default cache."""
    base = Path(root).expanduser() if root is not None else default_cache_root()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(slide.name)).strip("._") or "slide"
    return base / f"{name[:80]}-{signature_hash(make_signature(slide, model, grid))}.zarr"


def describe_mismatch(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    """Return a short text naming the signature entries that differ."""
    found, wanted = _normalise(found), _normalise(wanted)
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
    """

    def __init__(self, path: Path, group: Any) -> None:
        self.path = Path(path)
        self._group = group
        self._validate()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, *, writable: bool = False) -> EmbeddingStore:
        """Open an existing store; raise :class:`StoreError` when it is missing or damaged."""
        import zarr
        from zarr.storage import LocalStore

        path = Path(path).expanduser()
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not an embedding store (no zarr.json)")
        try:
            group = zarr.open_group(
                LocalStore(path, read_only=not writable), mode="r+" if writable else "r"
            )
        except Exception as exc:  # zarr raises many types for damaged metadata
            raise StoreError(f"{path}: cannot open the store ({exc})") from exc
        return cls(path, group)

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike,
        signature: dict[str, Any],
        *,
        shape: tuple[int, int] | None = None,
        info: dict[str, Any] | None = None,
    ) -> EmbeddingStore:
        """Open the store at ``path`` for writing, creating it when absent.

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
        """
        check_zarr()
        path = Path(path).expanduser()
        signature = _normalise(signature)
        if not path.exists():
            if shape is None:
                from napari_conch.slide import TileGrid

                shape = TileGrid.from_dict(signature["grid"]).shape
            _create_atomically(path, signature, tuple(shape), info or {})
        store = cls.open(path, writable=True)
        if store.signature != signature:
            raise StoreError(
                f"{path}: store was made from something else: "
                f"{describe_mismatch(store.signature, signature)}; "
                "choose another store folder or delete this one"
            )
        store._remove_partial_files()
        return store

    def _validate(self) -> None:
        attrs = self._group.attrs.asdict()
        names = set(self._group.array_keys())
        missing = {"embeddings", "status", "tissue", "tissue_fraction"} - names
        if "signature" not in attrs or missing:
            raise StoreError(
                f"{self.path}: damaged embedding store (missing {sorted(missing) or 'signature'})"
            )
        rows, cols, dim = self._group["embeddings"].shape
        if self._group["status"].shape != (rows, cols):
            raise StoreError(f"{self.path}: damaged embedding store (status shape differs)")
        if dim != attrs["signature"].get("embed_dim"):
            raise StoreError(f"{self.path}: damaged embedding store (embed_dim differs)")

    def _remove_partial_files(self) -> None:
        """Delete temporary chunk files a killed writer left behind (never read by zarr)."""
        for leftover in self.path.rglob("*.partial"):
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

    def status(self) -> np.ndarray:
        """uint8 ``[rows, cols]`` of :class:`TileStatus` values."""
        return np.asarray(self._group["status"][...], dtype=np.uint8)

    def tissue(self) -> np.ndarray:
        """bool ``[rows, cols]``: the tissue mask of the last run."""
        return np.asarray(self._group["tissue"][...], dtype=bool)

    def tissue_fraction(self) -> np.ndarray:
        """float32 ``[rows, cols]``: the tissue fraction of each tile."""
        return np.asarray(self._group["tissue_fraction"][...], dtype=np.float32)

    def embeddings(self) -> np.ndarray:
        """float32 ``[rows, cols, D]``; NaN where the tile is not DONE."""
        out = np.asarray(self._group["embeddings"][...], dtype=np.float32)
        out[self.status() != TileStatus.DONE] = np.nan
        return out

    def embeddings_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float32 ``[N, D]`` embeddings of the given tiles; NaN where not DONE."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        out = np.asarray(self._group["embeddings"].vindex[self._points(rows, cols)], np.float32)
        done = np.asarray(self._group["status"].vindex[rows, cols]) == TileStatus.DONE
        out[~done] = np.nan
        return out.reshape(len(rows), self.embed_dim)

    def _points(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
        """Coordinate selection of whole embeddings of tiles ``(rows, cols)``, shape [N, D]."""
        return rows[:, None], cols[:, None], np.arange(self.embed_dim)[None, :]

    def counts(self) -> dict[str, int]:
        """Number of tiles in each status, by lower-case name."""
        values = np.bincount(self.status().ravel(), minlength=len(TileStatus))
        return {s.name.lower(): int(values[s]) for s in TileStatus}

    # ------------------------------------------------------------------ writing
    def write_embeddings(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        """Write embeddings ``[N, D]`` of tiles ``(rows, cols)``, then mark them DONE.

        The status is written only after every embeddings chunk is on disk, so a kill between
        the two leaves the tiles PENDING (computed again), never DONE with a wrong vector.
        """
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if len(rows) == 0:
            return
        values = np.asarray(values, dtype=np.float16).reshape(len(rows), self.embed_dim)
        self._group["embeddings"].vindex[self._points(rows, cols)] = values
        self.set_status(rows, cols, TileStatus.DONE)

    def set_status(self, rows: np.ndarray, cols: np.ndarray, status: TileStatus) -> None:
        """Set the status of tiles ``(rows, cols)``."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if len(rows):
            self._group["status"].vindex[rows, cols] = np.full(len(rows), status, np.uint8)

    def set_tissue(self, mask: np.ndarray, fraction: np.ndarray) -> np.ndarray:
        """Record the tissue mask of a run and reconcile statuses with it; return the status.

        Tissue tiles that were BACKGROUND become PENDING; non-tissue tiles that are PENDING or
        FAILED become BACKGROUND; DONE tiles stay DONE (their embedding is valid whatever the
        tissue threshold).
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape:
            raise StoreError(
                f"{self.path}: tissue mask {mask.shape} does not fit grid {self.shape}"
            )
        self._group["tissue"][...] = mask
        self._group["tissue_fraction"][...] = np.asarray(fraction, dtype=np.float16)
        status = self.status()
        new = status.copy()
        new[mask & (status == TileStatus.BACKGROUND)] = TileStatus.PENDING
        new[~mask & (status != TileStatus.DONE)] = TileStatus.BACKGROUND
        if not np.array_equal(new, status):
            self._group["status"][...] = new
        return new

    def update_info(self, **values: Any) -> None:
        """Merge descriptive attributes (counts, times, run parameters) into the group's."""
        values = _normalise(values)
        values.pop("signature", None)
        self._group.attrs.update(values)

    def __repr__(self) -> str:
        rows, cols = self.shape
        return f"EmbeddingStore({str(self.path)!r}, grid={rows}x{cols}, D={self.embed_dim})"


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
        group.create_array(
            "embeddings",
            shape=(rows, cols, dim),
            chunks=block,
            dtype="float16",
            fill_value=np.nan,
        )
        group.create_array("status", shape=shape, chunks=mblock, dtype="uint8", fill_value=0)
        group.create_array("tissue", shape=shape, chunks=mblock, dtype="bool", fill_value=False)
        group.create_array(
            "tissue_fraction", shape=shape, chunks=mblock, dtype="float16", fill_value=0.0
        )
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
        raise StoreError(f"{path}: cannot create the store ({exc})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
