"""Re-prompt latency: a new prompt's map over a store of 100,000 tiles (text encoder excluded).

Usage (see ``docs/benchmarks.md``)::

    python bench/bench_query.py                     # 100,000 tiles, D = 512, float16 zarr store
    python bench/bench_query.py --tiles 20000 --no-store

A real :class:`~napari_conch.engine.store.embedding_store.EmbeddingStore` is written under a
temporary folder (float16 embeddings of random unit vectors; 3 % of the grid left as glass, never
embedded), then :class:`~napari_conch.engine.query.QueryIndex` loads it once. Timed, each as the
median of ``--repeat`` runs with a new random query each time:

- ``cosine map``: one prompt's cosine ``[rows, cols]`` map (one matrix-vector product and a
  scatter into the grid): the latency a user sees when typing a new prompt;
- ``classify K``: K prompts -> probabilities and labels per tile;
- ``run_query``: the same with stride = tile / 4 (75 % overlap): tile maps, overlap-averaged
  cell maps and labels.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from machine_info import cpu_model  # noqa: E402  (bench/machine_info.py)


def machine() -> str:
    """A one-line description of the CPU."""
    import os

    return f"{cpu_model()}, {os.cpu_count()} cores, numpy {np.__version__}"


def random_units(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_grid(tiles: int, stride_div: int = 1):
    from napari_conch.slide import TileGrid

    side = math.ceil(math.sqrt(tiles / 0.97))
    tile = 448
    stride = tile // stride_div
    length = (side - 1) * stride + tile
    return TileGrid(0, 1.0, 1.0, tile, stride, side, side, (length, length))


def build_store(folder: Path, grid, dim: int, rng: np.random.Generator) -> tuple[object, float]:
    """Write a store with ~97 % of the grid DONE; return it and the write time."""
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    signature = {"format": 1, "grid": grid.to_dict(), "embed_dim": dim, "bench": True}
    store = EmbeddingStore.open_or_create(folder / "bench.zarr", signature, shape=grid.shape)
    done = rng.random(grid.shape) < 0.97
    rows, cols = np.nonzero(done)
    start = time.perf_counter()
    step = 16 * grid.cols  # whole rows of chunks at a time
    for i in range(0, len(rows), step):
        r, c = rows[i : i + step], cols[i : i + step]
        store.write_embeddings(r, c, random_units(len(r), dim, rng))
    return store, time.perf_counter() - start


def timed(fn, repeat: int) -> float:
    """Median wall time of ``fn()`` in milliseconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    from napari_conch.engine.query import QueryIndex, classify, run_query, similarity_map

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-store", action="store_true", help="skip zarr: index from arrays")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    grid = make_grid(args.tiles)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.no_store:
            done = rng.random(grid.shape) < 0.97
            rows, cols = np.nonzero(done)
            vectors = random_units(len(rows), args.dim, rng).astype(np.float16)
            start = time.perf_counter()
            index = QueryIndex.from_arrays(vectors, rows, cols, grid.shape)
        else:
            store, write_s = build_store(Path(tmp), grid, args.dim, rng)
            print(f"store written: {write_s:.1f} s")
            start = time.perf_counter()
            index = QueryIndex.from_store(store)
        load_s = time.perf_counter() - start
    rows_, cols_ = grid.shape
    print(f"grid {rows_} x {cols_}, {index.size} tiles, D = {index.dim}")
    print(f"index built once: {load_s * 1e3:.0f} ms ({index.vectors.nbytes / 2**20:.0f} MiB)")

    def one_prompt():
        similarity_map(index, random_units(1, args.dim, rng)[0])

    def several():
        classify(index.cosine_maps(random_units(args.classes, args.dim, rng)), 100.0)

    overlap_grid = make_grid(args.tiles, stride_div=4)
    names = [f"class{i}" for i in range(args.classes)]

    def with_overlap():
        run_query(
            index, names, random_units(args.classes, args.dim, rng), overlap_grid,
            logit_scale=100.0,
        )  # fmt: skip

    print(f"cosine map, 1 prompt: {timed(one_prompt, args.repeat):.1f} ms")
    print(f"classify {args.classes} prompts: {timed(several, args.repeat):.1f} ms")
    print(
        f"run_query {args.classes} prompts, 75 % overlap cell maps: "
        f"{timed(with_overlap, args.repeat):.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
