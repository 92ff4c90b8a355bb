"""``napari-conch classify-slides`` on the real fixture slides (SVS, JPEG, PNG), tiny model."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.engine.cohort.csv_paths import resolve_store_reference
from napari_conch.engine.prompts import embed_prompt_sets, load_prompt_set
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from tests.cli.test_region_cli import model_args
from tests.conftest import require_fixture

TOPK = (1, 5, 50)
PROMPTS = {  # CONCH's released form: wrapped in "0"
    "0": {
        "classnames": {"tumor": ["tumor", "carcinoma"], "stroma": ["stroma"], "glass": ["glass"]},
        "templates": ["CLASSNAME.", "an image of CLASSNAME."],
    }
}


def read_csv(path):
    """The rows of a CSV; a ``store`` column as the path it names (from the CSV's folder)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if "store" in row:
            row["store"] = str(resolve_store_reference(row["store"], Path(path).parent))
    return rows


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, svs_path, tiny_checkpoint, tokenizer_path):
    """Three slides in three formats, classified once from the slide files."""
    folder = tmp_path_factory.mktemp("cohort")
    slides = [
        svs_path,
        require_fixture("images/hgsc_nest.jpg"),
        require_fixture("images/ihc.png"),
    ]
    prompts = folder / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    labels = folder / "labels.csv"
    labels.write_text("slide,label\ncmu_small_region,stroma\nhgsc_nest.jpg,tumor\nihc,glass\n")
    evidence = folder / "evidence"
    evidence.mkdir()
    out = folder / "slides.csv"
    argv = ["classify-slides", *map(str, slides), "--prompts", str(prompts)]
    argv += ["--topk", ",".join(map(str, TOPK)), "--out", str(out), "--labels", str(labels)]
    argv += ["--evidence", str(evidence), "--level", "0", "--tile-size", "256"]
    argv += ["--slide-mpp", "0.5", "--store", str(folder / "stores"), "--quiet"]
    argv += model_args(tiny_checkpoint, tokenizer_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    return {
        "argv": argv,
        "status": status,
        "printed": printed.getvalue(),
        "out": out,
        "prompts": prompts,
        "evidence": evidence,
        "folder": folder,
    }


@pytest.mark.slow
def test_classify_slide_files_equals_brute_force(cohort, tiny_model):
    assert cohort["status"] == 0
    printed = cohort["printed"]
    rows = read_csv(cohort["out"])
    assert [r["slide"] for r in rows] == ["cmu_small_region", "hgsc_nest", "ihc"]
    with open(cohort["out"], newline="") as fh:  # stores named from the CSV's folder
        assert all(r["store"].startswith("stores") for r in csv.DictReader(fh))
    names, classes = embed_prompt_sets(tiny_model, load_prompt_set(cohort["prompts"]))
    assert names == ["tumor", "stroma", "glass"]
    for row in rows:
        store = EmbeddingStore.open(row["store"])
        emb = store.embeddings()
        done = np.argwhere(store.status() == TileStatus.DONE)
        assert int(row["tiles"]) == len(done) > 0
        tiles = np.stack([emb[r, c] / np.linalg.norm(emb[r, c]) for r, c in done])
        cosines = tiles @ classes.T  # [N, K] from the store, tile by tile
        for j in TOPK:
            top = -np.sort(-cosines, axis=0)[: min(j, len(cosines))]
            pooled = top.mean(axis=0)
            logits = tiny_model.logit_scale * pooled
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            for k, name in enumerate(names):
                assert float(row[f"score_top{j}_{name}"]) == pytest.approx(pooled[k], abs=2e-5)
                assert float(row[f"prob_top{j}_{name}"]) == pytest.approx(probs[k], abs=2e-5)
            assert row[f"pred_top{j}"] == names[int(np.argmax(pooled))]
    # the PNG has 4 tiles: top-5 and top-50 pool all of them, and the output says so
    assert "note: 4 tiles only; top-5, top-50 pool all 4" in printed
    for j in TOPK:
        assert f"top-{j}: accuracy" in printed and "(3 slides)" in printed
    assert len(list(cohort["evidence"].glob("*.evidence.csv"))) == 3
    assert len(list(cohort["evidence"].glob("*.evidence.geojson"))) == 3


@pytest.mark.slow
def test_second_run_resumes_and_stores_give_the_same_rows(cohort, capsys):
    first = read_csv(cohort["out"])
    assert main(cohort["argv"]) == 0  # slide files again: nothing recomputed
    for row in first:
        assert EmbeddingStore.open(row["store"]).attrs["last_run"]["computed"] == 0
    out2 = cohort["folder"] / "from_stores.csv"
    argv = ["classify-slides", *(r["store"] for r in first), "--prompts", str(cohort["prompts"])]
    argv += ["--topk", ",".join(map(str, TOPK)), "--out", str(out2)]
    assert main(argv) == 0  # stores as they are, model from what they record
    assert read_csv(out2) == first


@pytest.mark.slow
def test_query_and_rank_texts_take_the_wrapped_prompt_file(
    cohort, tmp_path, capsys, svs_path, tiny_checkpoint, tokenizer_path
):
    """CONCH's wrapped prompt files load everywhere prompt sets are accepted."""
    store = read_csv(cohort["out"])[0]["store"]
    out = tmp_path / "map.csv"
    argv = ["query", store, "--prompts", str(cohort["prompts"]), "--out", str(out)]
    assert main(argv) == 0
    assert {"prob_tumor", "prob_stroma", "prob_glass"} <= set(read_csv(out)[0])
    capsys.readouterr()
    box = ["--box", "1200", "800", "1400", "960"]
    argv = ["rank-texts", str(svs_path), *box, "--prompts", str(cohort["prompts"])]
    assert main(argv + model_args(tiny_checkpoint, tokenizer_path)) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and {line.split()[0] for line in table[1:]} == set(
        PROMPTS["0"]["classnames"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--prompts": "one"}, "two or more classes"),
        ({"--out": "missing/slides.csv"}, "does not exist"),
        ({"--topk": "0"}, "--topk"),
        ({"--labels": "nolabels.csv"}, "no such file"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(cohort, tmp_path, capsys, change, message):
    (tmp_path / "one").write_text(json.dumps({"classnames": {"a": ["a"]}}))
    argv = list(cohort["argv"])
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = str(tmp_path / value) if flag != "--topk" else value
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_slide_is_one_line(cohort, tmp_path, capsys):
    argv = ["classify-slides", str(tmp_path / "nope.svs"), "--prompts", str(cohort["prompts"])]
    assert main([*argv, "--out", str(tmp_path / "s.csv"), "--model", "demo"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_failed_tiles_exit_1_after_classifying(cohort, tmp_path, monkeypatch, capsys):
    """A run that could not read some tiles still writes the CSV, then exits 1 saying so."""
    import dataclasses

    from napari_conch.engine.cohort import cluster as cohort_cluster

    real = cohort_cluster.embed_cohort

    def with_a_failed_tile(*args, **kwargs):
        done = real(*args, **kwargs)
        first = dataclasses.replace(done.summaries[0], failed_tiles=[(0, 0, "cannot decode")])
        return dataclasses.replace(done, summaries=[first, *done.summaries[1:]])

    monkeypatch.setattr(cohort_cluster, "embed_cohort", with_a_failed_tile)
    argv = list(cohort["argv"])
    out = tmp_path / "slides.csv"
    argv[argv.index("--out") + 1] = str(out)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "1 tile failed: cannot decode (1)" in err[-1] and "1 slide(s) classified" in err[-1]
    assert len(read_csv(out)) == 3


def test_stores_of_different_models_are_refused(cohort, tmp_path, capsys):
    from tests.engine.cohort.test_search import make_store, random_vectors

    store = read_csv(cohort["out"])[0]["store"]
    dim = EmbeddingStore.open(store).embed_dim
    other = make_store(tmp_path / "other.zarr", random_vectors(2, 2, 0, dim=dim), model="other")
    argv = ["classify-slides", store, str(other.path), "--prompts", str(cohort["prompts"])]
    out = tmp_path / "s.csv"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "another model" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_prompt_file_nested_100000_deep_is_one_line(cohort, tmp_path, capsys):
    """It ended in a RecursionError from the JSON parser."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"classnames": ' + "[" * 100_000 + "]" * 100_000 + "}")
    argv = list(cohort["argv"])
    argv[argv.index("--prompts") + 1] = str(deep)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{deep} is nested 100001 levels deep" in err
