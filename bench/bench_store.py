"""What the store's integrity checks cost: reads with and without crc32c, verify, repair, lock.

Usage (see ``docs/store.md``)::

    python bench/bench_store.py                   # 200 x 200 tiles of 512-d (about 40 MB)
    python bench/bench_store.py --rows 400 --cols 300 --repeat 5

Writes two synthetic stores (random unit vectors, every tile DONE) to a temporary folder: one
with checksums (this version) and one without (as stores were made before), then times
``embeddings()`` on both, ``verify()``, a ``repair()`` that finds nothing, and taking and giving
back the writer lock. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def best_of(repeat: int, fn) -> float:
    """Fastest of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_store(path: Path, rows: int, cols: int, dim: int, checksums: bool):
    from zarr.codecs import ZstdCodec

    from napari_conch.engine.store import embedding_store as store_mod

    signature = {"format": 1, "grid": {"rows": rows, "cols": cols}, "embed_dim": dim}
    original = store_mod._compressors
    if not checksums:
        store_mod._compressors = lambda: (ZstdCodec(level=0),)
    try:
        store = store_mod.EmbeddingStore.open_or_create(path, signature, shape=(rows, cols))
    finally:
        store_mod._compressors = original
    rng = np.random.default_rng(0)
    for r0 in range(0, rows, 16):  # one band of chunks at a time, as a run writes
        r, c = (a.ravel() for a in np.mgrid[r0 : min(r0 + 16, rows), 0:cols])
        v = rng.normal(size=(len(r), dim)).astype(np.float32)
        store.write_embeddings(r, c, v / np.linalg.norm(v, axis=1, keepdims=True))
    return store


def main() -> None:
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = {"rows": args.rows, "cols": args.cols, "dim": args.dim}
        for checksums in (True, False):
            name = "crc32c" if checksums else "no_checksum"
            path = Path(tmp) / f"{name}.zarr"
            make_store(path, args.rows, args.cols, args.dim, checksums).close()
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            reader = EmbeddingStore.open(path)
            out[f"{name}_store_mb"] = round(size / 2**20, 1)
            out[f"{name}_embeddings_s"] = round(best_of(args.repeat, reader.embeddings), 3)
            out[f"{name}_verify_s"] = round(best_of(args.repeat, reader.verify), 3)
        path = Path(tmp) / "crc32c.zarr"
        with EmbeddingStore.open(path, writable=True) as writer:
            out["repair_healthy_s"] = round(best_of(args.repeat, writer.repair), 3)
        out["lock_open_close_s"] = round(
            best_of(args.repeat * 10, lambda: EmbeddingStore.open(path, writable=True).close()),
            4,
        )
        out["open_read_only_s"] = round(
            best_of(args.repeat * 10, lambda: EmbeddingStore.open(path)), 4
        )
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
