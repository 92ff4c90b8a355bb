"""Learning curve of teaching by example: held-out balanced accuracy against examples per class.

Usage (from the repository root; see ``docs/annotation.md``)::

    python bench/learning_curve.py --png docs/images/learning_curve.png

Data: the two H&E fixture images with nucleus-class polygons (``hgsc_nest.jpg`` +
``hgsc_nest.parquet``, ``hgsc_stromal_he.jpg`` + ``hgsc_stromal_cells.parquet``, under
``$NAPARI_CONCH_FIXTURES/images``), tiles of 128 px every 64 px, labelled as ``train/labels.py``
labels them (the dominant nucleus class: neoplastic -> tumor, connective -> stroma,
inflammatory), split as ``train/data.json`` says: tiles wholly inside the held-out box are the
test set, tiles wholly inside the training boxes are the pool the examples are drawn from (the
demo model never saw the held-out boxes either).

Each image is embedded by the demo model through the engine (``embed_slide`` into a store, as
the plugin does); the classes are the demo model's prompts ("tumor cells", "stroma",
"inflammatory cells"), the prior. For ``n`` = 0 (zero-shot), 1, 2, 5, 10, 20 examples per class,
``--draws`` random draws of ``n`` pool tiles per class train the classifier
(:func:`napari_conch.engine.learn.classifier.train`, the one the dock and ``napari-conch learn``
use), and its balanced accuracy (mean per-class recall) on the held-out tiles is recorded: mean and
standard deviation over the draws.

Every prior strength of ``STRENGTHS`` is run on the same draws. Which one fits this data best is
decided on the training boxes only (the same draws scored on the pool tiles that were not drawn);
the table and the figure show every strength's held-out numbers, and the classifier with no
prompt at all (classes learned from examples alone).
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
sys.path.insert(0, str(REPO))

CLASSES = ("tumor", "stroma", "inflammatory")
IMAGES = ("hgsc_nest", "hgsc_stromal_he")
COUNTS = (0, 1, 2, 5, 10, 20)
STRENGTHS = (0.1, 1.0, 10.0)


def inside(boxes: np.ndarray, regions: list[list[int]]) -> np.ndarray:
    """Boxes ``(x0, y0, x1, y1)`` wholly inside one of the regions."""
    out = np.zeros(len(boxes), dtype=bool)
    for x0, y0, x1, y1 in regions:
        out |= (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
    return out


def embedded_tiles(entry: dict, model, root: Path, cache: Path):
    """Embeddings, labels and split of one image's tiles (embedded through the engine)."""
    from napari_conch.engine.embed import embed_slide, open_store
    from napari_conch.engine.query import QueryIndex
    from napari_conch.slide import make_grid, open_slide
    from train.images import fixture_path, read_rgb
    from train.labels import label_map_for

    path = fixture_path(entry["file"], root)
    slide = open_slide(path)
    grid = make_grid(slide, tile_size=entry["tile"], stride=entry["eval_stride"])
    store = open_store(slide, model, grid, cache)
    embed_slide(slide, model, grid, store, min_tissue=0.0, batch_size=64)
    index = QueryIndex.from_store(store)
    boxes = grid.boxes().reshape(-1, 4)[index.flat_index]
    height, width = slide.shape[:2]
    whole = (boxes[:, 2] <= width) & (boxes[:, 3] <= height)
    labels = np.full(len(boxes), "", dtype=object)
    labels[whole] = label_map_for(entry, read_rgb(path), root).labels(boxes[whole].astype(np.int64))
    test = whole & inside(boxes, entry["heldout_boxes"])
    pool = whole & inside(boxes, entry["train_boxes"])
    return index.vectors, labels.astype(str), test, pool, float(store.logit_scale)


def balanced_accuracy(predicted: np.ndarray, truth: np.ndarray, classes: int) -> float:
    return float(np.mean([np.mean(predicted[truth == k] == k) for k in range(classes)]))


def run(draws: int, root: Path, cache: Path) -> dict:
    """Every number of the curve (see the module docstring)."""
    import torch

    from napari_conch.demo import load_demo_model
    from napari_conch.engine.learn import classifier as learn
    from napari_conch.engine.prompts import PromptSet, embed_prompt_sets
    from train.images import read_json

    torch.set_num_threads(2)
    data = read_json()
    entries = {e["name"]: e for e in data["images"]}
    model = load_demo_model(device="cpu")
    start = time.perf_counter()
    parts = [embedded_tiles(entries[name], model, root, cache) for name in IMAGES]
    embed_seconds = time.perf_counter() - start
    vectors = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test = np.concatenate([p[2] for p in parts]) & np.isin(labels, CLASSES)
    pool = np.concatenate([p[3] for p in parts]) & np.isin(labels, CLASSES)
    scale = parts[0][4]
    y = np.full(len(labels), -1)
    for k, name in enumerate(CLASSES):
        y[labels == name] = k
    prompts = {c: (data["concepts"][c]["prompt"],) for c in CLASSES}
    names, queries = embed_prompt_sets(model, PromptSet(prompts, "none"))
    text = dict(zip(names, queries, strict=True))

    rng = np.random.default_rng(0)
    pools = [np.flatnonzero(pool & (y == k)) for k in range(len(CLASSES))]
    plan = {
        n: [np.concatenate([rng.choice(p, n, replace=False) for p in pools]) for _ in range(draws)]
        for n in COUNTS
    }
    result: dict = {
        "tiles": {
            "test": {c: int((test & (y == k)).sum()) for k, c in enumerate(CLASSES)},
            "pool": {c: len(p) for c, p in zip(CLASSES, pools, strict=True)},
        },
        "prompts": {c: prompts[c][0] for c in CLASSES},
        "draws": draws,
        "embed_seconds": round(embed_seconds, 1),
        "by_strength": {},
    }
    for strength in STRENGTHS:
        held, rest = {}, {}
        for n, picks in plan.items():
            held[n], rest[n] = [], []
            for chosen in picks:
                clf = learn.train(CLASSES, text, scale, vectors[chosen], y[chosen], strength)
                predicted = clf.predict(vectors)
                held[n].append(balanced_accuracy(predicted[test], y[test], len(CLASSES)))
                others = pool.copy()
                others[chosen] = False
                rest[n].append(balanced_accuracy(predicted[others], y[others], len(CLASSES)))
        result["by_strength"][str(strength)] = {
            "heldout": {n: [float(np.mean(v)), float(np.std(v))] for n, v in held.items()},
            "training_boxes": {n: float(np.mean(v)) for n, v in rest.items()},
        }
    alone = {}
    for n, picks in plan.items():
        if n == 0:
            continue
        scores = []
        for chosen in picks:
            clf = learn.train(CLASSES, {}, scale, vectors[chosen], y[chosen])
            scores.append(balanced_accuracy(clf.predict(vectors[test]), y[test], len(CLASSES)))
        alone[n] = [float(np.mean(scores)), float(np.std(scores))]
    result["examples_only"] = alone
    chosen = max(
        STRENGTHS,
        key=lambda s: np.mean(list(result["by_strength"][str(s)]["training_boxes"].values())),
    )
    result["chosen_strength"] = chosen
    return result


def table(result: dict) -> str:
    """Markdown table: held-out balanced accuracy per strength and examples per class."""
    lines = [
        "| examples per class | "
        + " | ".join(
            f"strength {s}{' (chosen)' if float(s) == result['chosen_strength'] else ''}"
            for s in result["by_strength"]
        )
        + " |",
        "|---|" + "---|" * (len(result["by_strength"]) + 1),
    ]
    lines[0] += " examples only, no prompt |"
    for n in COUNTS:
        cells = []
        for entry in result["by_strength"].values():
            mean, std = entry["heldout"][n]
            cells.append(f"{mean:.3f} ± {std:.3f}")
        alone = result["examples_only"].get(n)
        cells.append("-" if alone is None else f"{alone[0]:.3f} ± {alone[1]:.3f}")
        label = f"{n} (zero-shot)" if n == 0 else str(n)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """The curves (mean ± standard deviation over the draws) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_conch.engine.learn.classifier import DEFAULT_STRENGTH

    x = np.arange(len(COUNTS))
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    colours = ("#984ea3", "#377eb8", "#ff7f00")
    for i, (strength, entry) in enumerate(result["by_strength"].items()):
        held = entry["heldout"]
        tags = []
        if float(strength) == DEFAULT_STRENGTH:
            tags.append("default")
        if float(strength) == result["chosen_strength"]:
            tags.append("chosen on training boxes")
        ax.errorbar(
            x + 0.06 * (i - 1),
            [held[n][0] for n in COUNTS],
            yerr=[held[n][1] for n in COUNTS],
            marker="o",
            capsize=3,
            color=colours[i % len(colours)],
            label=f"prompts + examples, strength {strength}"
            + (f" ({', '.join(tags)})" if tags else ""),
        )
    alone = result["examples_only"]
    ax.errorbar(
        x[1:] + 0.12,
        [alone[n][0] for n in COUNTS[1:]],
        yerr=[alone[n][1] for n in COUNTS[1:]],
        marker="s",
        capsize=3,
        color="#4daf4a",
        label="examples only (no prompt)",
    )
    ax.axhline(1 / len(CLASSES), color="#e41a1c", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(x, [f"{n}\n(zero-shot)" if n == 0 else str(n) for n in COUNTS])
    ax.set_xlabel("annotated tiles per class")
    ax.set_ylabel("held-out balanced accuracy")
    ax.set_ylim(0.2, 1)
    tiles = result["tiles"]["test"]
    ax.set_title(
        "Demo model, HGSC H&E fixtures: tumour / stroma / inflammatory\n"
        f"{sum(tiles.values())} held-out tiles, {result['draws']} random draws per point",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--png", type=Path, help="write the figure here")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--cache", type=Path, help="store folder (default: a temporary one)")
    args = parser.parse_args(argv)
    from train.images import fixtures_root

    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.draws, fixtures_root(), args.cache or Path(tmp))
    print(f"tiles: {result['tiles']}  (embedding took {result['embed_seconds']} s)")
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.png:
        figure(result, args.png)
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
