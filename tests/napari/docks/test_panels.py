"""What the panels say, without a viewer."""

from __future__ import annotations

from types import SimpleNamespace

import napari_conch.demo as demo
from napari_conch._napari.docks.panels import PROMPT_PLACEHOLDER, model_summary, prompt_hint


def _model(name, source="/models/conch/pytorch_model.bin", decoder=False):
    return SimpleNamespace(
        config=SimpleNamespace(name=name), source=source, device="cpu", precision="fp32",
        has_decoder=decoder, is_demo=source == "demo",
    )  # fmt: skip


def test_the_prompt_box_lists_what_the_demo_model_knows(monkeypatch):
    monkeypatch.setattr(demo, "DEMO_CONCEPTS", ("tumor cells", "stroma"), raising=False)
    hint = prompt_hint(_model(demo.DEMO_MODEL_NAME, "demo"))
    assert hint.endswith("tumor cells\nstroma") and "demo model knows" in hint
    assert prompt_hint(_model("conch_ViT-B-16")) == PROMPT_PLACEHOLDER
    assert prompt_hint(None) == PROMPT_PLACEHOLDER
    assert model_summary(_model(demo.DEMO_MODEL_NAME, "demo")).startswith(
        f"{demo.DEMO_MODEL_NAME} (not CONCH): demo,"
    )


def test_the_model_summary_names_the_file_not_the_path():
    summary = model_summary(_model("conch_ViT-B-16"))
    assert summary == "conch_ViT-B-16: pytorch_model.bin, cpu fp32, no captioning decoder"
    hub = model_summary(_model("conch_ViT-B-16", "hf_hub:MahmoodLab/conch", decoder=True))
    assert "hf_hub:MahmoodLab/conch" in hub and hub.endswith(", captioning decoder")
