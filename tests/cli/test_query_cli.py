"""``napari-conch query`` on a store embedded from the real SVS with the tiny model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from napari_conch.cli import main
from napari_conch.engine.export.map_tiff import open_map
from napari_conch.engine.export.writers import read_tiff_metadata
from tests.cli.conftest import refused

TILE = 256


@pytest.fixture(scope="module")
def embedded(svs_path, tiny_checkpoint, tokenizer_path, tmp_path_factory):
    """A store of the SVS at level 0, 256 px tiles (a coarse grid), and the model options."""
    from napari_conch.engine.embed import embed_slide, open_job

    ckpt, config = tiny_checkpoint
    root = tmp_path_factory.mktemp("stores")
    job = open_job(
        svs_path,
        ckpt,
        config=config,
        tokenizer=tokenizer_path,
        level=0,
        tile_size=TILE,
        device="cpu",
        store_root=root,
    )
    embed_slide(job.slide, job.model, job.grid, job.store, batch_size=16)
    options = ["--model", str(ckpt), "--config", str(config), "--tokenizer", str(tokenizer_path)]
    return job, [*options, "--device", "cpu"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_score_equals_the_model_on_that_region(embedded, tiny_model, tmp_path, capsys):
    job, options = embedded
    out = tmp_path / "scores.csv"
    argv = ["query", str(job.store.path), "--prompt", "tumor", "--prompt", "normal skin"]
    assert main([*argv, "--templates", "none", *options, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    rows = read_csv(out)
    done = int((job.store.status() == 1).sum())
    assert 0 < len(rows) == done < job.grid.rows * job.grid.cols  # glass is not scored
    texts = tiny_model.embed_texts(["tumor", "normal skin"]).numpy()
    for line in rows[:: max(1, len(rows) // 4)]:
        x0, y0, x1, y1 = (int(float(line[k])) for k in ("x0", "y0", "x1", "y1"))
        assert (x1 - x0, y1 - y0) == (TILE, TILE)
        region = job.slide.read_region(0, x0, y0, TILE, TILE)
        image = tiny_model.embed_images(region[None]).numpy()[0]
        cosine = texts @ image
        assert float(line["tumor"]) == pytest.approx(cosine[0], abs=3e-3)  # float16 store
        assert float(line["normal skin"]) == pytest.approx(cosine[1], abs=3e-3)
        logits = tiny_model.logit_scale * cosine
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert float(line["prob_tumor"]) == pytest.approx(probs[0], abs=3e-3)
        assert int(line["label"]) == int(np.argmax(probs)) + 1


def test_every_format_reads_back(embedded, tmp_path):
    job, options = embedded
    outs = [tmp_path / f"map.{ext}" for ext in ("tif", "npy", "geojson", "csv")]
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps({"classnames": {"tumor": ["tumor", "carcinoma"], "stroma": ["stroma"]}})
    )
    argv = ["query", str(job.store.path), "--prompts", str(prompts), "--background", "glass"]
    argv += [*options, "--threshold", "0.2"]
    for out in outs:
        argv += ["--out", str(out)]
    assert main(argv) == 0
    placed = open_map(outs[0])  # the default: a pyramidal OME-TIFF laid over the slide
    data = placed.cell_values()
    meta = read_tiff_metadata(outs[0])
    assert data.shape == (4, *meta["shape"]) == (4, job.grid.rows, job.grid.cols)
    assert placed.pixel_size == 8 and meta["map"]["slide_shape_level0"] == list(job.slide.shape)
    assert meta["channels"] == ["prob_tumor", "prob_stroma", "prob_glass", "label"]
    assert meta["mpp_level0"] == pytest.approx(0.499, abs=1e-3)
    assert meta["cell_size_level0"] == TILE and meta["store"] == str(job.store.path)
    np.testing.assert_array_equal(np.load(outs[1]), data)
    labels = data[3]
    assert set(np.unique(labels)) <= {0.0, 1.0, 2.0}
    assert np.all(labels[np.isnan(data[0])] == 0)  # glass/background tiles: label 0, prob NaN
    collection = json.loads(outs[2].read_text())
    names = {f["properties"]["classification"]["name"] for f in collection["features"]}
    assert names == {{1: "tumor", 2: "stroma"}[int(v)] for v in np.unique(labels) if v > 0}
    for feature in collection["features"]:
        for x, y in feature["geometry"]["coordinates"][0]:
            assert x % TILE == 0 and y % TILE == 0  # level-0 pixels on the tile lattice
    rows = read_csv(outs[3])
    assert "prob_glass" in rows[0] and "glass" in rows[0]
    assert {int(r["label"]) for r in rows} <= {0, 1, 2}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt", "a", "--out", "x.png"], "unknown extension"),
        (["--out", "x.csv"], "--prompt"),
        (["--prompt", "a", "--out", "x.geojson"], "--threshold"),
        (["--prompt", "a", "--prompt", "a", "--out", "x.csv"], "more than once"),
        (["--prompts", "missing.json", "--out", "x.csv"], "does not exist"),
    ],
)
def test_user_mistakes_are_one_line(tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["query", str(tmp_path / "store.zarr"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("napari-conch query: error:")


def test_missing_store(tmp_path, capsys):
    out = str(tmp_path / "x.csv")
    assert main(["query", str(tmp_path / "nope.zarr"), "--prompt", "a", "--out", out]) == 2
    assert "not an embedding store" in capsys.readouterr().err


@pytest.mark.slow
def test_overlapping_grid_gives_the_cell_average(
    svs_path, tiny_checkpoint, tokenizer_path, tmp_path
):
    """Stride = tile / 2: the TIFF is the per-cell mean of every tile covering each cell."""
    from napari_conch.engine.embed import embed_slide, open_job
    from napari_conch.engine.overlap import overlap_average

    ckpt, config = tiny_checkpoint
    job = open_job(
        svs_path, ckpt, config=config, tokenizer=tokenizer_path, level=0, tile_size=TILE,
        stride=TILE // 2, device="cpu", store_root=tmp_path,
    )  # fmt: skip
    embed_slide(job.slide, job.model, job.grid, job.store, batch_size=32)
    csv_out, tif_out = tmp_path / "s.csv", tmp_path / "m.tif"
    argv = ["query", str(job.store.path), "--prompt", "tumor", "--model", str(ckpt)]
    argv += ["--config", str(config), "--tokenizer", str(tokenizer_path), "--device", "cpu"]
    argv += ["--out", str(csv_out)]
    assert main([*argv, "--out", str(tif_out), "--map-scale", "tile"]) == 0
    tiles = np.full(job.grid.shape, np.nan)
    for line in read_csv(csv_out):
        tiles[int(line["row"]), int(line["col"])] = float(line["tumor"])
    cells = tifffile.imread(tif_out)
    meta = read_tiff_metadata(tif_out)
    assert cells.shape == (job.grid.rows + 1, job.grid.cols + 1)
    assert meta["cell_size_level0"] == TILE // 2 and meta["origin_level0_yx"] == [0.0, 0.0]
    np.testing.assert_allclose(cells, overlap_average(tiles, 2), atol=1e-6)
    r, c = np.argwhere(np.isfinite(tiles[:-1, :-1]) & np.isfinite(tiles[1:, 1:]))[0]
    assert cells[r + 1, c + 1] == pytest.approx(np.nanmean(tiles[r : r + 2, c : c + 2]), abs=1e-6)


def test_another_model_is_refused(embedded, tiny_reference, tmp_path, capsys):
    import torch

    job, options = embedded
    state = dict(tiny_reference["state_dict"])
    state["logit_scale"] = state["logit_scale"] + 1.0
    other = tmp_path / "other.bin"
    torch.save(state, other)
    options = [*options]
    options[options.index("--model") + 1] = str(other)
    argv = ["query", str(job.store.path), "--prompt", "tumor", *options]
    assert main([*argv, "--out", str(tmp_path / "x.csv")]) == 2
    assert "fingerprint differs" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_store_remembers_model_config_and_tokenizer(embedded, tmp_path, capsys):
    """Without --model/--config/--tokenizer the query uses what the store recorded."""
    job, _ = embedded
    assert job.store.attrs["model_config"]["embed_dim"] == 32
    out = tmp_path / "map.npy"
    argv = ["query", str(job.store.path), "--prompt", "tumor", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert np.load(out).shape == job.grid.shape


def test_top_tiles_command(embedded, tmp_path, capsys):
    job, options = embedded
    out = tmp_path / "top.csv"
    argv = ["top-tiles", str(job.store.path), "--prompt", "tumor", "-k", "4", *options]
    assert main([*argv, "--out", str(out)]) == 0
    printed = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [int(r["rank"]) for r in printed] == [1, 2, 3, 4]
    scores = [float(r["cosine"]) for r in printed]
    assert scores == sorted(scores, reverse=True)
    assert read_csv(out) == printed
    status = job.store.status()
    assert all(status[int(r["row"]), int(r["col"])] == 1 for r in printed)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--threshold", "nan"], "argument --threshold: nan: expected a finite number"),
        (["--threshold", "2"], "argument --threshold: 2: must be between -1 and 1"),
        (["--prompt", "b", "--background", ""], "background='': name the background class"),
        (["--prompt", "b", "--background", "  "], ": name the background class"),
    ],
)
def test_nonsense_options_are_refused_before_any_work(embedded, tmp_path, capsys, extra, words):
    """``--threshold nan`` and ``--background ''`` were accepted without a word (exit 0)."""
    job, options = embedded
    out = tmp_path / "map.csv"
    argv = ["query", str(job.store.path), "--prompt", "a", *extra, *options, "--out", str(out)]
    line = refused(main, argv, capsys)
    assert line.startswith("napari-conch query: error:") and words in line
    assert not out.exists()


def test_a_prompt_file_nested_100000_deep_is_one_line(embedded, tmp_path, capsys):
    """It ended in a RecursionError from the JSON parser."""
    job, options = embedded
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    argv = ["query", str(job.store.path), "--prompts", str(deep), *options,
            "--out", str(tmp_path / "map.csv")]  # fmt: skip
    assert f"prompt file {deep} is nested 100000 levels deep" in refused(main, argv, capsys)


def test_a_tokenizer_of_another_vocabulary_is_one_line(embedded, tmp_path, capsys):
    """The demo model's tokenizer fits the tiny CONCH-vocabulary model: wrong scores, exit 0."""
    from napari_conch.demo import demo_model_paths

    job, options = embedded
    options = list(options)
    options[options.index("--tokenizer") + 1] = str(demo_model_paths()[2])
    out = tmp_path / "map.csv"
    argv = ["query", str(job.store.path), "--prompt", "a", *options, "--out", str(out)]
    assert "has 877 ids but the model's vocabulary has 32007" in refused(main, argv, capsys)
    assert not out.exists()
