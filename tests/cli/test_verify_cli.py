"""``napari-conch verify``: one line per store, exit 0 healthy/repaired, 1 damaged, 2 errors;
``napari-conch info`` on a store whose zarr.json is damaged."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from tests.engine.store.test_embedding_store import SHAPE, make, unit_vectors

ALL = SHAPE[0] * SHAPE[1]


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "s.zarr"
    rows, cols = np.divmod(np.arange(ALL), SHAPE[1])
    with make(path) as store:
        store.write_embeddings(rows, cols, unit_vectors(ALL))
    return path


def damage(path):
    chunk = path / "embeddings" / "c" / "1" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[5] ^= 0xFF
    chunk.write_bytes(bytes(data))


def test_healthy_store_is_one_line_and_exit_0(store_path, capsys):
    assert main(["verify", str(store_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{store_path}: healthy: 0 pending, {ALL} done, 0 failed, 0 background; "
                   "checksummed"]  # fmt: skip


def test_damaged_store_exit_1_then_repair_exit_0(store_path, capsys):
    damage(store_path)
    assert main(["verify", str(store_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith(f"{store_path}: damaged: 64 tile(s) (row 16 col 0, row 16 col 1")
    assert "embeddings: 1 chunk(s) (checksum mismatch)" in out[0]
    assert out[0].endswith(f"repair with: napari-conch verify --repair {store_path}")
    assert main(["verify", "--repair", str(store_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{store_path}: repaired: 64 tile(s)") and not captured.err
    status = EmbeddingStore.open(store_path).status()
    assert (status[16:, :16] == TileStatus.PENDING).all() and status.sum() == ALL - 64
    assert main(["verify", str(store_path)]) == 0


def test_several_stores_exit_with_the_worst(store_path, tmp_path, capsys):
    other = tmp_path / "other.zarr"
    make(other).close()
    damage(store_path)
    assert main(["verify", str(other), str(store_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and ": healthy:" in lines[0] and ": damaged:" in lines[1]
    assert main(["verify", str(other), str(tmp_path / "nothing.zarr")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"napari-conch verify: error: {tmp_path / 'nothing.zarr'}: no such file or folder"
    )


def test_not_a_store_is_exit_2_in_one_line(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["verify", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"napari-conch verify: error: {folder}: not an embedding store (no zarr.json)\n"


def test_damaged_metadata_cannot_be_repaired(store_path, capsys):
    (store_path / "zarr.json").write_text('{"zarr_format": 3, "node_')
    assert main(["verify", "--repair", str(store_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"napari-conch verify: error: {store_path}: damaged store: zarr.json cannot be read "
        "(not valid JSON); it cannot be repaired: delete the store and embed the slide again"
    )


def test_info_on_a_store_with_a_damaged_zarr_json_says_so(store_path, capsys):
    (store_path / "zarr.json").write_bytes(b"\x00\xff garbage")
    assert main(["info", str(store_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "damaged store: zarr.json cannot be read" in err
    assert "not a zarr array or group" not in err


def test_reading_commands_print_the_damage_as_one_warning_line(store_path, capsys):
    from napari_conch.cli import _one_line_warnings

    damage(store_path)

    with _one_line_warnings("napari-conch test"):
        EmbeddingStore.open(store_path).embeddings()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"napari-conch test: warning: {store_path}: damaged store: 64 tile")


@pytest.mark.slow
def test_repair_of_a_store_held_by_another_writer_is_exit_2(store_path, capsys):
    from tests.engine.store.test_lock import HOLDER, python

    proc = python(HOLDER, str(store_path))
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert main(["verify", "--repair", str(store_path)]) == 2
        err = capsys.readouterr().err
        assert f"is being written by pid {proc.pid}" in err and err.count("\n") == 1
        assert main(["verify", str(store_path)]) == 0  # checking needs no lock
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_verify_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "verify" in capsys.readouterr().out


def test_deleted_status_chunk_is_damaged_not_pending(store_path, capsys):
    """It said ``healthy: 400 pending, 0 done``: a deleted status chunk is damage."""
    (store_path / "status" / "c" / "0" / "0").unlink()
    assert main(["verify", str(store_path)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{store_path}: damaged: {ALL} tile(s)")
    assert "status: 1 chunk(s) (missing)" in line and "verify --repair" in line
    assert main(["verify", "--repair", str(store_path)]) == 0
    assert capsys.readouterr().out.startswith(f"{store_path}: repaired: {ALL} tile(s)")
    assert main(["verify", str(store_path)]) == 0
    assert f"healthy: {ALL} pending, 0 done" in capsys.readouterr().out


def test_swapped_chunks_are_damaged(store_path, capsys):
    a = store_path / "embeddings" / "c" / "0" / "0" / "0"
    b = store_path / "embeddings" / "c" / "1" / "0" / "0"
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)
    assert main(["verify", str(store_path)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert "damaged" in line and "not the one written there" in line
