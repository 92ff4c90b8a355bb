"""The registry of model sources: paths, ``hf_hub:``, and names that packages register."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_conch.errors import CheckpointError
from napari_conch.model import sources
from napari_conch.model.sources import (
    HUB_SOURCE,
    PATH_SOURCE,
    ResolvedSource,
    SourceInfo,
    available_names,
    cache_key,
    register_source,
    registered_sources,
    resolve_source,
    source_info,
)


@pytest.fixture
def clean_registry(monkeypatch):
    """A registry that forgets what a test registers."""
    monkeypatch.setattr(sources, "_NAMED", dict(sources._NAMED))
    plugins = dict(sources.plugin_modules())
    monkeypatch.setattr(sources, "plugin_modules", lambda: plugins)
    return plugins


def test_paths_and_hub_ids_are_built_in(tmp_path):
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"x")
    assert source_info(ckpt) is PATH_SOURCE and source_info("hf_hub:org/model") is HUB_SOURCE
    assert resolve_source(ckpt).weights == ckpt
    folder = tmp_path / "conch"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"x")
    resolved = resolve_source(folder)
    assert resolved.weights == folder / "pytorch_model.bin" and resolved.info is PATH_SOURCE
    assert resolved.config is None and resolved.tokenizer is None
    assert cache_key(str(folder) + "/../conch") == str(folder.resolve())


def test_missing_path_names_the_sources_there_are(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as caught:
        resolve_source(tmp_path / "nope.bin")
    message = str(caught.value)
    assert "nope.bin" in message and "hf_hub:" in message and "demo" in message
    assert "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"holds no pytorch_model\.bin"):
        resolve_source(tmp_path / "empty")


def test_the_demo_model_is_a_registered_source():
    info = source_info("demo")
    assert info.is_demo and info.kind == "bundled" and info.default_tile_size == 128
    assert info.display_name == "demo model"
    resolved = resolve_source("demo")
    assert resolved.weights.is_file() and resolved.config.is_file() and resolved.tokenizer.is_file()
    assert "demo" in available_names() and info in registered_sources()
    assert cache_key("demo") == "demo"


def test_a_registered_name_wins_over_a_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_bytes(b"not a checkpoint")
    assert source_info("demo").is_demo
    assert source_info("./demo") is PATH_SOURCE


def test_register_a_source(clean_registry, tmp_path):
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"x")
    info = SourceInfo(name="mine", kind="bundled", display_name="my model", default_tile_size=64)
    register_source(info, lambda token: ResolvedSource(info, weights))
    assert source_info("mine") is info and resolve_source("mine").weights == weights
    for bad in ("", "a:b", "x/y", " pad", "path", "hf_hub"):
        with pytest.raises(ValueError, match="model source name"):
            register_source(SourceInfo(name=bad, kind="bundled", display_name="x"), print)


def test_the_demo_source_is_declared_as_an_entry_point():
    assert sources.plugin_modules()["demo"] == "napari_conch.demo"


def test_a_known_plugin_that_does_not_register_is_reported(clean_registry):
    clean_registry["ghost"] = "napari_conch.errors"  # imports, registers nothing
    with pytest.raises(CheckpointError, match=r"'ghost': napari_conch\.errors did not register it"):
        source_info("ghost")


@pytest.mark.slow
def test_model_imports_nothing_above_it():
    code = (
        "import sys, napari_conch.model, napari_conch.model.loaded, napari_conch.model.sources\n"
        "print(sorted(m for m in sys.modules if m.startswith('napari_conch.')\n"
        "             and m.split('.')[1] not in ('model', 'errors', 'bounds', 'json_input')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_demo_and_sources_import_without_torch():
    code = (
        "import sys, napari_conch.demo, napari_conch.model.sources\n"
        "print(','.join(m for m in ('torch', 'napari', 'PyQt6') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_load_model_demo_by_name_without_importing_demo_first():
    code = (
        "import sys\n"
        "from napari_conch.model import load_model\n"
        "m = load_model('demo', device='cpu')\n"
        "assert 'napari_conch.demo' in sys.modules\n"
        "print(m.is_demo, m.default_tile_size, m.describe())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True 128 demo model (not CONCH) from demo on cpu")


def test_loaded_models_know_their_source_and_tile_size(tiny_model):
    from napari_conch.demo import load_demo_model
    from napari_conch.engine.options import RunOptions

    assert tiny_model.source_info is PATH_SOURCE and not tiny_model.is_demo
    assert tiny_model.default_tile_size == tiny_model.image_size
    demo = load_demo_model(device="cpu")
    assert demo.is_demo and demo.default_tile_size == 128 != demo.image_size
    assert RunOptions().tile_size_for(demo) == 128
    assert RunOptions().tile_size_for(tiny_model) == tiny_model.image_size
