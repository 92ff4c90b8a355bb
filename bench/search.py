"""Search across stores: time and peak memory over 1,000,000 tiles in 50 stores.

Usage (see ``docs/benchmarks.md``)::

    python bench/search.py                       # 50 stores x 20,000 tiles, D = 512, k = 100
    python bench/search.py --stores 5 --rows 40  # a quick run

The stores are real :class:`~napari_conch.engine.store.embedding_store.EmbeddingStore` folders
(float16 embeddings of random unit vectors, every tile DONE) written once under ``--folder``
(default ``.bench/search``, git-ignored) and reused by later runs. Each search runs in a fresh child
process, so its peak resident memory (``VmHWM``) is the search's own: the imports, one band
of one store and the ``k`` hits. The same child reports its resident memory after the imports,
before the first store is opened, so the search's own share is the difference. The child runs
twice: with glibc's default malloc arenas (one per decoding thread, which keep freed bands
resident) and with ``MALLOC_ARENA_MAX=2``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


def write_store(path: Path, rows: int, cols: int, dim: int, seed: int) -> None:
    """One synthetic store through the public EmbeddingStore API (every tile DONE)."""
    from napari_conch.engine.store.embedding_store import STORE_FORMAT, EmbeddingStore

    tile = 448
    grid = {
        "level": 0, "level_downsample": 1.0, "resample": 1.0, "tile_size": tile, "stride": tile,
        "rows": rows, "cols": cols, "level_shape": [rows * tile, cols * tile], "mpp": 0.5,
    }  # fmt: skip
    signature = {
        "format": STORE_FORMAT,
        "slide_fingerprint": f"synthetic-{seed}",
        "model_fingerprint": "synthetic-model",
        "grid": grid,
        "preprocessing": {"image_size": tile},
        "embed_dim": dim,
    }
    info = {"slide_name": f"slide{seed:03d}", "model_source": "synthetic", "logit_scale": 100.0}
    rng = np.random.default_rng(seed)
    r, c = np.divmod(np.arange(rows * cols), cols)
    with EmbeddingStore.open_or_create(path, signature, shape=(rows, cols), info=info) as store:
        for start in range(0, rows * cols, 16 * cols):  # a band of chunks at a time
            sel = slice(start, start + 16 * cols)
            v = rng.standard_normal((len(r[sel]), dim), dtype=np.float32)
            store.write_embeddings(r[sel], c[sel], v / np.linalg.norm(v, axis=1, keepdims=True))


def ensure_stores(folder: Path, n: int, rows: int, cols: int, dim: int) -> list[Path]:
    """Write the stores that are missing; return all their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"slide{i:03d}-{rows}x{cols}x{dim}.zarr" for i in range(n)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        start = time.perf_counter()
        for p in missing:
            write_store(p, rows, cols, dim, seed=paths.index(p))
        print(f"wrote {len(missing)} stores in {time.perf_counter() - start:.1f} s", flush=True)
    return paths


def rss_mib(field: str = "VmRSS") -> float:
    """Resident memory of this process from Linux /proc, MiB: ``VmRSS`` now, ``VmHWM`` peak.

    ``VmHWM`` starts afresh at ``exec``, unlike ``ru_maxrss``, which a child inherits from the
    parent it was forked from (here: the parent that wrote the stores).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def search_child(paths: list[str], k: int, dim: int) -> dict:
    """Run in the child: open the stores, search once, report time and memory."""
    import zarr  # noqa: F401  (imported here so that "after imports" includes it)

    from napari_conch.engine.cohort.search import open_stores, search_stores

    before = rss_mib()
    query = np.random.default_rng(123).standard_normal(dim).astype(np.float32)
    query /= np.linalg.norm(query)
    start = time.perf_counter()
    stores = open_stores(paths)
    hits = search_stores(stores, query, k)
    seconds = time.perf_counter() - start
    tiles = sum(int(s.shape[0] * s.shape[1]) for s in stores)
    peak = rss_mib("VmHWM")
    return {
        "stores": len(stores),
        "tiles": tiles,
        "k": k,
        "seconds": round(seconds, 2),
        "tiles_per_s": round(tiles / seconds),
        "rss_after_imports_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "best_score": round(hits[0].score, 4),
        "all_embeddings_float32_mib": round(tiles * dim * 4 / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--folder", default=str(REPO / ".bench" / "search"))
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(search_child(args.child, args.k, args.dim)))
        return
    paths = ensure_stores(Path(args.folder), args.stores, args.rows, args.cols, args.dim)
    child = [sys.executable, __file__, "-k", str(args.k), "--dim", str(args.dim), "--child"]
    child += [str(p) for p in paths]
    results = {}
    # glibc gives each zarr decoding thread its own malloc arena, which keeps freed bands
    # resident; MALLOC_ARENA_MAX=2 shows the memory the search itself needs.
    for label, env in (("default malloc", {}), ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"})):
        out = subprocess.run(child, capture_output=True, text=True, env={**os.environ, **env})
        if out.returncode != 0:
            sys.exit(out.stderr)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"machine": machine(), **results}, indent=2))


if __name__ == "__main__":
    main()
