"""Folders laid out as KEEP's and BiomedCLIP's Hugging Face repositories, random weights written
by the test, through ``embed`` -> ``query`` -> ``classify-slides``; the hub cache; the faults."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from napari_conch.cli import main
from napari_conch.engine.prompts import BIOMEDCLIP_TEMPLATES, KEEP_TEMPLATES, model_templates
from napari_conch.errors import CheckpointError, ConfigError, TokenizerNotFoundError
from napari_conch.model import clear_model_cache, load_model
from napari_conch.model.towers_loaded import LoadedTowers
from tests.cli.conftest import refused
from tests.model.tower_folders import keep_config, write_biomedclip_folder, write_keep_folder

PROMPTS = {"0": {"classnames": {"tumor": ["tumor", "carcinoma"], "stroma": ["stroma"]},
                 "templates": ["CLASSNAME.", "an image of CLASSNAME."]}}  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_models():
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tower_models")
    return {
        "keep": write_keep_folder(root / "KEEP"),
        "biomedclip": write_biomedclip_folder(root / "BiomedCLIP"),
    }


@pytest.mark.parametrize("kind,tile", [("keep", 224), ("biomedclip", 160)])
def test_embed_query_classify_slides(folders, kind, tile, svs_path, tmp_path, capsys):
    folder = folders[kind]
    model = ["--model", str(folder), "--device", "cpu"]
    stores = tmp_path / "stores"
    assert main(["embed", str(svs_path), *model, "--quiet", "--store", str(stores)]) == 0
    store = next(stores.rglob("*.zarr"))
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    assert attrs["model_config"]["architecture"] == "clip"
    assert attrs["model_config"]["family"] == kind
    out = tmp_path / "scores.csv"
    assert main(["query", str(store), "--prompt", "tumor", "--prompt", "stroma", *model,
                 "--out", str(out)]) == 0  # fmt: skip
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    x0, y0, x1, y1 = (int(float(rows[0][k])) for k in ("x0", "y0", "x1", "y1"))
    assert (x1 - x0, y1 - y0) == (tile, tile)  # the model's own input size is the default tile
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    slides = tmp_path / "slides.csv"
    argv = ["classify-slides", str(store), "--prompts", str(prompts), "--out", str(slides)]
    assert main([*argv, *model]) == 0
    with open(slides, newline="") as f:
        (row,) = list(csv.DictReader(f))
    scale = load_model(str(folder), device="cpu").logit_scale  # the model's own temperature
    a, b = float(row["score_top1_tumor"]), float(row["score_top1_stroma"])
    assert float(row["prob_top1_tumor"]) == pytest.approx(1 / (1 + np.exp(-scale * (a - b))),
                                                          abs=1e-5)  # fmt: skip
    capsys.readouterr()
    assert main(["search", str(store), "--prompt", "tumor", "-k", "3", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # header + 3 hits


def test_own_templates_and_no_decoder(folders):
    from napari_conch.errors import NoDecoderError

    keep = load_model(str(folders["keep"]), device="cpu")
    biomed = load_model(str(folders["biomedclip"]), device="cpu")
    assert isinstance(keep, LoadedTowers) and isinstance(biomed, LoadedTowers)
    assert model_templates(keep) == "keep" and KEEP_TEMPLATES == ("CLASSNAME.",)
    assert model_templates(biomed) == "biomedclip"
    assert BIOMEDCLIP_TEMPLATES == ("this is a photo of CLASSNAME",)
    assert keep.fingerprint != biomed.fingerprint
    with pytest.raises(NoDecoderError, match="no captioning decoder"):
        keep.caption(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))


def test_safetensors_and_bin_give_the_same_model(tmp_path):
    a = load_model(str(write_keep_folder(tmp_path / "a", seed=3)), device="cpu")
    b = load_model(str(write_keep_folder(tmp_path / "b", seed=3, safetensors=True)), device="cpu")
    assert b.files.weights.name == "model.safetensors"
    assert (a.embed_texts(["tumor"]) - b.embed_texts(["tumor"])).abs().max() < 1e-6


def test_hf_hub_source_from_the_cache(folders, tmp_path, monkeypatch):
    """``hf_hub:Astaxanthin/KEEP`` found in huggingface_hub's cache, offline."""
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    repo = cache / "models--Astaxanthin--KEEP"
    shutil.copytree(folders["keep"], repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = load_model("hf_hub:Astaxanthin/KEEP", device="cpu")
    assert model.config.name == "KEEP" and model.templates == "keep"
    assert model.source_info.kind == "hub"
    with pytest.raises(CheckpointError, match="not in the local cache"):
        load_model("hf_hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224")


def test_keep_weights_of_another_size_are_refused(tmp_path):
    folder = write_keep_folder(tmp_path / "KEEP")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["depth"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_model(str(folder), device="cpu")


def test_keep_projection_must_be_the_text_width(tmp_path):
    folder = write_keep_folder(tmp_path / "KEEP")
    config = keep_config(100)
    config["projection_dim"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="projection_dim 16 differs"):
        load_model(str(folder), device="cpu")


def test_keep_without_a_tokenizer(tmp_path, svs_path, capsys):
    folder = write_keep_folder(tmp_path / "KEEP")
    (folder / "vocab.txt").unlink()
    with pytest.raises(TokenizerNotFoundError, match="no BERT tokenizer"):
        load_model(str(folder), device="cpu")
    argv = ["embed", str(svs_path), "--model", str(folder), "--device", "cpu", "--quiet"]
    line = refused(main, [*argv, "--store", str(tmp_path / "stores")], capsys)
    assert "no BERT tokenizer" in line


def test_biomedclip_unknown_bert_and_timm_model(tmp_path):
    folder = write_biomedclip_folder(tmp_path / "b")
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["hf_model_name"] = "someone/UnknownBERT"
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="UnknownBERT"):
        load_model(str(folder), device="cpu")
    config["model_cfg"]["vision_cfg"]["timm_model_name"] = "convnext_base"
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="convnext_base"):
        load_model(str(folder), device="cpu")


def test_biomedclip_tokenizer_from_its_bert_folder(tmp_path):
    """Without vocab.txt in the model folder, the one of ``hf_tokenizer_name`` (a folder)."""
    folder = write_biomedclip_folder(tmp_path / "b")
    (folder / "vocab.txt").unlink()
    model = load_model(str(folder), device="cpu")
    assert model.tokenizer.path.parent == tmp_path / "b-bert"


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["model_cfg"].__setitem__("vision_cfg", ["not", "an", "object"]),
        lambda c: c["model_cfg"]["vision_cfg"].__setitem__("timm_model_name", ["vit"]),
        lambda c: c["model_cfg"].__setitem__("embed_dim", [512]),
    ],
)
def test_malformed_biomedclip_config_is_one_line(tmp_path, edit):
    folder = write_biomedclip_folder(tmp_path / "b")
    config = json.loads((folder / "open_clip_config.json").read_text())
    edit(config)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"open_clip_config\.json"):
        load_model(str(folder), device="cpu")


def test_malformed_keep_config_is_one_line(tmp_path):
    folder = write_keep_folder(tmp_path / "KEEP")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["depth"] = [2]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="depth"):
        load_model(str(folder), device="cpu")
