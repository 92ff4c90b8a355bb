"""Building models: the meta-device construction stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from napari_conch.model.build import build_model, init_weights


@pytest.mark.slow
def test_building_on_the_meta_device_skips_initialisation_and_dynamo():
    # in a fresh interpreter: another test may have imported torch._dynamo already
    code = (
        "import sys\n"
        "from napari_conch.model.build import build_model\n"
        "model = build_model('conch_ViT-B-16', device='meta')\n"
        "assert next(model.parameters()).is_meta\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_a_built_model_is_initialised_on_its_device():
    model = build_model("conch_ViT-B-16", device="meta")
    model = model.to_empty(device="cpu")
    init_weights(model)
    weights = [p for name, p in model.named_parameters() if p.ndim > 1]
    assert all(torch.isfinite(p).all() for p in weights[:5])
    assert all(p.abs().max() <= 0.04 + 1e-6 for p in weights[:5])  # +- 2 std, std 0.02
    assert any(p.std() > 0.005 for p in weights[:5])  # random, not left at zero
