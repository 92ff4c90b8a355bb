"""Environment faults of the CLI's file work: one line, exit status 2, nothing half-written.

Real faulty filesystems (a full tmpfs, a read-only bind mount) where the test can mount them;
the same faults injected as ``OSError`` everywhere else.
"""

from __future__ import annotations

import errno
import os
import re

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from tests.cli.conftest import fill

TILE = 512  # a coarse grid of the SVS: quick to embed


@pytest.fixture(scope="module")
def embedded(svs_path, tiny_checkpoint, tokenizer_path, tmp_path_factory):
    """A store of the SVS and the CLI options naming its model."""
    from napari_conch.engine.embed import embed_slide, open_job

    ckpt, config = tiny_checkpoint
    job = open_job(
        svs_path, ckpt, config=config, tokenizer=tokenizer_path, level=0, tile_size=TILE,
        device="cpu", store_root=tmp_path_factory.mktemp("stores"),
    )  # fmt: skip
    embed_slide(job.slide, job.model, job.grid, job.store, min_tissue=0.1)
    options = ["--model", str(ckpt), "--config", str(config), "--tokenizer", str(tokenizer_path)]
    return job.store.path, [*options, "--device", "cpu"]


def query(embedded, out, *extra) -> list[str]:
    store, options = embedded
    return ["query", str(store), "--prompt", "tumor", "--templates", "none", *options,
            "--out", str(out), *extra]  # fmt: skip


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_query_out_naming_a_folder(embedded, tmp_path, capsys):
    (tmp_path / "map.csv").mkdir()
    assert main(query(embedded, tmp_path / "map.csv")) == 2
    assert one_line(capsys).endswith(
        f"--out {tmp_path / 'map.csv'}: is a folder (give a file name)"
    )


def test_query_out_under_a_file(embedded, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(query(embedded, tmp_path / "file" / "map.csv")) == 2
    assert one_line(capsys).endswith(f"folder {tmp_path / 'file'} is not a folder")


def test_top_tiles_out_naming_a_folder(embedded, tmp_path, capsys):
    store, options = embedded
    (tmp_path / "hits.csv").mkdir()
    argv = [
        "top-tiles",
        str(store),
        "--prompt",
        "tumor",
        *options,
        "--out",
        str(tmp_path / "hits.csv"),
    ]
    assert main(argv) == 2
    assert "is a folder" in one_line(capsys)


@pytest.mark.parametrize("scale", ["auto", "tile"])
def test_full_disk_during_export_leaves_nothing(embedded, tmp_path, capsys, monkeypatch, scale):
    """ENOSPC injected half-way through the TIFF writer (after its first image is written)."""
    import tifffile

    real_write = tifffile.TiffWriter.write

    def write_half(self, *args, **kwargs):
        real_write(self, *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tifffile.TiffWriter, "write", write_half)
    out = tmp_path / "map.tif"
    assert main([*query(embedded, out), "--map-scale", scale]) == 2
    line = one_line(capsys)
    assert line.startswith(f"napari-conch query: error: cannot write {out} (")
    assert line.endswith("No space left on device)")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


@pytest.mark.parametrize("name", ["map.tif", "map.csv", "map.npy"])
def test_export_to_a_real_full_disk_leaves_nothing(embedded, full_disk, capsys, name):
    fill(full_disk)
    assert main(query(embedded, full_disk / name)) == 2
    assert "No space left on device" in one_line(capsys)
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_export_into_a_read_only_folder(embedded, tmp_path, read_only, capsys):
    folder = read_only(tmp_path)
    assert main(query(embedded, folder / "map.csv")) == 2
    assert "Read-only file system" in one_line(capsys)
    assert not (folder / "map.csv").exists()


def embed_args(svs_path, tiny_checkpoint, store_dir, *extra) -> list[str]:
    ckpt, config = tiny_checkpoint
    return [
        "embed", str(svs_path), "--model", str(ckpt), "--config", str(config), "--level", "0",
        "--tile-size", "64", "--batch-size", "16", "--device", "cpu", "--store", str(store_dir),
        "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_embed_on_a_real_full_disk_keeps_what_was_written(
    svs_path, tiny_checkpoint, full_disk, capsys
):
    filler = fill(full_disk, leave=40_000)  # room for the store and a few chunks
    assert main(embed_args(svs_path, tiny_checkpoint, full_disk / "stores")) == 2
    line = one_line(capsys)
    # which write meets the full disk depends on the bytes left (the store's layout moves it)
    assert re.search(r"\.zarr: cannot (write|update) (the store|embeddings|the tissue)", line), line
    assert "No space left on device" in line
    (path,) = (full_disk / "stores").glob("*.zarr")
    store = EmbeddingStore.open(path)
    done = store.status() == TileStatus.DONE
    assert np.isfinite(store.embeddings()[done]).all()
    filler.unlink()  # space again: the next run finishes what is missing
    assert main(embed_args(svs_path, tiny_checkpoint, full_disk / "stores")) == 0
    store = EmbeddingStore.open(path)
    assert ((store.status() == TileStatus.DONE) == store.tissue()).all()


@pytest.mark.slow
def test_embed_into_a_read_only_store_is_one_line(
    svs_path, tiny_checkpoint, tmp_path, read_only, capsys
):
    from napari_conch.engine.embed import embed_slide, open_job

    ckpt, config = tiny_checkpoint
    job = open_job(
        svs_path, ckpt, config=config, level=0, tile_size=64, device="cpu", store_root=tmp_path
    )
    embed_slide(job.slide, job.model, job.grid, job.store, batch_size=16, cancel=lambda: True)
    before = job.store.status().copy()
    read_only(tmp_path)
    assert main(embed_args(svs_path, tiny_checkpoint, tmp_path)) == 2
    line = one_line(capsys)
    assert str(job.store.path) in line and "Read-only file system" in line
    np.testing.assert_array_equal(EmbeddingStore.open(job.store.path).status(), before)


def test_demo_out_naming_a_file(tmp_path, capsys):
    target = tmp_path / "out.txt"
    target.write_text("x")
    assert main(["demo", "--out", str(target), "--quiet"]) == 2
    assert one_line(capsys) == f"napari-conch demo: error: --out {target}: is a file, not a folder"


def test_demo_out_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "file" / "out"), "--quiet"]) == 2
    line = one_line(capsys)
    assert line.startswith("napari-conch demo: error: ") and str(tmp_path / "file") in line


def test_a_stray_oserror_is_one_line_and_debug_keeps_the_traceback(monkeypatch, capsys):
    import napari_conch.cli.info as info

    def denied(path, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(info, "describe_path", denied)
    assert main(["info", "/some/slide.svs"]) == 2
    assert one_line(capsys) == "napari-conch info: error: /some/slide.svs: Permission denied"
    with pytest.raises(PermissionError):
        main(["--debug", "info", "/some/slide.svs"])


class NaNModel:
    """A loaded model whose embeddings are all NaN."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def embed_images(self, tiles):
        return self._model.embed_images(tiles) * float("nan")


@pytest.fixture
def empty_stores(svs_path, tiny_model, tmp_path):
    """Stores with no embedded tile: never embedded, no tissue found, every tile failed."""
    import tifffile

    from napari_conch.engine.embed import embed_slide, open_store
    from napari_conch.errors import InputError
    from napari_conch.slide import make_grid, open_slide

    slide = open_slide(svs_path)
    grid = make_grid(slide, level=0, tile_size=TILE)
    never = open_store(slide, tiny_model, grid, tmp_path / "never")
    failed = open_store(slide, tiny_model, grid, tmp_path / "failed")
    embed_slide(slide, NaNModel(tiny_model), grid, failed)
    tifffile.imwrite(tmp_path / "glass.tif", np.full((300, 400, 3), 245, np.uint8))
    glass = open_slide(tmp_path / "glass.tif")
    glass_grid = make_grid(glass, level=0, tile_size=64)
    background = open_store(glass, tiny_model, glass_grid, tmp_path / "glass")
    with pytest.raises(InputError, match="no tissue"):
        embed_slide(glass, tiny_model, glass_grid, background, min_tissue=0.3)
    return {"never": never.path, "failed": failed.path, "glass": background.path}


@pytest.mark.parametrize("command", ["query", "top-tiles"])
def test_a_store_without_embedded_tiles_says_why(empty_stores, tmp_path, capsys, command):
    def run(store):
        argv = [command, str(store), "--prompt", "tumor"]
        argv += ["--out", str(tmp_path / "map.csv")]
        assert main(argv) == 2
        return one_line(capsys)

    assert run(empty_stores["never"]).endswith("no embedded tiles yet (run napari-conch embed)")
    line = run(empty_stores["failed"])
    assert "no embedded tiles: all" in line and "tissue tiles failed when embedded" in line
    assert "(non-finite embedding (" in line and "run napari-conch embed again" in line
    line = run(empty_stores["glass"])
    assert "napari-conch embed found no tissue at --min-tissue 0.3" in line
    assert "lower --min-tissue" in line and "(run napari-conch embed)" not in line


@pytest.mark.parametrize("command", ["query", "top-tiles"])
@pytest.mark.parametrize("what", ["embeddings", "status"])
def test_a_store_whose_tiles_are_all_damaged_says_so_and_how_to_repair(
    embedded, tmp_path, capsys, command, what
):
    """It said "the last embed run ended before any tile was done (stopped)"."""
    import shutil

    path = tmp_path / embedded[0].name
    shutil.copytree(embedded[0], path)
    chunks = [f for f in (path / what / "c").rglob("*") if f.is_file()]
    assert chunks
    for chunk in chunks:  # every chunk flipped in its middle: the checksums fail
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    argv = [command, str(path), "--prompt", "tumor", "--out", str(tmp_path / "map.csv")]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"napari-conch {command}: error: {path}: no embedded tiles: ")
    assert "are damaged on disk [" in last and "checksum mismatch" in last
    assert f"repair with napari-conch verify --repair {path}, then run napari-conch embed" in last
    assert "before any tile was done" not in last


@pytest.mark.slow
def test_a_cut_tiff_is_one_line_without_tifffiles_log(tmp_path, svs_path):
    # tifffile logs "invalid offset to first page" before our error: only the error is shown.
    # In a child process: pytest's own log handlers would keep the log line off stderr here.
    import subprocess
    import sys

    cut = tmp_path / "cut.svs"
    cut.write_bytes(svs_path.read_bytes()[:300_000])
    argv = ["embed", str(cut), "--model", "demo", "--store", str(tmp_path / "s"), "--quiet"]
    code = f"import sys; from napari_conch.cli import main; sys.exit(main({argv!r}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    err = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(err) == 1, err
    assert err[0].startswith("napari-conch embed: error: ") and "cannot read as TIFF" in err[0]


@pytest.mark.parametrize("scale", ["0", "big", "-2"])
def test_a_bad_map_scale_is_one_line_and_writes_nothing(embedded, tmp_path, capsys, scale):
    out = tmp_path / "map.tif"
    assert main([*query(embedded, out), "--map-scale", scale]) == 2
    assert f"map scale {scale!r}" in one_line(capsys)
    assert list(tmp_path.iterdir()) == []
