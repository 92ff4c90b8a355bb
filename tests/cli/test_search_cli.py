"""``napari-conch search`` over stores of the real fixture slides (tiny model)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.engine.cohort.csv_paths import resolve_store_reference
from napari_conch.engine.cohort.search import HIT_COLUMNS
from napari_conch.engine.prompts import text_queries
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from tests.cli.conftest import refused
from tests.cli.test_region_cli import model_args
from tests.conftest import require_fixture
from tests.engine.cohort.test_search import make_store, random_vectors


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_checkpoint, tokenizer_path):
    """Stores of two real JPEG slides and the PNG, embedded with the tiny model."""
    from napari_conch.engine.embed import embed

    ckpt, config = tiny_checkpoint
    root = tmp_path_factory.mktemp("search_stores")
    paths = []
    for name in ("hgsc_nest.jpg", "hgsc_stromal_he.jpg", "ihc.png"):
        paths.append(
            embed(
                require_fixture(f"images/{name}"),
                ckpt,
                config=config,
                tokenizer=tokenizer_path,
                level=0,
                tile_size=256,
                device="cpu",
                store_root=root,
            )
        )
    return [EmbeddingStore.open(p) for p in paths]


def read_hits(path):
    """The hits of a CSV, each ``store`` as the path it names (from the CSV's folder)."""
    with open(path, newline="") as fh:
        hits = list(csv.DictReader(fh))
    for hit in hits:
        hit["store"] = str(resolve_store_reference(hit["store"], Path(path).parent))
    return hits


def every_tile(stores, query):
    """Brute force: every DONE tile of every store with its cosine, best first."""
    scored = []
    for store in stores:
        emb = store.embeddings()
        for r, c in np.argwhere(store.status() == TileStatus.DONE):
            v = emb[r, c] / np.linalg.norm(emb[r, c])
            scored.append((float(v @ query), str(store.path.resolve()), int(r), int(c)))
    return sorted(scored, key=lambda t: -t[0])


@pytest.mark.slow
def test_prompt_search_equals_brute_force(stores, tiny_model, tiny_checkpoint, tokenizer_path,
                                          tmp_path, capsys):  # fmt: skip
    out = tmp_path / "hits.csv"
    argv = ["search", *(str(s.path) for s in stores), "--prompt", "tumor", "-k", "12"]
    argv += ["--out", str(out), *model_args(tiny_checkpoint, tokenizer_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == ",".join(HIT_COLUMNS) and len(printed) == 13
    hits = read_hits(out)
    _, query = text_queries(tiny_model, ["tumor"], "conch")
    expected = every_tile(stores, query[0])[:12]
    assert len({h["store"] for h in hits}) >= 1
    for hit, (score, store, r, c) in zip(hits, expected, strict=True):
        assert float(hit["score"]) == pytest.approx(score, abs=1e-5)
        assert (hit["store"], int(hit["row"]), int(hit["col"])) == (store, r, c)
        grid = EmbeddingStore.open(store).grid
        assert tuple(float(hit[k]) for k in ("x0", "y0", "x1", "y1")) == grid.tile_box(r, c)
        assert hit["slide"] in ("hgsc_nest", "hgsc_stromal_he", "ihc")


def test_like_search_finds_the_tile_itself_first(stores, tmp_path, capsys):
    store = stores[1]
    r, c = np.argwhere(store.status() == TileStatus.DONE)[3]
    argv = ["search", *(str(s.path) for s in stores), "--like", f"{store.path}:{r},{c}"]
    assert main([*argv, "-k", "5"]) == 0
    lines = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert (lines[0]["store"], int(lines[0]["row"]), int(lines[0]["col"])) == (
        str(store.path), r, c,
    )  # fmt: skip
    assert float(lines[0]["score"]) == pytest.approx(1.0, abs=1e-5)
    assert len(lines) == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt", "x", "-k", "0"], "argument -k: 0: must be at least 1"),
        (["--like", "nowhere"], "STORE:ROW,COL"),
        (["--prompt", "x", "--out", "/no/such/folder/h.csv"], "does not exist"),
    ],
)
def test_user_mistakes(stores, capsys, extra, message):
    assert message in refused(main, ["search", str(stores[0].path), *extra], capsys)


def test_stores_of_different_models_are_refused(stores, tmp_path, capsys):
    other = make_store(tmp_path / "other.zarr", random_vectors(2, 2, 0, dim=stores[0].embed_dim))
    argv = ["search", str(stores[0].path), str(other.path), "--like", f"{other.path}:0,0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "another model" in err and len(err.splitlines()) == 1
    assert main(["search", str(stores[0].path), str(stores[0].path), "--prompt", "x"]) == 2
    assert "more than once" in capsys.readouterr().err
