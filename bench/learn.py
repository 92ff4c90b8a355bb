"""Retraining latency of the classifier taught by example, over 100,000 tiles.

Usage (see ``docs/annotation.md``)::

    python bench/learn.py                         # 100,000 tiles, D = 512, 4 classes
    python bench/learn.py --tiles 20000 --examples 50 200

Synthetic embeddings (no model needed): 4 clusters of unit vectors with noise, 3 % of the grid
left as glass (never embedded); the text prior is each cluster's centre with noise. For each
number of examples (spread over the classes), timed as the median of ``--repeat`` runs, each
after a new example was added (what the dock does after a stroke):

- ``train``: fitting the classifier from its prior (L-BFGS on the examples);
- ``maps``: probabilities, labels and their overlap-averaged cell maps for every tile;
- ``check next``: the least sure unlabelled tiles;
- ``retrain total``: the three together (:meth:`Learner.retrain` without cross-validation),
  what the user waits for before the labels layer is redrawn;
- ``cross-validation``: the stratified k-fold precision/recall, computed after the maps.
"""

from __future__ import annotations

import argparse
import math
import statistics
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


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(tiles: int, dim: int, classes: int, stride_div: int, rng: np.random.Generator):
    """A learner over a grid of about ``tiles`` embedded tiles, and the true class of each."""
    from napari_conch.engine.learn.learner import Learner
    from napari_conch.engine.query import QueryIndex
    from napari_conch.slide import TileGrid

    side = math.ceil(math.sqrt(tiles / 0.97))
    tile, stride = 224, 224 // stride_div
    shape = ((side - 1) * stride + tile,) * 2
    grid = TileGrid(0, 1.0, 1.0, tile, stride, side, side, shape)
    valid = rng.random((side, side)) >= 0.03
    rows, cols = np.nonzero(valid)
    centres = unit(rng.standard_normal((classes, dim)))
    truth = (rows * classes // side + cols) % classes
    vectors = unit(centres[truth] + 4.0 * rng.standard_normal((len(rows), dim)) / math.sqrt(dim))
    index = QueryIndex.from_arrays(vectors, rows, cols, (side, side))
    text = unit(centres + 1.5 * rng.standard_normal(centres.shape) / math.sqrt(dim))
    names = [f"class{k}" for k in range(classes)]
    return Learner(index, grid, 100.0, dict(zip(names, text, strict=True))), rows, cols, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--examples", type=int, nargs="+", default=[40, 200, 500])
    parser.add_argument("--stride-div", type=int, default=1, help="stride = tile / this")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    from napari_conch.engine.learn.annotations import Examples

    rng = np.random.default_rng(0)
    learner, rows, cols, truth = synthetic(args.tiles, args.dim, args.classes, args.stride_div, rng)
    names = learner.classes
    print(f"machine: {machine()}")
    print(
        f"{learner.index.size} embedded tiles ({learner.index.shape[0]}^2 grid), D = {args.dim}, "
        f"{args.classes} classes, stride = tile / {args.stride_div}, median of {args.repeat}"
    )
    print("| examples | train | maps | check next | retrain total | cross-validation | accuracy |")
    print("|---|---|---|---|---|---|---|")
    learner.retrain(validate=False)  # warm up (imports, first allocation)
    for n in args.examples:
        picks = rng.choice(len(rows), n + args.repeat, replace=False)
        timings: dict[str, list[float]] = {}
        for r in range(args.repeat):
            chosen = picks[: n + r]
            learner.set_examples(
                Examples(rows[chosen], cols[chosen], [names[t] for t in truth[chosen]])
            )
            start = time.perf_counter()
            outcome = learner.retrain(validate=True)
            total = time.perf_counter() - start
            for key, value in outcome.seconds.items():
                timings.setdefault(key, []).append(value)
            timings.setdefault("total", []).append(total - outcome.seconds["cross_validation"])
        labels = outcome.result.labels[rows, cols]
        accuracy = float(np.mean(labels == truth + 1))

        ms = {k: f"{1000 * statistics.median(v):.0f} ms" for k, v in timings.items()}
        print(
            f"| {n} | {ms['train']} | {ms['maps']} | {ms['check_next']} | {ms['total']} | "
            f"{ms['cross_validation']} | {accuracy:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
