"""Slide-level zero-shot classification: MI-Zero top-j pooling, metrics and evidence.

CONCH's protocol for whole slides (Lu et al., *Nature Medicine* 2024, "MI-Zero"): every tile's
cosine similarity to every class embedding; per class, the mean of its ``j`` highest tile scores
(``j`` clipped to the slide's tile count); the prediction is the class with the highest pooled
score, the probabilities ``softmax(logit_scale x pooled)`` with the model's own temperature. Several
``j`` are evaluated at once (CONCH reports 1, 5, 10, 50 and 100).

With reference labels, :func:`evaluate` gives accuracy, balanced accuracy and ROC AUC per ``j``
(binary: the second class's probability; more classes: one-vs-rest, macro-averaged), all written
here (rank-based AUC, ties averaged). :func:`write_evidence` writes, per slide, the tiles behind
each class's pooled score as CSV and QuPath GeoJSON.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_conch.engine.cohort.csv_paths import resolve_store_reference, store_reference
from napari_conch.engine.cohort.search import iter_store_tiles, slide_name
from napari_conch.engine.colors import label_color
from napari_conch.engine.export.writers import atomic_path
from napari_conch.engine.query import softmax_probs
from napari_conch.engine.store.embedding_store import EmbeddingStore
from napari_conch.errors import InputError, StoreError

#: CONCH's pooling sizes.
DEFAULT_TOPK: tuple[int, ...] = (1, 5, 10, 50, 100)

#: Columns of an evidence CSV.
EVIDENCE_COLUMNS = ("class", "rank", "row", "col", "x0", "y0", "x1", "y1", "score", "predicted")


def parse_topk(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,5,10"`` (or a sequence) -> sorted unique positive ints."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = sorted({int(str(v).strip()) for v in items if str(v).strip()})
    except ValueError:
        raise InputError(f"--topk {text!r}: expected whole numbers like 1,5,10") from None
    if not values or values[0] < 1:
        raise InputError(f"--topk {text!r}: give one or more numbers of at least 1")
    return tuple(values)


def topj_pool(cosines: np.ndarray, topk: Sequence[int]) -> np.ndarray:
    """Per class, the mean of the ``j`` highest tile scores, for each ``j``: ``[J, K]``.

    Parameters
    ----------
    cosines
        ``[N, K]`` tile x class cosine similarities (N >= 1).
    topk
        The ``j`` values; each is clipped to ``N``.
    """
    cosines = np.asarray(cosines, dtype=np.float64)
    if cosines.ndim != 2 or len(cosines) == 0:
        raise InputError("pooling needs at least one scored tile")
    ordered = -np.sort(-cosines, axis=0)  # each class's scores, best first
    cumulative = np.cumsum(ordered, axis=0)
    js = np.minimum(np.asarray(topk, dtype=np.int64), len(cosines))
    return cumulative[js - 1] / js[:, None]


@dataclass
class SlideResult:
    """The pooled scores of one slide.

    Attributes
    ----------
    pooled
        ``[J, K]`` mean of the top-j tile cosines per class, for each ``j`` of ``topk``.
    probs
        ``[J, K]`` ``softmax(logit_scale x pooled)`` over the classes.
    rows, cols, cosines
        Every scored tile and its ``[N, K]`` cosines (for the evidence).
    """

    slide: str
    store: Path
    names: list[str]
    topk: tuple[int, ...]
    pooled: np.ndarray
    probs: np.ndarray
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)
    cosines: np.ndarray = field(repr=False)

    @property
    def tiles(self) -> int:
        """Number of tiles scored."""
        return len(self.rows)

    @property
    def preds(self) -> np.ndarray:
        """``[J]`` index of the predicted class for each ``j``."""
        return np.argmax(self.pooled, axis=1)

    def clipped(self) -> list[int]:
        """The ``j`` larger than the slide's tile count (pooled over all its tiles)."""
        return [j for j in self.topk if j > self.tiles]

    def top_tiles(self, klass: int, j: int) -> np.ndarray:
        """Indices (into ``rows``/``cols``) of class ``klass``'s ``j`` best tiles, best first."""
        scores = self.cosines[:, klass]
        return np.argsort(-scores, kind="stable")[: min(j, len(scores))]


def store_cosines(
    store: EmbeddingStore, class_embeddings: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rows, cols`` of a store's DONE tiles and their ``[N, K]`` cosines (read band by band)."""
    queries = np.asarray(class_embeddings, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != store.embed_dim:
        raise InputError(
            f"{store.path}: class embeddings {queries.shape} do not fit {store.embed_dim}-d tiles"
        )
    parts = [(r, c, v @ queries.T) for r, c, v in iter_store_tiles(store)]
    if not parts:
        raise StoreError(f"{store.path}: no embedded tiles yet (run napari-conch embed)")
    rows, cols, cos = (np.concatenate(p) for p in zip(*parts, strict=True))
    return rows, cols, cos


def classify_store(
    store: EmbeddingStore,
    names: Sequence[str],
    class_embeddings: np.ndarray,
    logit_scale: float,
    topk: Sequence[int] = DEFAULT_TOPK,
) -> SlideResult:
    """Zero-shot classify one embedded slide with CONCH's top-j pooling.

    Parameters
    ----------
    store
        The slide's embedding store.
    names, class_embeddings
        Class names and unit-norm ``[K, D]`` class embeddings (K >= 2).
    logit_scale
        The model's temperature, exponentiated (the store records it as ``logit_scale``).
    topk
        The pooling sizes ``j``.
    """
    names = list(names)
    if len(names) < 2 or len(names) != len(class_embeddings):
        raise InputError("slide classification needs two or more classes, one embedding each")
    topk = parse_topk(topk)
    rows, cols, cosines = store_cosines(store, class_embeddings)
    pooled = topj_pool(cosines, topk)
    probs = softmax_probs(pooled.T, logit_scale).T
    return SlideResult(
        slide_name(store), store.path, names, topk, pooled, probs, rows, cols, cosines
    )


def slides_csv_header(names: Sequence[str], topk: Sequence[int]) -> list[str]:
    """``slide,store,tiles`` then per ``j``: ``pred_top<j>``, scores, probabilities."""
    header = ["slide", "store", "tiles"]
    for j in topk:
        header.append(f"pred_top{j}")
        header += [f"score_top{j}_{n}" for n in names]
        header += [f"prob_top{j}_{n}" for n in names]
    return header


def write_slides_csv(path: str | os.PathLike, results: Sequence[SlideResult]) -> Path:
    """Write one row per slide (see :func:`slides_csv_header`) via a temporary file.

    The ``store`` column names each store relative to the CSV's folder
    (:func:`~napari_conch.engine.cohort.csv_paths.store_reference`); :func:`read_slides_csv`
    resolves it from there, whatever the working folder.
    """
    if not results:
        raise InputError("no slides to write")
    names, topk = results[0].names, results[0].topk
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(slides_csv_header(names, topk))
        for r in results:
            line: list = [r.slide, store_reference(r.store, path.parent), r.tiles]
            for i, _ in enumerate(topk):
                line.append(names[int(r.preds[i])])
                line += [f"{v:.6f}" for v in r.pooled[i]]
                line += [f"{v:.6f}" for v in r.probs[i]]
            writer.writerow(line)
    return path


# ---------------------------------------------------------------------------------- metrics


def read_labels_csv(path: str | os.PathLike) -> dict[str, str]:
    """Read ``slide,label`` rows (a header line with those names is required)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"slide", "label"} <= set(reader.fieldnames or ()):
                raise InputError(f"{path}: expected a header 'slide,label'")
            labels: dict[str, str] = {}
            for line in reader:
                slide, label = (line["slide"] or "").strip(), (line["label"] or "").strip()
                if not slide or not label:
                    raise InputError(f"{path}: line {reader.line_num} lacks a slide or a label")
                if slide in labels and labels[slide] != label:
                    raise InputError(f"{path}: slide {slide!r} has two labels")
                labels[slide] = label
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file") from None
    if not labels:
        raise InputError(f"{path}: no labels")
    return labels


def _rank(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2.0
            start = end
    return ranks


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U / n_pos n_neg, ties count half); NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _rank(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(targets: np.ndarray, probs: np.ndarray) -> float:
    """Two classes: AUC of the second class's probability. More: one-vs-rest macro AUC.

    NaN when some class has no example or every example (the AUC is not defined then).
    """
    targets = np.asarray(targets)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[1] == 2:
        return binary_auc(targets == 1, probs[:, 1])
    per_class = [binary_auc(targets == c, probs[:, c]) for c in range(probs.shape[1])]
    return float(np.mean(per_class))  # NaN if any class is undefined


def balanced_accuracy(targets: np.ndarray, preds: np.ndarray) -> float:
    """Mean recall over the classes present in ``targets``."""
    targets, preds = np.asarray(targets), np.asarray(preds)
    return float(np.mean([np.mean(preds[targets == c] == c) for c in np.unique(targets)]))


@dataclass(frozen=True)
class Metrics:
    """Slide-level scores for one pooling size ``j``."""

    j: int
    slides: int
    accuracy: float
    balanced_accuracy: float
    auc: float

    def line(self) -> str:
        """One printable line."""
        auc = "n/a" if np.isnan(self.auc) else f"{self.auc:.3f}"
        return (
            f"top-{self.j}: accuracy {self.accuracy:.3f}  balanced accuracy "
            f"{self.balanced_accuracy:.3f}  AUC {auc}  ({self.slides} slides)"
        )


def match_labels(
    results: Sequence[SlideResult], labels: Mapping[str, str]
) -> tuple[list[SlideResult], np.ndarray, list[str]]:
    """Pair results with labels by slide name, with or without a file extension on either side
    (``case1``, ``case1.svs``).

    Returns the labelled results, their class indices and the slides without a label.
    """
    names = results[0].names
    unknown = sorted(set(labels.values()) - set(names))
    if unknown:
        raise InputError(f"label {unknown[0]!r} is not a class ({', '.join(names)})")
    lookup = {Path(key).stem: label for key, label in labels.items()}
    lookup.update(labels)  # an exact name wins over a shortened one
    paired, targets, missing = [], [], []
    for r in results:
        label = lookup.get(r.slide, lookup.get(Path(r.slide).stem))
        if label is None:
            missing.append(r.slide)
            continue
        paired.append(r)
        targets.append(names.index(label))
    if not paired:
        raise InputError("no classified slide has a label (the labels CSV names other slides)")
    return paired, np.asarray(targets), missing


def evaluate(results: Sequence[SlideResult], labels: Mapping[str, str]) -> list[Metrics]:
    """Accuracy, balanced accuracy and AUC per ``j`` over the labelled slides."""
    paired, targets, _ = match_labels(results, labels)
    metrics = []
    for i, j in enumerate(paired[0].topk):
        preds = np.array([int(r.preds[i]) for r in paired])
        probs = np.stack([r.probs[i] for r in paired])
        metrics.append(
            Metrics(
                j=j,
                slides=len(paired),
                accuracy=float(np.mean(preds == targets)),
                balanced_accuracy=balanced_accuracy(targets, preds),
                auc=roc_auc(targets, probs),
            )
        )
    return metrics


# ---------------------------------------------------------------------------------- evidence


def evidence_stem(result: SlideResult) -> str:
    """File stem of a slide's evidence files: its store's folder name (unique per store)."""
    stem = result.store.name.removesuffix(".zarr")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "slide"


def evidence_tiles(result: SlideResult, grid, j: int) -> list[dict]:
    """Per class, its ``j`` best tiles: class, rank, row, col, box, score, predicted class."""
    predicted = result.names[int(result.preds[-1])]
    items = []
    for k, name in enumerate(result.names):
        for rank, i in enumerate(result.top_tiles(k, j), start=1):
            row, col = int(result.rows[i]), int(result.cols[i])
            items.append(
                {
                    "class": name,
                    "class_index": k,
                    "rank": rank,
                    "row": row,
                    "col": col,
                    "box": grid.tile_box(row, col),
                    "score": float(result.cosines[i, k]),
                    "predicted": name == predicted,
                }
            )
    return items


def evidence_geojson(items: Sequence[dict]) -> dict:
    """A QuPath FeatureCollection: one square per evidence tile, classified by its class."""
    features = []
    for item in items:
        x0, y0, x1, y1 = (float(v) for v in item["box"])
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "annotation",
                    "name": f"{item['class']} #{item['rank']} ({item['score']:.4f})",
                    "classification": {
                        "name": item["class"],
                        "color": list(label_color(item["class_index"] + 1)),
                    },
                    "rank": item["rank"],
                    "score": item["score"],
                    "row": item["row"],
                    "col": item["col"],
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_evidence(
    folder: str | os.PathLike, result: SlideResult, grid, j: int | None = None
) -> tuple[Path, Path]:
    """Write ``<store-name>.evidence.csv`` and ``.geojson`` for one slide into ``folder``.

    ``j`` (default: the largest pooling size) is clipped to the slide's tile count. The CSV's
    ``predicted`` column marks the class predicted at the largest ``j``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--evidence {folder}: no such folder")
    j = max(result.topk) if j is None else int(j)
    if j < 1:
        raise InputError(f"evidence top {j}: must be at least 1")
    items = evidence_tiles(result, grid, j)
    stem = evidence_stem(result)
    csv_path, geo_path = folder / f"{stem}.evidence.csv", folder / f"{stem}.evidence.geojson"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(EVIDENCE_COLUMNS)
        for it in items:
            box = [round(float(v), 1) for v in it["box"]]
            score = f"{it['score']:.6f}"
            writer.writerow(
                [it["class"], it["rank"], it["row"], it["col"], *box, score, int(it["predicted"])]
            )
    with atomic_path(geo_path) as tmp:
        tmp.write_text(json.dumps(evidence_geojson(items)), encoding="utf-8")
    return csv_path, geo_path


# ---------------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class SlideRow:
    """One row of a slides CSV (:func:`write_slides_csv`) read back; ``store`` is the store's
    path, resolved from the CSV's folder."""

    slide: str
    store: Path
    tiles: int
    preds: dict[int, str]
    probs: dict[int, dict[str, float]]

    def probability(self, j: int) -> float:
        """The predicted class's probability at pooling size ``j``."""
        return self.probs[j][self.preds[j]]


@dataclass(frozen=True)
class SlidesTable:
    """A slides CSV: its classes, pooling sizes and rows."""

    names: list[str]
    topk: tuple[int, ...]
    rows: list[SlideRow]


def read_slides_csv(path: str | os.PathLike) -> SlidesTable:
    """Read a CSV written by ``classify-slides`` (:func:`write_slides_csv`).

    Relative store paths are taken from the CSV's own folder (not the working folder), so the
    table opens wherever napari was started; absolute ones are used as they are.
    """
    path = Path(path).expanduser().absolute()
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or ())
            lines = list(reader)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None
    topk = tuple(int(h[len("pred_top") :]) for h in header if re.fullmatch(r"pred_top\d+", h))
    if header[:3] != ["slide", "store", "tiles"] or not topk:
        raise InputError(f"{path}: not a classify-slides CSV (slide,store,tiles,pred_top<j>,...)")
    prefix = f"prob_top{topk[0]}_"
    names = [h[len(prefix) :] for h in header if h.startswith(prefix)]
    if header != slides_csv_header(names, topk):
        raise InputError(f"{path}: damaged classify-slides CSV (unexpected columns)")
    rows = []
    try:
        for number, line in enumerate(lines, start=2):
            if not (line["store"] or "").strip():
                raise ValueError(f"line {number} names no store")
            rows.append(
                SlideRow(
                    slide=line["slide"],
                    store=resolve_store_reference(line["store"], path.parent),
                    tiles=int(line["tiles"]),
                    preds={j: line[f"pred_top{j}"] for j in topk},
                    probs={j: {n: float(line[f"prob_top{j}_{n}"]) for n in names} for j in topk},
                )
            )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: damaged classify-slides CSV ({exc})") from None
    return SlidesTable(names, topk, rows)
