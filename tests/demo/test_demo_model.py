"""The shipped demo model: its files load, its tokenizer round-trips, and on held-out regions of
the real images its prompts light up the right tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_conch.demo import DEMO_MODEL_NAME, demo_model_paths, load_demo_model
from napari_conch.model import Tokenizer, load_model
from napari_conch.model.tokenizer import END_ID, PAD_ID, START_ID


@pytest.fixture(scope="module")
def demo():
    return load_demo_model(device="cpu")


def test_shipped_files_are_small_and_complete():
    weights, config, tokenizer = demo_model_paths()
    sizes = [p.stat().st_size for p in (weights, config, tokenizer)]
    assert sum(sizes) < 8 * 2**20
    cfg = json.loads(config.read_text())
    assert cfg["text_cfg"]["vocab_size"] == Tokenizer.from_file(tokenizer).vocab_size
    assert cfg["embed_dim"] % 8 == 0 and cfg["embed_dim_caption"] % 8 == 0


def test_shipped_files_load_through_load_model():
    weights, config, tokenizer = demo_model_paths()
    loaded = load_model(weights, config=config, tokenizer=tokenizer, device="cpu")
    assert loaded.has_decoder
    assert loaded.config.name == DEMO_MODEL_NAME
    assert 1.0 < loaded.logit_scale <= 100.0
    assert loaded.tokenizer.vocab_size == loaded.config.text.vocab_size


@pytest.mark.slow
def test_demo_model_embeds_tiles_and_texts(demo):
    tiles = np.full((2, 128, 128, 3), 240, np.uint8)
    image = demo.embed_images(tiles)
    text = demo.embed_texts(["tumor cells", "stroma"])
    assert image.shape == (2, demo.embed_dim) and text.shape == (2, demo.embed_dim)
    assert image.dtype == torch.float32
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))
    assert DEMO_MODEL_NAME == "demo model"


def test_tokenizer_round_trip():
    _, _, path = demo_model_paths()
    tok = Tokenizer.from_file(path, context_length=32)
    texts = [
        "Tumor cells",
        "an H&E image of desmoplastic stroma",
        "Lymphocytes near the épithélium",
    ]
    ids = tok.encode(texts)
    assert ids.shape == (3, 32)
    assert (ids[:, 0] == START_ID).all() and (ids[:, -1] == PAD_ID).all()
    lengths = (ids != PAD_ID).sum(dim=1)
    assert all(ids[i, n - 1] == END_ID for i, n in enumerate(lengths.tolist()))
    assert tok.decode(ids) == [
        "tumor cells",
        "an h&e image of desmoplastic stroma",
        "lymphocytes near the epithelium",
    ]
    assert 256 < tok.vocab_size <= 2048  # our own small BPE, not CONCH's 32007 ids


def test_demo_source_name_loads_the_shipped_model():
    from napari_conch.demo import DEMO_MODEL_NAME, load_demo_model
    from napari_conch.model import load_model

    lm = load_model("demo", device="cpu")
    assert lm is load_demo_model(device="cpu")
    assert (
        lm.config.name == DEMO_MODEL_NAME and lm.tokenizer.vocab_size == lm.config.text.vocab_size
    )


def test_demo_concepts_are_the_prompts_it_was_evaluated_on():
    from importlib import resources

    from napari_conch.demo import DEMO_CONCEPTS, DEMO_VIEW_PROMPTS

    metrics_file = resources.files("napari_conch.demo") / "data" / "demo_metrics.json"
    metrics = json.loads(metrics_file.read_text())
    evaluated = {
        concept["prompt"]
        for group in metrics["heldout"].values()
        for concept in group["concepts"].values()
    }
    assert set(DEMO_CONCEPTS) == evaluated and len(DEMO_CONCEPTS) == len(evaluated)
    assert set(DEMO_VIEW_PROMPTS) == {
        c["prompt"] for c in metrics["heldout"]["nuclei"]["concepts"].values()
    }
