"""Result CSVs (slides, hits) name their stores from their own folder: they open from anywhere."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_conch.engine.cohort.classify import classify_store, read_slides_csv, write_slides_csv
from napari_conch.engine.cohort.csv_paths import resolve_store_reference, store_reference
from napari_conch.engine.cohort.search import (
    open_stores,
    read_hits_csv,
    read_store,
    search_stores,
    write_hits_csv,
)
from napari_conch.engine.store.embedding_store import EmbeddingStore
from napari_conch.errors import InputError, StoreError
from tests.engine.cohort.test_search import make_store, random_vectors

SCALE = 50.0


def _column(path: Path, name: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [line[name] for line in csv.DictReader(fh)]


def _project(root: Path, monkeypatch) -> tuple[Path, list]:
    """``root/project``: stores made from inside it by relative paths, as a user types them,
    and a results folder beside them; returns the project folder and the slide results."""
    project = root / "project"
    (project / "results").mkdir(parents=True)
    monkeypatch.chdir(project)
    results = []
    for i in range(2):
        store = make_store(Path("stores") / f"s{i}.zarr", random_vectors(3, 3, i), slide=f"s{i}")
        results.append(classify_store(store, ["x", "y"], random_vectors(1, 2, 5)[0], SCALE, (1,)))
    return project, results


def test_slides_csv_opens_from_another_folder_and_after_a_move(tmp_path, monkeypatch):
    project, results = _project(tmp_path, monkeypatch)
    assert not results[0].store.is_absolute()  # as given: relative to the working folder
    out = write_slides_csv(Path("results") / "slides.csv", results)
    assert _column(out, "store") == [str(Path("..", "stores", f"s{i}.zarr")) for i in range(2)]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # napari started in another folder
    table = read_slides_csv(project / "results" / "slides.csv")
    for i, row in enumerate(table.rows):
        assert row.store == (project / "stores" / f"s{i}.zarr").resolve()
        assert EmbeddingStore.open(row.store).attrs["slide_name"] == f"s{i}"

    moved = shutil.move(project, tmp_path / "moved")  # the project folder, moved whole
    table = read_slides_csv(Path(moved) / "results" / "slides.csv")
    assert [EmbeddingStore.open(r.store).attrs["slide_name"] for r in table.rows] == ["s0", "s1"]

    # a CSV read by a relative path, then the working folder changes: the paths stay right
    monkeypatch.chdir(moved)
    table = read_slides_csv(Path("results") / "slides.csv")
    monkeypatch.chdir(elsewhere)
    assert all(r.store.is_absolute() and r.store.exists() for r in table.rows)


def test_absolute_store_paths_still_work(tmp_path, monkeypatch):
    project, results = _project(tmp_path, monkeypatch)
    out = write_slides_csv(project / "results" / "slides.csv", results)
    absolute = [str((project / "stores" / f"s{i}.zarr").resolve()) for i in range(2)]
    text = out.read_text().replace(str(Path("..", "stores")), str((project / "stores").resolve()))
    out.write_text(text)
    assert _column(out, "store") == absolute  # a CSV of an earlier version
    monkeypatch.chdir(tmp_path)
    assert [str(r.store) for r in read_slides_csv(out).rows] == absolute


def test_a_store_in_the_cache_is_named_absolute(tmp_path, monkeypatch):
    """The cache does not move with a project: its stores are named by their full path."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(cache))
    store = (cache / "stores" / "a.zarr").resolve()
    assert store_reference(store, tmp_path / "project") == str(store)
    outside = tmp_path / "data" / "b.zarr"
    assert store_reference(outside, tmp_path / "project") == str(Path("..", "data", "b.zarr"))
    assert resolve_store_reference(str(store), tmp_path / "x") == store


def test_a_row_without_a_store_is_a_damaged_csv(tmp_path, monkeypatch):
    _, results = _project(tmp_path, monkeypatch)
    out = write_slides_csv(Path("results") / "slides.csv", results)
    lines = out.read_text().splitlines()
    lines[2] = lines[2].replace(str(Path("..", "stores", "s1.zarr")), "")
    out.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 3 names no store"):
        read_slides_csv(out)


def test_hits_csv_opens_from_another_folder(tmp_path, monkeypatch):
    project, results = _project(tmp_path, monkeypatch)
    stores = open_stores([r.store for r in results])
    hits = search_stores(stores, random_vectors(1, 1, 4)[0, 0], 3)
    out = write_hits_csv(Path("results") / "hits.csv", hits)
    assert {Path(s).parts[0] for s in _column(out, "store")} == {".."}
    monkeypatch.chdir(tmp_path)
    back = read_hits_csv(project / "results" / "hits.csv")
    assert [(h.slide, h.row, h.col) for h in back] == [(h.slide, h.row, h.col) for h in hits]
    assert all(read_store(h.store).attrs["slide_name"] == h.slide for h in back)


def test_a_missing_store_is_not_found(tmp_path):
    missing = tmp_path / "gone" / "s0.zarr"
    with pytest.raises(StoreError, match=r"s0\.zarr: store not found") as caught:
        read_store(missing)
    assert str(missing) in str(caught.value) and "zarr.json" not in str(caught.value)
    with pytest.raises(StoreError, match="store not found"):
        open_stores([missing])
    (tmp_path / "empty.zarr").mkdir()  # there, but no store: said so
    with pytest.raises(StoreError, match="not an embedding store"):
        read_store(tmp_path / "empty.zarr")
    np.testing.assert_equal(len(list(tmp_path.iterdir())), 1)  # nothing made
