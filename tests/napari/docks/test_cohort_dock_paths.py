"""The Cohort dock opens a classify-slides CSV's slides whatever folder napari started in."""

from __future__ import annotations

import json
import shutil

import pytest

from napari_conch.cli import main
from tests.cli.test_region_cli import model_args
from tests.conftest import require_fixture

pytestmark = pytest.mark.gui

WAIT_MS = 60_000
PROMPTS = {"classnames": {"tumor": ["tumor"], "glass": ["glass"]}, "templates": ["CLASSNAME."]}


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_checkpoint, tokenizer_path):
    """``classify-slides`` run inside a project folder with relative paths, as users type them."""
    folder = tmp_path / "project"
    (folder / "results").mkdir(parents=True)
    shutil.copy(require_fixture("images/ihc.png"), folder / "ihc.png")
    (folder / "prompts.json").write_text(json.dumps(PROMPTS))
    monkeypatch.chdir(folder)
    argv = ["classify-slides", "ihc.png", "--prompts", "prompts.json", "--topk", "1,5"]
    argv += ["--out", "results/slides.csv", "--level", "0", "--tile-size", "256", "--quiet"]
    argv += ["--store", "stores", *model_args(tiny_checkpoint, tokenizer_path)]
    assert main(argv) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # napari started in another folder
    return folder


def _open_first(make_napari_viewer, qtbot, csv_path, prompts):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Cohort")
    dock.slides_csv.value = csv_path
    dock.prompts.value = prompts
    dock.load_slides()
    dock.open_slide(0)
    qtbot.waitUntil(lambda: not dock.busy(), timeout=WAIT_MS)
    return dock


@pytest.mark.slow
def test_slides_open_when_napari_started_elsewhere(make_napari_viewer, qtbot, project):
    dock = _open_first(
        make_napari_viewer, qtbot, project / "results" / "slides.csv", project / "prompts.json"
    )
    assert dock.errors == []
    assert dock.opened.store.path.parent == (project / "stores").resolve()
    assert dock.opened.predicted in PROMPTS["classnames"]


def test_a_missing_store_says_not_found(make_napari_viewer, qtbot, project):
    stores = project / "stores"
    [store] = stores.iterdir()
    shutil.rmtree(store)
    dock = _open_first(
        make_napari_viewer, qtbot, project / "results" / "slides.csv", project / "prompts.json"
    )
    assert dock.opened is None
    assert dock.errors == [f"{store.resolve()}: store not found"]
