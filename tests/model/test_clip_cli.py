"""``napari-conch models`` and ``napari-conch info`` with the CLIP models."""

from __future__ import annotations

import shutil

import pytest

from napari_conch.cli import main
from tests.model.clip_folders import write_open_clip_folder
from tests.model.tower_folders import write_biomedclip_folder, write_keep_folder


def test_models_lists_the_known_models(capsys, monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("CONCH", "demo", "QuiltNet-B-32", "QuiltNet-B-16", "PLIP", "KEEP", "BiomedCLIP"):
        assert name in out
    assert "wisdomik/QuiltNet-B-32" in out and "MIT" in out and "224 px" in out
    assert "not in the Hugging Face cache" in out and "not yet supported" not in out
    assert "Astaxanthin/KEEP" in out and "zero-shot templates: keep" in out
    assert "zero-shot templates: biomedclip" in out


def test_models_finds_the_cached_files(capsys, monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as constants

    repo = tmp_path / "hub" / "models--wisdomik--QuiltNet-B-32"
    shutil.copytree(write_open_clip_folder(tmp_path / "m"), repo / "snapshots" / "r1")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("r1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["models"]) == 0
    assert "found in the Hugging Face cache" in capsys.readouterr().out


def test_models_checks_a_folder(capsys, tmp_path):
    folder = write_open_clip_folder(tmp_path / "m")
    assert main(["models", "--folder", str(folder)]) == 0
    assert "open_clip CLIP model folder" in capsys.readouterr().out
    assert main(["models", "--folder", str(tmp_path)]) == 0
    assert "not a CLIP model folder" in capsys.readouterr().out
    keep = write_keep_folder(tmp_path / "KEEP")
    assert main(["models", "--folder", str(keep)]) == 0
    assert "a KEEP (timm ViT + BERT) model folder (pytorch_model.bin)" in capsys.readouterr().out
    biomed = write_biomedclip_folder(tmp_path / "BiomedCLIP")
    assert main(["models", "--folder", str(biomed)]) == 0
    assert "timm image tower and a BERT text tower" in capsys.readouterr().out


def test_known_model_status_for_a_model_chooser(monkeypatch, tmp_path):
    from napari_conch.model.clip_sources import known_model_status

    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    rows = {row["name"]: row for row in known_model_status()}
    assert rows["KEEP"]["source"] == "hf_hub:Astaxanthin/KEEP" and not rows["KEEP"]["found"]
    assert all(row["supported"] for row in rows.values())
    keep = write_keep_folder(tmp_path / "KEEP")
    assert {row["name"]: row for row in known_model_status(keep)}["KEEP"]["found"]


def test_info_names_the_open_models(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    assert main(["info"]) == 0
    assert "QuiltNet-B-32" in capsys.readouterr().out
    folder = write_open_clip_folder(tmp_path / "m")
    assert main(["info", "--model", str(folder)]) == 0
    assert "CLIP" in capsys.readouterr().out
    keep = write_keep_folder(tmp_path / "KEEP")
    assert main(["info", "--model", str(keep)]) == 0
    out = capsys.readouterr().out
    assert "timm ViT + BERT" in out and "BERT WordPiece" in out
