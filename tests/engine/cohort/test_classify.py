"""Slide-level pooling, metrics and evidence, checked against brute-force computations."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest

from napari_conch.engine.cohort.classify import (
    DEFAULT_TOPK,
    binary_auc,
    classify_store,
    evaluate,
    parse_topk,
    read_labels_csv,
    read_slides_csv,
    roc_auc,
    slides_csv_header,
    topj_pool,
    write_evidence,
    write_slides_csv,
)
from napari_conch.engine.cohort.cluster import choose_mode
from napari_conch.engine.export.writers import label_color
from napari_conch.errors import InputError, StoreError
from tests.engine.cohort.test_search import make_store, random_vectors

SCALE = 50.0  # the logit scale make_store records


def brute_pool(cosines: np.ndarray, j: int) -> np.ndarray:
    """Per class: sort that class's scores descending by hand, average the first min(j, N)."""
    out = []
    for k in range(cosines.shape[1]):
        column = sorted((float(v) for v in cosines[:, k]), reverse=True)
        top = column[: min(j, len(column))]
        out.append(sum(top) / len(top))
    return np.array(out)


@pytest.mark.parametrize("n", [1, 3, 7, 120])
def test_topj_pool_equals_brute_force(n):
    cosines = np.random.default_rng(n).uniform(-1, 1, size=(n, 3))
    pooled = topj_pool(cosines, DEFAULT_TOPK)
    for i, j in enumerate(DEFAULT_TOPK):
        np.testing.assert_allclose(pooled[i], brute_pool(cosines, j), atol=1e-12)
    if n <= 100:  # j beyond the tile count pools every tile
        np.testing.assert_allclose(pooled[-1], cosines.mean(axis=0), atol=1e-12)


def test_parse_topk():
    assert parse_topk("10, 1,5,5") == (1, 5, 10)
    for bad in ("", "0,1", "a", "1.5"):
        with pytest.raises(InputError, match="--topk"):
            parse_topk(bad)


def test_classify_store_equals_brute_force_from_tile_scores(tmp_path):
    rows, cols = 21, 5  # more than one 16-row band
    vectors = random_vectors(rows, cols, 1)
    done = np.random.default_rng(2).random((rows, cols)) > 0.4
    store = make_store(tmp_path / "s.zarr", vectors, done, slide="case7.svs")
    classes = random_vectors(1, 3, 3)[0]
    result = classify_store(store, ["a", "b", "c"], classes, SCALE, (1, 5, 200))
    # brute force from the store's own float16 numbers, tile by tile
    emb = store.embeddings()
    tiles = [(r, c) for r in range(rows) for c in range(cols) if done[r, c]]
    scores = np.array([emb[r, c] / np.linalg.norm(emb[r, c]) @ classes.T for r, c in tiles])
    assert result.tiles == len(tiles) and result.slide == "case7.svs"
    assert result.clipped() == [200]
    for i, j in enumerate((1, 5, 200)):
        pooled = brute_pool(scores, j)
        np.testing.assert_allclose(result.pooled[i], pooled, atol=1e-5)
        logits = SCALE * pooled
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(result.probs[i], probs, atol=1e-5)
        assert result.preds[i] == int(np.argmax(pooled))
    # top tiles of a class are its best scores
    best = result.top_tiles(1, 4)
    np.testing.assert_allclose(result.cosines[best, 1], np.sort(scores[:, 1])[::-1][:4], atol=1e-6)


def test_classify_store_refuses_one_class_and_empty_stores(tmp_path):
    store = make_store(tmp_path / "e.zarr", random_vectors(2, 2, 0), np.zeros((2, 2), bool))
    classes = random_vectors(1, 2, 3)[0]
    with pytest.raises(InputError, match="two or more classes"):
        classify_store(store, ["a"], classes[:1], SCALE)
    with pytest.raises(StoreError, match="no embedded tiles"):
        classify_store(store, ["a", "b"], classes, SCALE)


def pairwise_auc(positive, scores):
    """AUC by comparing every positive with every negative (ties count half)."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_equals_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        positive = rng.random(n) > 0.5
        if positive.all() or not positive.any():
            continue
        scores = np.round(rng.random(n), 1)  # many ties
        assert binary_auc(positive, scores) == pytest.approx(pairwise_auc(positive, scores))
    assert np.isnan(binary_auc(np.ones(3, bool), np.arange(3.0)))


def test_multiclass_auc_is_one_vs_rest_macro():
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=12)
    targets = np.array([0, 1, 2] * 4)
    expected = np.mean([pairwise_auc(targets == c, probs[:, c]) for c in range(3)])
    assert roc_auc(targets, probs) == pytest.approx(expected)
    two = probs[:, :2] / probs[:, :2].sum(axis=1, keepdims=True)
    t2 = targets % 2
    assert roc_auc(t2, two) == pytest.approx(pairwise_auc(t2 == 1, two[:, 1]))


def test_evaluate_accuracy_balanced_accuracy_auc(tmp_path):
    classes = np.eye(2, 8, dtype=np.float32)
    results = []
    truth = {}
    # slides whose tiles lean to class 0 or 1 by a known amount
    for i, (lean, label) in enumerate([(0.8, "a"), (0.6, "a"), (-0.5, "b"), (0.3, "b")]):
        v = np.zeros((2, 2, 8), np.float32)
        v[..., 0], v[..., 1], v[..., 2] = lean, -lean, 1.0
        store = make_store(tmp_path / f"{i}.zarr", v, slide=f"slide{i}.svs")
        results.append(classify_store(store, ["a", "b"], classes, SCALE, (1, 5)))
        truth[f"slide{i}"] = label  # matched by the name without extension
    metrics = evaluate(results, truth)
    assert [m.j for m in metrics] == [1, 5]
    m = metrics[0]
    assert m.slides == 4
    assert m.accuracy == pytest.approx(0.75)  # slide3 leans a but is b
    assert m.balanced_accuracy == pytest.approx((1.0 + 0.5) / 2)
    # prob of "b" ranks slide2 > slide3 > slide1 > slide0: b's are 1st and 2nd
    assert m.auc == pytest.approx(1.0)
    assert "balanced accuracy 0.750" in m.line()
    with pytest.raises(InputError, match="not a class"):
        evaluate(results, {"slide0": "c"})
    with pytest.raises(InputError, match="no classified slide"):
        evaluate(results, {"other": "a"})


def test_read_labels_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("slide,label\na.svs,LUAD\nb.svs,LUSC\n")
    assert read_labels_csv(path) == {"a.svs": "LUAD", "b.svs": "LUSC"}
    for text, match in [
        ("name,class\na,b\n", "header"),
        ("slide,label\na,\n", "lacks"),
        ("slide,label\na,x\na,y\n", "two labels"),
        ("slide,label\n", "no labels"),
    ]:
        path.write_text(text)
        with pytest.raises(InputError, match=match):
            read_labels_csv(path)
    with pytest.raises(InputError, match="no such file"):
        read_labels_csv(tmp_path / "none.csv")


def test_slides_csv_columns(tmp_path):
    store = make_store(tmp_path / "s.zarr", random_vectors(3, 3, 1), slide="s.svs")
    result = classify_store(store, ["x", "y"], random_vectors(1, 2, 2)[0], SCALE, (1, 5))
    out = write_slides_csv(tmp_path / "slides.csv", [result])
    with open(out, newline="") as fh:
        (line,) = list(csv.DictReader(fh))
    assert list(line) == slides_csv_header(["x", "y"], (1, 5))
    assert list(line)[:7] == [
        "slide", "store", "tiles", "pred_top1", "score_top1_x", "score_top1_y", "prob_top1_x",
    ]  # fmt: skip
    assert line["tiles"] == "9" and line["pred_top5"] in ("x", "y")
    assert float(line["prob_top5_x"]) + float(line["prob_top5_y"]) == pytest.approx(1, abs=1e-5)


def test_slides_csv_reads_back(tmp_path):
    results = []
    for i in range(2):
        store = make_store(tmp_path / f"s{i}.zarr", random_vectors(3, 3, i), slide=f"s{i}.svs")
        classes = random_vectors(1, 2, 5)[0]
        results.append(classify_store(store, ["x", "y"], classes, SCALE, (1, 5)))
    table = read_slides_csv(write_slides_csv(tmp_path / "slides.csv", results))
    assert table.names == ["x", "y"] and table.topk == (1, 5)
    for row, result in zip(table.rows, results, strict=True):
        assert (row.slide, row.store, row.tiles) == (result.slide, result.store, 9)
        assert row.preds[5] == ["x", "y"][int(result.preds[1])]
        k = int(result.preds[1])
        assert row.probability(5) == pytest.approx(result.probs[1, k], abs=1e-6)
    (tmp_path / "bad.csv").write_text("slide,label\na,b\n")
    with pytest.raises(InputError, match="not a classify-slides CSV"):
        read_slides_csv(tmp_path / "bad.csv")


def test_evidence_files(tmp_path):
    vectors = random_vectors(4, 5, 7)
    store = make_store(tmp_path / "case-abc.zarr", vectors, slide="case.svs", tile=100)
    classes = random_vectors(1, 2, 8)[0]
    result = classify_store(store, ["tumor", "stroma"], classes, SCALE, (1, 3))
    folder = tmp_path / "evidence"
    folder.mkdir()
    csv_path, geo_path = write_evidence(folder, result, store.grid)
    assert csv_path.name == "case-abc.evidence.csv" and geo_path.suffix == ".geojson"
    with open(csv_path, newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == 2 * 3
    emb = store.embeddings()
    predicted = ["tumor", "stroma"][int(result.preds[-1])]
    for k, name in enumerate(["tumor", "stroma"]):
        mine = [x for x in lines if x["class"] == name]
        assert [int(x["rank"]) for x in mine] == [1, 2, 3]
        # brute force: every tile's score for this class, best three
        every = sorted(
            ((float(emb[r, c] / np.linalg.norm(emb[r, c]) @ classes[k]), r, c)
             for r in range(4) for c in range(5)),
            reverse=True,
        )[:3]  # fmt: skip
        for x, (score, r, c) in zip(mine, every, strict=True):
            assert (int(x["row"]), int(x["col"])) == (r, c)
            assert float(x["score"]) == pytest.approx(score, abs=1e-5)
            assert [float(x[n]) for n in ("x0", "y0", "x1", "y1")] == [
                c * 100, r * 100, c * 100 + 100, r * 100 + 100,
            ]  # fmt: skip
            assert x["predicted"] == str(int(name == predicted))
    collection = json.loads(geo_path.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 6
    first = collection["features"][0]
    assert first["properties"]["classification"] == {
        "name": "tumor",
        "color": list(label_color(1)),
    }
    ring = first["geometry"]["coordinates"][0]
    x0, y0, x1, y1 = (float(lines[0][n]) for n in ("x0", "y0", "x1", "y1"))
    assert ring == [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    assert list(folder.glob(".*partial")) == []
    with pytest.raises(InputError, match="no such folder"):
        write_evidence(tmp_path / "missing", result, store.grid)


def test_a_slide_given_twice_is_refused(tmp_path):
    from napari_conch.engine.cohort.cluster import embed_cohort

    slide = tmp_path / "a.png"
    slide.write_bytes(b"x")
    with pytest.raises(InputError, match="more than once"):
        embed_cohort([slide, tmp_path / "." / "a.png"], "demo")
    with pytest.raises(InputError, match="no such file"):
        embed_cohort([tmp_path / "b.png"], "demo")


def test_choose_mode():
    assert choose_mode(10, 4) == "slides"
    assert choose_mode(1, 4) == "tiles"
    assert choose_mode(1, 4, "slides") == "slides"
    with pytest.raises(InputError, match="mode"):
        choose_mode(1, 1, "files")


@pytest.mark.slow
def test_cohort_on_a_local_cluster_equals_a_local_run(
    tmp_path, tiny_checkpoint, svs_path, monkeypatch
):
    """Whole slides as tasks (3 slides, 2 workers) and tiles spread (1 slide) give local stores."""
    import os
    from pathlib import Path

    from napari_conch.engine.cohort.cluster import embed_cohort
    from napari_conch.engine.options import RunOptions
    from napari_conch.engine.store.embedding_store import EmbeddingStore
    from tests.conftest import require_fixture

    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is an optional extra (napari-conch[distributed])"
    )
    ckpt, config = tiny_checkpoint
    slides = [require_fixture(f"images/{n}") for n in ("hgsc_nest.jpg", "ihc.png")]
    slides.append(svs_path)  # a TIFF-family file: its lazy pixels hold an open file handle
    options = RunOptions(level=0, tile_size=256, batch_size=8, device="cpu")
    local = embed_cohort(
        slides, ckpt, options.replace(store_root=str(tmp_path / "local")), config=config
    )
    assert local.mode == "local" and local.tiles > 0
    src = str(Path(__file__).resolve().parents[3] / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        done = []
        remote = embed_cohort(
            slides, ckpt, options.replace(store_root=str(tmp_path / "cluster")), config=config,
            scheduler=client, on_progress=lambda path, event: done.append((path, event)),
        )  # fmt: skip
        models = client.run(
            lambda: len(__import__("napari_conch.model.loaded").model.loaded._CACHE)
        )
        # tiles spread: the SVS in 64 px tiles is 9 store blocks, more than 2 x 2 workers
        small = options.replace(tile_size=64)
        spread = embed_cohort(
            slides[-1:], ckpt, small.replace(store_root=str(tmp_path / "spread")), config=config,
            scheduler=client,
        )  # fmt: skip
        # no scheduler while a Client is dask's default: the SVS is still read here
        here = embed_cohort(
            slides[-1:], ckpt, small.replace(store_root=str(tmp_path / "here")), config=config
        )
    assert remote.mode == "slides" and remote.workers == 2
    assert sorted(p.name for p, e in done if e is None) == sorted(s.name for s in slides)
    assert all(n <= 1 for n in models.values())  # each worker loaded the model once at most
    assert spread.mode == "tiles"
    pairs = [*zip(local.summaries, remote.summaries, strict=True)]
    pairs.append((here.summaries[0], spread.summaries[0]))
    assert here.mode == "local"
    assert spread.summaries[0].computed == here.summaries[0].computed == spread.summaries[0].total
    for a, b in pairs:
        sa, sb = EmbeddingStore.open(a.store_path), EmbeddingStore.open(b.store_path)
        assert sa.path.name == sb.path.name and sa.signature == sb.signature
        np.testing.assert_array_equal(sa.status(), sb.status())
        np.testing.assert_allclose(sa.embeddings(), sb.embeddings(), atol=2e-3, equal_nan=True)
