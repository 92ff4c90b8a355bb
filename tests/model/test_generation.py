"""Caption generation: reference greedy parity, every strategy, and the no-decoder refusal."""

from __future__ import annotations

import pytest
import torch

from napari_conch.errors import NapariConchError, NoDecoderError
from napari_conch.model import build_model, load_weights
from napari_conch.model.generation import GenerationConfig, filter_logits, generate
from napari_conch.model.tokenizer import END_ID, PAD_ID, START_ID


@pytest.fixture(scope="module")
def ref_model(tiny_reference):
    return load_weights(
        build_model(tiny_reference["config"], init=False), tiny_reference["state_dict"]
    )


@pytest.fixture(scope="module")
def images(tiny_reference):
    return tiny_reference["inputs"]["images"][:2]


@pytest.mark.slow
def test_greedy_caption_matches_reference_exactly(ref_model, images, tiny_reference):
    params = tiny_reference["outputs"]["greedy_caption_params"]
    assert (params["sot_token_id"], params["eos_token_id"], params["pad_token_id"]) == (
        START_ID,
        END_ID,
        PAD_ID,
    )
    cfg = GenerationConfig("greedy", max_length=params["seq_len"], min_length=params["min_seq_len"])
    out = generate(ref_model, images, cfg)
    assert torch.equal(out, tiny_reference["outputs"]["greedy_caption_tokens"])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["beam", "top_k", "top_p"])
def test_strategies_produce_well_formed_captions(ref_model, images, strategy):
    cfg = GenerationConfig(
        strategy, max_length=8, min_length=3, num_beams=3, seed=1, repetition_penalty=1.2
    )
    out = generate(ref_model, images, cfg)
    assert out.shape[0] == 2 and out.shape[1] <= 8
    for row in out.tolist():
        assert row[0] == START_ID and END_ID in row
        end = row.index(END_ID)
        assert end >= 3 - 1  # no end before min_length ids
        assert all(t == PAD_ID for t in row[end + 1 :])


@pytest.mark.slow
def test_seeded_sampling_is_reproducible(ref_model, images):
    cfg = GenerationConfig("top_p", max_length=8, min_length=2, seed=7, top_p=0.95)
    assert torch.equal(generate(ref_model, images, cfg), generate(ref_model, images, cfg))


def test_top_k_and_top_p_filters():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    top2 = filter_logits(logits, GenerationConfig("top_k", top_k=2))
    assert torch.isinf(top2[0, 2:]).all() and torch.isfinite(top2[0, :2]).all()
    nucleus = filter_logits(logits, GenerationConfig("top_p", top_p=0.5))
    assert torch.isfinite(nucleus[0, 0]) and torch.isinf(nucleus[0, 2:]).all()


def test_model_without_decoder_refuses_to_caption(tiny_reference, images):
    state = {
        k: v for k, v in tiny_reference["state_dict"].items() if not k.startswith("text_decoder.")
    }
    model = load_weights(build_model(tiny_reference["config"], init=False), state)
    with pytest.raises(NoDecoderError, match="no captioning decoder"):
        generate(model, images)


def test_bad_generation_settings():
    with pytest.raises(NapariConchError, match="unknown generation strategy"):
        GenerationConfig("nucleus")
    with pytest.raises(NapariConchError, match="temperature"):
        GenerationConfig("top_k", temperature=0)


@pytest.mark.slow
def test_loaded_model_captions_and_ranks_texts(tiny_model, tiny_reference):
    tile = tiny_reference["inputs"]["real_tile_uint8"].numpy()
    (caption,) = tiny_model.caption(tile, GenerationConfig("greedy", max_length=6, min_length=2))
    assert isinstance(caption, str) and caption == caption.strip()
    texts = ["tumor", "stroma", "lymphocytes"]
    probs = tiny_model.rank_texts(tile, texts)
    assert probs.shape == (1, 3)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    cos = tiny_model.embed_images(tile) @ tiny_model.embed_texts(texts).T
    expected = (tiny_model.logit_scale * cos).softmax(-1)
    assert torch.allclose(probs, expected)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"strategy": "top_p", "temperature": float("nan")}, "temperature=nan: expected a finite"),
        ({"repetition_penalty": 0}, "repetition_penalty=0: must be greater than 0"),
        ({"repetition_penalty": float("inf")}, "repetition_penalty=inf: expected a finite"),
        ({"top_p": float("nan")}, "top_p=nan"),
        ({"min_length": 50, "max_length": 5}, "min_length=50 is more than max_length=5"),
        ({"num_beams": 2.5}, "num_beams=2.5: expected a whole number"),
        ({"seed": -1}, "seed=-1: must be between 0 and 9223372036854775807"),
    ],
)
def test_settings_that_would_crash_or_mislead_are_refused(settings, words):
    """nan temperature with top_p, penalty 0 (``max() arg is an empty sequence``) and a
    minimum longer than the maximum were accepted."""
    with pytest.raises(NapariConchError, match=words.replace("(", r"\(")) as info:
        GenerationConfig(**settings)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_tiny_temperature_samples_the_best_id(ref_model, images):
    """logits / 1e-300 were inf - inf = nan in the softmax (multinomial then failed)."""
    greedy = generate(ref_model, images, GenerationConfig("greedy", max_length=6, min_length=2))
    cold = GenerationConfig("top_p", max_length=6, min_length=2, temperature=1e-300, seed=3)
    assert torch.equal(generate(ref_model, images, cold), greedy)
