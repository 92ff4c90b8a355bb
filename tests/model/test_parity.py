"""Every reference output of the tiny CONCH-architecture CoCa, reproduced to 1e-5 (float32, CPU)."""

from __future__ import annotations

import pytest
import torch

from napari_conch.model import build_model, load_weights

TOL = 1e-5


@pytest.fixture(scope="module")
def ref_model(tiny_reference):
    model = build_model(tiny_reference["config"], init=False)
    return load_weights(model, tiny_reference["state_dict"])


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@torch.no_grad()
def test_image_embeddings(ref_model, tiny_reference):
    images, out = tiny_reference["inputs"]["images"], tiny_reference["outputs"]
    assert max_err(ref_model.encode_image(images), out["image_embed"]) <= TOL
    unprojected = ref_model.encode_image(images, proj_contrast=False, normalize=False)
    assert max_err(unprojected, out["image_embed_unprojected"]) <= TOL


@torch.no_grad()
def test_caption_tokens_of_attentional_pooler(ref_model, tiny_reference):
    _, caption_tokens = ref_model.image_tokens(tiny_reference["inputs"]["images"])
    assert max_err(caption_tokens, tiny_reference["outputs"]["image_caption_tokens"]) <= TOL


@torch.no_grad()
def test_text_embeddings(ref_model, tiny_reference):
    tokens, out = tiny_reference["inputs"]["tokens"], tiny_reference["outputs"]
    assert max_err(ref_model.encode_text(tokens), out["text_embed"]) <= TOL
    unnormalised = ref_model.encode_text(tokens, normalize=False)
    assert max_err(unnormalised, out["text_embed_unnormalized"]) <= TOL


@torch.no_grad()
def test_forward_decoder_logits_and_labels(ref_model, tiny_reference):
    inputs, out = tiny_reference["inputs"], tiny_reference["outputs"]
    n = inputs["tokens"].shape[0]
    result = ref_model(inputs["images"][:n], inputs["tokens"])
    assert max_err(result["logits"], out["decoder_logits"]) <= TOL
    assert torch.equal(result["labels"], out["decoder_labels"])
    assert max_err(result["image_features"], out["image_embed"][:n]) <= TOL
    assert max_err(result["text_features"], out["text_embed"]) <= TOL
    expected_scale = tiny_reference["state_dict"]["logit_scale"].exp()
    assert result["logit_scale"].item() == pytest.approx(expected_scale.item())


@pytest.mark.slow
@torch.no_grad()
def test_decoder_prefix_logits_the_way_generation_runs(ref_model, tiny_reference):
    inputs, out = tiny_reference["inputs"], tiny_reference["outputs"]
    prefix = inputs["decoder_prefix_tokens"]
    _, caption_tokens = ref_model.image_tokens(inputs["images"][: prefix.shape[0]])
    logits = ref_model.decode(caption_tokens, prefix)
    assert max_err(logits, out["decoder_prefix_logits"]) <= TOL


@torch.no_grad()
def test_other_input_size_interpolates_position_embedding(ref_model, tiny_reference):
    out = tiny_reference["outputs"]
    images = out["dynamic_size_images"]
    assert images.shape[-1] != ref_model.image_size
    assert max_err(ref_model.encode_image(images), out["dynamic_size_image_embed"]) <= TOL


def test_real_tile_preprocessing_close_to_reference(tiny_reference, tiny_model):
    """PIL bicubic (reference) vs antialiased torch bicubic: small input and embedding error."""
    inputs, out = tiny_reference["inputs"], tiny_reference["outputs"]
    tile = inputs["real_tile_uint8"].numpy()
    assert tile.shape[:2] != (tiny_model.image_size, tiny_model.image_size)
    x = tiny_model.preprocess(tile)
    input_err = max_err(x[0], inputs["images"][3])
    assert input_err < 0.02  # measured 0.0142 (normalised units)
    emb_err = max_err(tiny_model.embed_images(tile)[0], out["image_embed"][3])
    assert emb_err < 1e-2  # measured 1.4e-3
