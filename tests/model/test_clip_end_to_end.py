"""A folder laid out as QuiltNet's (open_clip) or PLIP's (transformers) Hugging Face repository,
random weights written by the test, through ``embed`` -> ``query``; the hub cache; the faults."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from napari_conch.cli import main
from napari_conch.errors import CheckpointError, ConfigError, InputError
from napari_conch.model import clear_model_cache, load_model
from napari_conch.model.clip_loaded import LoadedClip
from tests.model.clip_folders import write_open_clip_folder, write_transformers_folder


@pytest.fixture(autouse=True)
def _fresh_models():
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_models")
    return {
        "quiltnet": write_open_clip_folder(root / "QuiltNet-B-32"),
        "plip": write_transformers_folder(root / "plip"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["quiltnet", "plip"])
def test_embed_then_query(folders, kind, svs_path, tmp_path, capsys):
    folder = folders[kind]
    stores = tmp_path / "stores"
    argv = ["embed", str(svs_path), "--model", str(folder), "--device", "cpu", "--quiet"]
    assert main([*argv, "--store", str(stores)]) == 0
    store = next(stores.rglob("*.zarr"))
    out = tmp_path / "scores.csv"
    assert main(["query", str(store), "--prompt", "tumor", "--prompt", "stroma",
                 "--model", str(folder), "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    x0, y0, x1, y1 = (int(float(rows[0][k])) for k in ("x0", "y0", "x1", "y1"))
    assert (x1 - x0, y1 - y0) == (224, 224)  # the model's own input size is the default tile
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    assert attrs["model_config"]["architecture"] == "clip"


@pytest.mark.slow
def test_stores_of_two_models_are_never_mixed(folders, svs_path, tmp_path):
    """A QuiltNet store is not reused for PLIP: the model fingerprint is in the signature."""
    quilt = load_model(str(folders["quiltnet"]), device="cpu")
    plip = load_model(str(folders["plip"]), device="cpu")
    assert isinstance(quilt, LoadedClip) and isinstance(plip, LoadedClip)
    assert quilt.fingerprint != plip.fingerprint
    stores = tmp_path / "stores"
    for folder in (folders["quiltnet"], folders["plip"]):
        argv = ["embed", str(svs_path), "--model", str(folder), "--device", "cpu", "--quiet"]
        assert main([*argv, "--store", str(stores)]) == 0
    assert len(list(stores.rglob("*.zarr"))) == 2


@pytest.mark.slow
def test_same_weights_in_both_layouts_give_the_same_embeddings(tmp_path):
    a = load_model(str(write_open_clip_folder(tmp_path / "a", seed=5)), device="cpu")
    b = load_model(str(write_transformers_folder(tmp_path / "b", seed=5)), device="cpu")
    tiles = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8)
    assert (a.embed_images(tiles) - b.embed_images(tiles)).abs().max() < 1e-5
    assert (
        a.embed_texts(["tumor", "stroma"]) - b.embed_texts(["tumor", "stroma"])
    ).abs().max() < 1e-5


def test_hf_hub_source_from_the_cache(folders, tmp_path, monkeypatch):
    """``hf_hub:wisdomik/QuiltNet-B-32`` found in huggingface_hub's cache, offline."""
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    snapshot = cache / "models--wisdomik--QuiltNet-B-32" / "snapshots" / "abc123"
    shutil.copytree(folders["quiltnet"], snapshot)
    (cache / "models--wisdomik--QuiltNet-B-32" / "refs").mkdir()
    (cache / "models--wisdomik--QuiltNet-B-32" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = load_model("hf_hub:wisdomik/QuiltNet-B-32", device="cpu")
    assert model.config.name == "QuiltNet-B-32" and model.templates == "quiltnet"
    assert model.source_info.kind == "hub"
    with pytest.raises(CheckpointError, match="not in the local cache"):
        load_model("hf_hub:vinid/plip", device="cpu")


def test_missing_weights(tmp_path):
    folder = write_open_clip_folder(tmp_path / "m")
    (folder / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="holds no weights"):
        load_model(str(folder), device="cpu")


def test_weights_of_another_architecture(tmp_path):
    folder = write_open_clip_folder(tmp_path / "m")
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["width"] = 64
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(str(folder), device="cpu")


def test_unsupported_architecture_is_refused(tmp_path):
    folder = write_open_clip_folder(tmp_path / "m")
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["hf_model_name"] = "microsoft/BiomedNLP-PubMedBERT"
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="hf_model_name"):
        load_model(str(folder), device="cpu")


def test_nan_weights_are_refused(tmp_path):
    folder = write_open_clip_folder(tmp_path / "m")
    state = torch.load(folder / "open_clip_pytorch_model.bin", weights_only=True)
    state["visual.proj"][0, 0] = float("nan")
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="not finite"):
        load_model(str(folder), device="cpu")


def test_pickled_code_is_refused(tmp_path):
    folder = write_open_clip_folder(tmp_path / "m")
    torch.save({"x": torch.zeros(1), "f": shutil.copy}, folder / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="other than tensors"):
        load_model(str(folder), device="cpu")


def test_config_and_tokenizer_options_are_refused(folders):
    with pytest.raises(InputError, match="brings its own config"):
        load_model(str(folders["plip"]), config="conch_ViT-B-16")


def test_no_decoder(folders):
    from napari_conch.errors import NoDecoderError

    model = load_model(str(folders["plip"]), device="cpu")
    with pytest.raises(NoDecoderError, match="no captioning decoder"):
        model.caption(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))
