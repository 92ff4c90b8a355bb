"""The int8 path: ONNX Runtime's dynamically quantised image encoder, exported once, gated."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from napari_conch.errors import NapariConchError
from napari_conch.model import clear_model_cache, load_model
from napari_conch.model import int8 as int8_mod
from napari_conch.model import precision_gate as gate_mod


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(folder))
    monkeypatch.setattr(gate_mod, "GATE_MAX_TILES", 24)
    clear_model_cache()
    yield folder
    clear_model_cache()


def test_without_the_extra_int8_is_one_line_naming_it(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(NapariConchError, match=r"pip install 'napari-conch\[int8\]'") as info:
        load_model("demo", device="cpu", precision="int8")
    assert "\n" not in str(info.value)
    assert not (cache / "int8").exists()


@pytest.mark.slow
def test_int8_is_exported_once_atomically_gated_and_close_to_fp32(cache, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = load_model("demo", device="cpu", precision="int8")
    assert model.precision == "int8"
    assert model.precision_note.startswith("int8 (asked for): gate passed (min cosine")
    files = sorted(p.name for p in (cache / "int8").iterdir())
    assert len(files) == 1 and files[0].endswith(".onnx")  # no temporary file left
    tiles = gate_mod.gate_tiles(128, 8)
    fp32 = load_model("demo", device="cpu", precision="fp32")
    cosine = (model.embed_images(tiles) * fp32.embed_images(tiles)).sum(-1)
    assert float(cosine.min()) >= 0.999
    assert model.model is fp32.model  # the text tower is the float32 one
    assert torch.equal(model.embed_texts(["stroma"]), fp32.embed_texts(["stroma"]))
    # the next load uses the kept file
    clear_model_cache()
    monkeypatch.setattr(int8_mod, "export_int8", _must_not_export)
    assert load_model("demo", device="cpu", precision="int8").precision == "int8"


def _must_not_export(*args, **kwargs):
    raise AssertionError("exported again although the int8 encoder was kept")


@pytest.mark.slow
def test_a_damaged_int8_file_is_exported_again(cache):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    fp32 = load_model("demo", device="cpu", precision="fp32")
    path = int8_mod.int8_path(fp32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx model")
    model = load_model("demo", device="cpu", precision="int8")
    tiles = np.zeros((2, 128, 128, 3), np.uint8)
    assert torch.isfinite(model.embed_images(tiles)).all()
    assert path.stat().st_size > 1000


def test_a_failed_export_is_one_line_and_leaves_nothing(cache, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    def broken(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::foo' is not supported")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(NapariConchError, match="could not be exported to int8 ONNX") as info:
        load_model("demo", device="cpu", precision="int8")
    assert "\n" not in str(info.value)
    assert list((cache / "int8").iterdir()) == []
