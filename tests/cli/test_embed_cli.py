"""``napari-conch embed`` end to end on the real SVS with the tiny model."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.cli.embed import ProgressBar
from napari_conch.engine.options import DEFAULTS
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from tests.cli.conftest import refused


def embed_args(svs_path, tiny_checkpoint, store_dir, *extra) -> list[str]:
    ckpt, config = tiny_checkpoint
    return [
        "embed", str(svs_path), "--model", str(ckpt), "--config", str(config),
        "--level", "0", "--tile-size", "256", "--batch-size", "16", "--device", "cpu",
        "--store", str(store_dir), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_embed_writes_a_store_and_prints_its_path(tmp_path, svs_path, tiny_checkpoint, capsys):
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path)) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    store = EmbeddingStore.open(Path(out[0]))
    assert store.path.parent == tmp_path
    status = store.status()
    assert ((status == TileStatus.DONE) == store.tissue()).all() and store.tissue().any()
    # the second run finds the same store and has nothing left to do
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path)) == 0
    assert capsys.readouterr().out.strip() == out[0]
    assert EmbeddingStore.open(out[0]).attrs["last_run"]["computed"] == 0


def test_missing_slide_is_one_clear_line(tmp_path, tiny_checkpoint, capsys):
    missing = tmp_path / "nope.svs"
    assert main(embed_args(missing, tiny_checkpoint, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"napari-conch embed: error: {missing}: no such file or folder"


def test_an_empty_slide_name_is_said_not_taken_for_the_current_folder(
    tmp_path, tiny_checkpoint, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # Path("") is "."
    assert main(embed_args("", tiny_checkpoint, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err == "napari-conch embed: error: no slide path given (an empty name): " + (
        "give a slide file or zarr folder"
    )


def test_level_and_mpp_are_exclusive(tmp_path, svs_path, tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as info:
        main(embed_args(svs_path, tiny_checkpoint, tmp_path, "--mpp", "1.0"))
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_embed_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--scheduler", "--min-tissue", "--store", "--tile-size"):
        assert option in text


@pytest.mark.slow
def test_second_run_says_nothing_to_compute(tmp_path, svs_path, tiny_checkpoint, capsys):
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path, "--quiet")) == 0
    capsys.readouterr()
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path)) == 0
    out, err = capsys.readouterr()
    store = EmbeddingStore.open(out.strip())
    done = store.counts()["done"]
    assert err.strip() == (
        f"napari-conch embed: {store.path.name}: nothing to compute: {done} tiles already embedded"
    )
    assert "tiles/s" not in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-size", "0", "argument --batch-size: 0: must be at least 1"),
        ("--min-tissue", "2", "argument --min-tissue: 2: must be between 0 and 1"),
        ("--num-readers", "0", "argument --num-readers: 0: must be at least 1"),
        ("--tile-size", "100000", "argument --tile-size: 100000: must be between 1 and 8192"),
        ("--cluster-timeout", "0", "--cluster-timeout 0.0: must be greater than 0"),
    ],
)
def test_bad_values_are_refused_before_anything_is_created(
    tmp_path, svs_path, tiny_checkpoint, capsys, option, value, message
):
    store_dir = tmp_path / "stores"
    argv = embed_args(svs_path, tiny_checkpoint, store_dir, option, value)
    assert message in refused(main, argv, capsys)
    assert not store_dir.exists()


def test_defaults_come_from_run_options():
    from napari_conch.cli import build_parser
    from napari_conch.cli.embed import run_options

    args = build_parser().parse_args(["embed", "slide.svs"])
    assert run_options(args) == DEFAULTS


def test_a_glass_slide_is_an_error_with_the_reason(tmp_path, tiny_checkpoint, capsys):
    import numpy as np
    import tifffile

    glass = tmp_path / "glass.tif"
    tifffile.imwrite(glass, np.full((300, 400, 3), 245, np.uint8))
    args = embed_args(glass, tiny_checkpoint, tmp_path / "stores", "--tile-size", "64")
    assert main([*args, "--slide-mpp", "0.5"]) == 2  # stated: no note about the missing MPP
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "glass: no tissue found at min_tissue 0.25" in err and "--min-tissue" in err


class NaNForSomeTiles:
    """A loaded model whose embedding of every third tile is NaN."""

    def __init__(self, model):
        self._model, self.seen = model, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def embed_images(self, tiles):
        out = self._model.embed_images(tiles).clone()
        for i in range(len(tiles)):
            if (self.seen + i) % 3 == 0:
                out[i] = float("nan")
        self.seen += len(tiles)
        return out


@pytest.mark.slow
def test_failed_tiles_exit_1_with_count_and_reason_last(
    tmp_path, svs_path, tiny_checkpoint, capsys, monkeypatch
):
    import napari_conch.engine.embed as engine

    load = engine.load_run_model
    monkeypatch.setattr(engine, "load_run_model", lambda *a, **k: NaNForSomeTiles(load(*a, **k)))
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path)) == 1
    out, err = capsys.readouterr()
    store = EmbeddingStore.open(out.strip())
    failed = store.counts()["failed"]
    assert failed > 0 and store.counts()["done"] > 0
    assert err.strip().splitlines()[-1] == (
        f"napari-conch embed: {store.path.name}: {failed} tiles failed: "
        f"non-finite embedding ({failed})"
    )
    # a healthy model finishes the failed tiles: exit 0
    monkeypatch.undo()
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path, "--quiet")) == 0
    assert EmbeddingStore.open(out.strip()).counts()["failed"] == 0


def test_tiles_left_pending_are_not_a_success(
    tmp_path, svs_path, tiny_checkpoint, capsys, monkeypatch
):
    """A run that ends with tissue tiles neither done nor failed exits 1 and says so."""
    from napari_conch.cli.embed import LocalRunner
    from napari_conch.engine.progress import EmbedSummary

    def stopped_early(self, slide, bar):
        return EmbedSummary(tmp_path / "s.zarr", total=10, done=7, computed=7, failed_tiles=[],
                            background=0, cancelled=False, elapsed_s=1.0)  # fmt: skip

    monkeypatch.setattr(LocalRunner, "embed", stopped_early)
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1] == "napari-conch embed: s.zarr: 3 tissue tiles not embedded (run again to resume)"
    )


def test_several_slides_go_on_after_a_bad_one(tmp_path, svs_path, tiny_checkpoint, capsys):
    missing = tmp_path / "missing.svs"
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"not a slide at all")
    argv = embed_args(svs_path, tiny_checkpoint, tmp_path / "stores")
    argv[1:2] = [str(missing), str(broken), str(svs_path)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    (store,) = out.strip().splitlines()  # the good slide's store is reported
    assert EmbeddingStore.open(store).counts()["pending"] == 0
    lines = err.strip().splitlines()
    assert lines[0] == f"napari-conch embed: error: {missing}: no such file or folder"
    assert lines[1].startswith("napari-conch embed: error: ") and "broken.svs" in lines[1]
    assert (
        lines[-1]
        == "napari-conch embed: 1 of 3 slides complete, 2 not done (see the error lines above)"
    )
    assert len(lines) == 3


def test_an_unreadable_slide_is_said_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """The slide is opened first: its error comes at once, not after seconds of loading."""
    import napari_conch.engine.embed as engine

    def no_model(*_a, **_k):
        raise AssertionError("the model was loaded for a slide that cannot be read")

    monkeypatch.setattr(engine, "load_run_model", no_model)
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"not a slide at all")
    args = ["embed", str(broken), "--model", "demo", "--quiet", "--store", str(tmp_path / "s")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("napari-conch embed: error: ") and "broken.svs" in err[0]
    assert "model was loaded" not in "\n".join(err)


def test_model_that_cannot_load_stops_at_once(tmp_path, svs_path, tiny_checkpoint, capsys):
    argv = embed_args(svs_path, tiny_checkpoint, tmp_path / "stores")
    argv[1:2] = [str(svs_path), str(svs_path)]
    argv[argv.index("--model") + 1] = str(tmp_path / "nope.bin")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "nope.bin" in err[0]  # one line for the model, then the summary
    assert err[1].endswith("0 of 2 slides complete, 2 not done (see the error lines above)")


def test_no_model_is_one_line_before_any_slide(tmp_path, svs_path, capsys, monkeypatch):
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    assert main(["embed", str(svs_path), str(svs_path), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("napari-conch embed: error: no model given")
    assert not (tmp_path / "s").exists()


def test_a_store_folder_that_is_a_file_is_one_line(tmp_path, svs_path, tiny_checkpoint, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(embed_args(svs_path, tiny_checkpoint, blocker / "stores")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open the store" in err and str(blocker) in err


def test_a_full_disk_during_embed_is_one_line(
    tmp_path, svs_path, tiny_checkpoint, capsys, monkeypatch
):
    """ENOSPC injected into the store's chunk writes after two batches (written one by one
    here; the grouped writes of CLI runs fail the same way: test_embed_grouped_writes.py)."""
    monkeypatch.setattr("napari_conch.engine.embed.WRITE_EVERY_S", 0.0)
    real = EmbeddingStore.write_embeddings
    calls = []

    def write(self, rows, cols, values):
        calls.append(len(rows))
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / "embeddings"))
        real(self, rows, cols, values)

    monkeypatch.setattr(EmbeddingStore, "write_embeddings", write)
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path, "--batch-size", "4")) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "cannot write the store" in err and "No space left on device" in err
    monkeypatch.undo()
    (path,) = tmp_path.glob("*.zarr")
    store = EmbeddingStore.open(path)
    assert store.counts()["done"] == 8  # the two batches written before stay, resumable
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path, "--quiet")) == 0


def test_scheduler_that_is_not_an_address_is_one_line(tmp_path, svs_path, tiny_checkpoint, capsys):
    pytest.importorskip("distributed", reason="dask.distributed is an optional extra")
    argv = embed_args(svs_path, tiny_checkpoint, tmp_path, "--scheduler", "notanaddress")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("napari-conch embed: error: scheduler notanaddress: cannot connect")
    import dask.array

    # the failed client leaves dask's default scheduler as it was: local work still computes
    assert dask.config.get("scheduler", None) != "dask.distributed"
    assert int(dask.array.ones(4).sum().compute()) == 4


def test_cluster_without_workers_gives_up_after_the_timeout(
    tmp_path, svs_path, tiny_checkpoint, capsys
):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is optional")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        argv = embed_args(
            svs_path, tiny_checkpoint, tmp_path, "--scheduler", cluster.scheduler_address,
            "--cluster-timeout", "1",
        )  # fmt: skip
        argv[1:2] = [str(svs_path), str(svs_path)]
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no worker for 1 s (--cluster-timeout)" in err[0]
    assert err[-1].endswith("0 of 2 slides complete, 2 not done (see the error lines above)")
    assert len(err) == 2  # the lost cluster stops the run: no line per remaining slide


def test_cluster_that_cannot_load_the_model_stops_at_once(
    tmp_path, svs_path, tiny_checkpoint, capsys
):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is optional")
    argv = embed_args(svs_path, tiny_checkpoint, tmp_path / "stores")
    argv[1:2] = [str(svs_path), str(svs_path)]
    argv[argv.index("--model") + 1] = str(tmp_path / "nope.bin")
    with distributed.LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        assert main([*argv, "--scheduler", cluster.scheduler_address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "nope.bin" in err[0]  # the worker's error, said once
    assert err[1].endswith("0 of 2 slides complete, 2 not done (see the error lines above)")
    assert not (tmp_path / "stores").exists()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def event(done, total, failed=0, phase="embed"):
    return SimpleNamespace(done=done, total=total, failed=failed, phase=phase)


def test_progress_bar_is_tqdm_on_a_terminal_only():
    stream = FakeTerminal()
    bar = ProgressBar(stream)
    bar.start("slide.svs")
    bar.update(event(5, 10))
    bar.update(event(9, 10, failed=1))
    bar.finish()
    text = stream.getvalue()
    assert text.endswith("\n") and "slide.svs" in text
    assert "10/10" in text and "failed=1" in text and "tile/s" in text
    quiet = io.StringIO()  # not a terminal: nothing drawn
    ProgressBar(quiet).update(event(1, 2))
    assert quiet.getvalue() == ""
    off = FakeTerminal()  # --quiet
    ProgressBar(off, enabled=False).update(event(1, 2))
    assert off.getvalue() == ""


def test_a_slow_tissue_search_has_its_own_bar(monkeypatch):
    from napari_conch.cli import embed as cli_embed

    quick = FakeTerminal()  # under the delay: nothing drawn for the tissue search
    bar = ProgressBar(quick)
    bar.start("slide.svs")
    for done in range(4):
        bar.update(event(done, 3 + (done > 1), phase="tissue"))
    bar.finish()
    assert quick.getvalue() == ""
    monkeypatch.setattr(cli_embed, "TISSUE_BAR_DELAY_S", 0.0)
    slow = FakeTerminal()
    bar = ProgressBar(slow)
    bar.start("slide.svs")
    bar.update(event(0, 4, phase="tissue"))
    bar.update(event(2, 4, phase="tissue"))
    bar.update(event(2, 5))
    bar.finish()
    text = slow.getvalue()
    assert text.startswith("\rslide.svs: finding tissue   0%|") and "tile" not in text[:40]
    assert "2/5" in text and "tile/s" in text  # then the tiles' bar, as before


def test_progress_bar_draws_nothing_when_nothing_is_left():
    stream = FakeTerminal()
    bar = ProgressBar(stream)
    bar.start("slide.svs")
    bar.update(event(7, 7))
    bar.finish()
    assert stream.getvalue() == ""


@pytest.mark.slow
def test_a_damaged_store_is_repaired_with_one_warning_line(tmp_path, capsys):
    """A flipped byte in an embeddings chunk: the next embed says so once and recomputes."""
    from tests.engine.store.test_repair_run import write_small_slide

    slide = write_small_slide(tmp_path / "small.tif")
    argv = ["embed", str(slide), "--model", "demo", "--device", "cpu", "--quiet"]
    argv += ["--store", str(tmp_path / "stores")]
    assert main(argv) == 0
    path = Path(capsys.readouterr().out.strip())
    done = EmbeddingStore.open(path).counts()["done"]
    chunk = path / "embeddings" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0x55
    chunk.write_bytes(bytes(data))
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(path)
    (line,) = err.strip().splitlines()
    assert line.startswith(f"napari-conch embed: warning: {path}") and "repaired" in line
    assert EmbeddingStore.open(path).attrs["last_run"]["computed"] == done


def test_a_truncated_tiff_is_one_line_without_tifffiles_own_errors(tmp_path, capsys, caplog):
    import numpy as np

    from tests.slide.damage import truncated_pyramid

    image = np.random.default_rng(0).integers(0, 255, (512, 384, 3), dtype=np.uint8)
    slide = truncated_pyramid(image, tmp_path / "cut.tif", 0.3)  # tifffile logs its IFD errors
    args = ["embed", str(slide), "--model", "demo", "--device", "cpu", "--quiet"]
    args += ["--slide-mpp", "0.5"]  # stated: no note about the missing MPP
    code = main([*args, "--store", str(tmp_path / "stores"), "--min-tissue", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "cut.tif: cannot read level 0" in err[0], err
    assert not [r for r in caplog.records if r.name == "tifffile"]  # said once, by us


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--wait", "-1"], "argument --wait: -1: must be at least 0"),
        (["--wait", "nan"], "argument --wait: nan: expected a finite number"),
        (["--min-tissue", "nan"], "argument --min-tissue: nan: expected a finite number"),
        (["--num-readers", "0"], "argument --num-readers: 0: must be at least 1"),
        (["--slide-mpp", "inf"], "argument --slide-mpp: inf: expected a finite number"),
    ],
)
def test_nonsense_numbers_are_refused_where_they_are_parsed(
    tmp_path, svs_path, tiny_checkpoint, capsys, extra, words
):
    """``--wait -1`` and ``--wait nan`` were accepted (the slide embedded, exit 0)."""
    line = refused(main, embed_args(svs_path, tiny_checkpoint, tmp_path, *extra), capsys)
    assert line == f"napari-conch embed: error: {words} (see napari-conch embed --help)"
    assert list(tmp_path.iterdir()) == []


def test_wait_without_a_number_and_inf_mean_for_ever():
    from napari_conch.cli import build_parser

    parser = build_parser()
    for extra in (["--wait"], ["--wait", "inf"]):
        args = parser.parse_args(["embed", "slide.svs", *extra])
        assert args.wait == float("inf")


@pytest.mark.slow
def test_a_tiff_claiming_4e9_by_3e9_px_leaves_no_store(tmp_path, tiny_checkpoint, capsys):
    """It ended in ArrayMemoryError (666 TiB) with a store folder left behind."""
    from tests.slide.forged import tiff_claiming

    huge = tiff_claiming(tmp_path / "huge.tif", 4_000_000_000, 3_000_000_000)
    stores = tmp_path / "stores"
    line = refused(main, embed_args(huge, tiny_checkpoint, stores), capsys)
    assert line.startswith(f"napari-conch embed: error: {huge}: the file says its image is ")
    assert not stores.exists()


def test_a_fifo_named_tif_is_refused_not_waited_on(tmp_path, tiny_checkpoint, capsys):
    """``embed pipe.tif`` waited for a writer for ever."""
    from tests.slide.forged import FifoUnblocker

    fifo = FifoUnblocker(tmp_path / "pipe.tif")
    try:
        line = refused(main, embed_args(fifo.path, tiny_checkpoint, tmp_path / "s"), capsys)
    finally:
        fifo.close()
    assert line == f"napari-conch embed: error: {fifo.path}: not a regular file (a FIFO); " + (
        "give a slide file or zarr folder"
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jpg", "png", "strips.tif"])
def test_a_slide_file_cut_short_fails_its_lost_tiles_never_background(
    tmp_path, svs_path, tiny_checkpoint, capsys, kind
):
    """A JPEG cut in half embedded 14 of its 28 tissue tiles with exit 0 and no word: the rest
    read as grey, i.e. glass. The tiles past the cut are FAILED, counted on the last line."""
    import imagecodecs
    import tifffile

    from napari_conch.slide import make_grid, open_slide, scan_tissue

    nest = svs_path.parent / "hgsc_nest.jpg"
    whole = tmp_path / f"whole.{kind}"
    if kind == "jpg":
        whole.write_bytes(nest.read_bytes())
    else:  # the same pixels as a PNG, or a zlib TIFF of 64-row strips
        image = imagecodecs.imread(nest)
        if kind == "png":
            imagecodecs.imwrite(whole, image)
        else:
            tifffile.imwrite(whole, image, rowsperstrip=64, compression="zlib")
    data = whole.read_bytes()
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[: len(data) // 2])
    argv = embed_args(path, tiny_checkpoint, tmp_path / "stores", "--quiet", "--slide-mpp", "0.5")
    assert main(argv) == 1
    out, err = capsys.readouterr()
    store = EmbeddingStore.open(out.strip())
    status, counts = store.status(), store.counts()
    assert counts["failed"] > 0 and counts["done"] > 0
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"napari-conch embed: {store.path.name}: {counts['failed']} tiles ")
    assert "cut short" in last or "the file ends after" in last
    # every tile that is tissue in the whole file is DONE or FAILED here, never BACKGROUND
    with open_slide(whole) as slide:
        tissue = scan_tissue(
            slide, make_grid(slide, level=0, tile_size=256), DEFAULTS.min_tissue
        ).mask
    lost_as_glass = tissue & (status == TileStatus.BACKGROUND)
    below = np.nonzero(status == TileStatus.FAILED)[0].min()
    assert not lost_as_glass[below:].any()  # past the cut: none (above it: Otsu's own call)
    assert (status[below + 1 :] != TileStatus.DONE).all()


def test_a_tiff_cut_before_its_image_data_is_one_line(tmp_path, svs_path, tiny_checkpoint, capsys):
    """It opened, then every tile FAILED ("4 tiles failed", exit 1)."""
    import tifffile

    tifffile.imwrite(tmp_path / "small.tif", np.full((512, 512, 3), 120, np.uint8))
    cut = tmp_path / "cut.tif"
    cut.write_bytes((tmp_path / "small.tif").read_bytes()[:300])
    argv = embed_args(cut, tiny_checkpoint, tmp_path / "stores", "--quiet", "--slide-mpp", "0.5")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"napari-conch embed: error: {cut}: ")
    assert "the file ends after 300 bytes, before any of its image data" in err[0]
    assert not (tmp_path / "stores").exists() or not any((tmp_path / "stores").iterdir())
