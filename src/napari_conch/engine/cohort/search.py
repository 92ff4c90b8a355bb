"""Search across slides: the best tiles over many embedding stores, in bounded memory.

Stores are read one band of tile rows at a time (one store chunk high, :data:`BAND` rows), each
band's DONE tiles are scored against a unit query vector, and only the best ``k`` tiles seen so
far are kept (:class:`TopK`). Memory is therefore one band plus ``k`` hits, whatever the number
of stores or tiles. Scores are cosines: the stored float16 vectors are re-normalised first.

Stores made by different models cannot be compared (their embedding spaces differ), so
:func:`check_same_model` refuses a mix with one line naming two stores that differ.

:func:`iter_store_tiles` is the one place that reads a store's embeddings, band by band, through
the store's checksum-verified reader.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_conch.engine.store.embedding_store import BLOCK, EmbeddingStore
from napari_conch.errors import InputError, StoreError

#: Tile rows read at a time (the height of an embeddings chunk, so each chunk is read once).
BAND = BLOCK

#: Columns of a hits CSV.
HIT_COLUMNS = ("slide", "store", "row", "col", "x0", "y0", "x1", "y1", "score")


def iter_store_tiles(store: EmbeddingStore) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(rows, cols, vectors)`` of a store's DONE tiles, one band of grid rows at a time.

    Bands are one row of embeddings chunks (:data:`BAND` grid rows), read through the store's
    checked reader
    (:meth:`~napari_conch.engine.store.embedding_store.EmbeddingStore.iter_embedding_blocks`):
    tiles of a damaged chunk are left out (the store warns once), never ranked. ``vectors`` is
    float32 ``[N, D]``, each row L2-normalised (zero vectors are left out too).
    """
    for band, block, done in store.iter_embedding_blocks():
        rows, cols = np.nonzero(done)
        if not len(rows):
            continue
        vectors = block[rows, cols]
        norms = np.linalg.norm(vectors, axis=1)
        good = np.isfinite(norms) & (norms > 0)
        vectors = vectors[good] / norms[good, None]
        yield rows[good] + band.start, cols[good], vectors


class TopK:
    """The ``k`` best ``(score, source, row, col)`` seen so far, in O(k) memory.

    Ties keep the earlier tile (lower source, then row, then column), so results do not depend on
    how the tiles were split into bands.
    """

    def __init__(self, k: int) -> None:
        if int(k) < 1:
            raise InputError(f"k={k}: must be at least 1")
        self.k = int(k)
        self.scores = np.zeros(0, np.float32)
        self.keys = np.zeros((0, 3), np.int64)  # source, row, col

    def add(self, scores: np.ndarray, source: int, rows: np.ndarray, cols: np.ndarray) -> None:
        """Offer a batch of scored tiles from ``source``."""
        scores = np.asarray(scores, dtype=np.float32)
        if len(scores) > self.k:  # only this batch's best k can enter
            keep = np.argpartition(-scores, self.k - 1)[: self.k]
            scores, rows, cols = scores[keep], rows[keep], cols[keep]
        keys = np.stack([np.full(len(scores), source), rows, cols], axis=1).astype(np.int64)
        all_scores = np.concatenate([self.scores, scores])
        all_keys = np.concatenate([self.keys, keys])
        order = np.lexsort((all_keys[:, 2], all_keys[:, 1], all_keys[:, 0], -all_scores))
        order = order[: self.k]
        self.scores, self.keys = all_scores[order], all_keys[order]

    def best(self) -> list[tuple[float, int, int, int]]:
        """``(score, source, row, col)``, best first."""
        pairs = zip(self.scores, self.keys, strict=True)
        return [(float(s), int(a), int(r), int(c)) for s, (a, r, c) in pairs]


@dataclass(frozen=True)
class SearchHit:
    """One tile found by :func:`search_stores`."""

    slide: str
    store: Path
    row: int
    col: int
    box: tuple[float, float, float, float]
    score: float

    def as_row(self, store: str | None = None) -> tuple:
        """The CSV row (see :data:`HIT_COLUMNS`); ``store``: how the CSV names the store."""
        box = tuple(round(v, 1) for v in self.box)
        store = str(self.store) if store is None else store
        return (self.slide, store, self.row, self.col, *box, round(self.score, 6))


def read_store(path: str | os.PathLike) -> EmbeddingStore:
    """Open a store read-only; a path with nothing there is "not found" (named), rather than
    "not an embedding store"."""
    if not Path(path).expanduser().exists():
        raise StoreError(f"{path}: store not found")
    return EmbeddingStore.open(path)


def open_stores(paths: Sequence[str | os.PathLike]) -> list[EmbeddingStore]:
    """Open stores read-only; refuse an empty list and the same store named twice."""
    if not paths:
        raise InputError("give at least one embedding store")
    stores = [read_store(p) for p in paths]
    seen: dict[Path, Path] = {}
    for store in stores:
        key = store.path.resolve()
        if key in seen:
            raise InputError(f"{store.path}: store given more than once")
        seen[key] = store.path
    return stores


def model_fingerprint(store: EmbeddingStore) -> str | None:
    """The fingerprint of the model that made ``store`` (None when not recorded)."""
    return store.signature.get("model_fingerprint")


def check_same_model(stores: Sequence[EmbeddingStore]) -> None:
    """Raise :class:`InputError` when the stores were made by different models."""
    first = stores[0]
    for other in stores[1:]:
        a, b = model_fingerprint(first), model_fingerprint(other)
        if a != b or first.embed_dim != other.embed_dim:
            raise InputError(
                f"{other.path} was made by another model than {first.path} "
                f"({other.attrs.get('model_source')} vs {first.attrs.get('model_source')}); "
                "search stores of one model at a time"
            )


def slide_name(store: EmbeddingStore) -> str:
    """The slide's name as the store records it (else the store folder's name)."""
    return str(store.attrs.get("slide_name") or store.path.stem)


def search_stores(
    stores: Sequence[EmbeddingStore], query: np.ndarray, k: int = 10
) -> list[SearchHit]:
    """The ``k`` tiles over all ``stores`` most similar to ``query``, best first.

    Parameters
    ----------
    stores
        Open stores of one model (checked).
    query
        A unit vector ``[D]`` (a text embedding or a tile's).
    k
        How many hits.

    Memory: one band (:data:`BAND` rows x cols x D float32) of one store, and ``k`` hits.
    """
    stores = list(stores)
    check_same_model(stores)
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    if query.shape[0] != stores[0].embed_dim:
        dim = stores[0].embed_dim
        raise InputError(f"the query has {query.shape[0]} values; the stores hold {dim}")
    top = TopK(k)
    for source, store in enumerate(stores):
        for rows, cols, vectors in iter_store_tiles(store):
            top.add(vectors @ query, source, rows, cols)
    if not len(top.scores):
        raise StoreError("none of the stores has an embedded tile yet (run napari-conch embed)")
    hits = []
    for score, source, row, col in top.best():
        store = stores[source]
        box = store.grid.tile_box(row, col)
        hits.append(SearchHit(slide_name(store), store.path, row, col, box, score))
    return hits


_LIKE = re.compile(r"^(?P<store>.+):(?P<row>\d+),(?P<col>\d+)$")


def parse_like(text: str) -> tuple[Path, int, int]:
    """Split ``STORE:ROW,COL`` into the store path and the tile's row and column."""
    match = _LIKE.match(text.strip())
    if match is None:
        raise InputError(f"--like {text!r}: expected STORE:ROW,COL (e.g. slide.zarr:12,40)")
    return Path(match["store"]), int(match["row"]), int(match["col"])


def tile_vector(store: EmbeddingStore, row: int, col: int) -> np.ndarray:
    """The unit embedding of tile ``(row, col)`` of ``store``; InputError when it has none."""
    rows, cols = store.shape
    if not (0 <= row < rows and 0 <= col < cols):
        raise InputError(f"{store.path}: tile ({row}, {col}) is outside the {rows} x {cols} grid")
    vector = store.embeddings_at(np.array([row]), np.array([col]))[0]
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"{store.path}: tile ({row}, {col}) has no embedding (not computed)")
    return (vector / norm).astype(np.float32)


def write_hits_csv(path: str | os.PathLike, hits: Sequence[SearchHit]) -> Path:
    """Write hits as CSV (:data:`HIT_COLUMNS`) through a temporary file; return the path.

    Stores are named from the CSV's folder
    (:func:`~napari_conch.engine.cohort.csv_paths.store_reference`).
    """
    import csv

    from napari_conch.engine.cohort.csv_paths import store_reference
    from napari_conch.engine.export.writers import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HIT_COLUMNS)
        writer.writerows(hit.as_row(store_reference(hit.store, path.parent)) for hit in hits)
    return path


def read_hits_csv(path: str | os.PathLike) -> list[SearchHit]:
    """Read a hits CSV written by :func:`write_hits_csv` (for the napari Cohort view); relative
    store paths are taken from the CSV's folder."""
    import csv

    from napari_conch.engine.cohort.csv_paths import resolve_store_reference

    path = Path(path).expanduser().absolute()
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != HIT_COLUMNS:
                raise InputError(f"{path}: not a hits CSV (columns {', '.join(HIT_COLUMNS)})")
            return [
                SearchHit(
                    line["slide"],
                    resolve_store_reference(line["store"], path.parent),
                    int(line["row"]),
                    int(line["col"]),
                    tuple(float(line[c]) for c in ("x0", "y0", "x1", "y1")),
                    float(line["score"]),
                )
                for line in reader
            ]
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path}: damaged hits CSV ({exc})") from None
