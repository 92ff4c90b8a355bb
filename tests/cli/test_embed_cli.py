"""``napari-conch embed`` end to end on the real SVS with the tiny model."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from napari_conch.cli import main
from napari_conch.cli.embed import ProgressBar
from napari_conch.engine.store import EmbeddingStore, TileStatus


def embed_args(svs_path, tiny_checkpoint, store_dir, *extra) -> list[str]:
    ckpt, config = tiny_checkpoint
    return [
        "embed", str(svs_path), "--model", str(ckpt), "--config", str(config),
        "--level", "0", "--tile-size", "256", "--batch-size", "16", "--device", "cpu",
        "--store", str(store_dir), *extra,
    ]  # fmt: skip


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


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def event(done, total, failed=0):
    return SimpleNamespace(
        done=done, total=total, failed=failed, tiles_per_s=12.5, eta_s=3.0,
        fraction=(done + failed) / total,
    )  # fmt: skip


def test_progress_bar_redraws_one_line_on_a_terminal():
    stream = FakeTerminal()
    bar = ProgressBar(stream)
    bar.start("slide.svs")
    bar.update(event(5, 10))
    bar.update(event(10, 10))
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "10/10" in text and "12.5 tiles/s" in text and "slide.svs" in text
    quiet = io.StringIO()  # not a terminal: nothing drawn
    ProgressBar(quiet).update(event(1, 2))
    assert quiet.getvalue() == ""
