"""The full CONCH ViT-B/16 has exactly the official checkpoint's tensor names and shapes."""

from __future__ import annotations

import json

from napari_conch.model import build_model
from napari_conch.model.coca import split_decoder_keys
from napari_conch.model.config import CONCH_VITB16, resolve_config
from tests.conftest import require_fixture


def test_conch_vitb16_names_and_shapes_match_the_official_state_dict():
    manifest = json.loads(
        require_fixture("reference/conch_vitb16_state_dict_manifest.json").read_text()
    )
    model = build_model("conch_ViT-B-16", device="meta")  # allocates nothing
    ours = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert ours == manifest["tensors"]
    assert len(ours) == manifest["n_tensors"] == 641
    assert sum(p.numel() for p in model.parameters()) == manifest["n_params"] == 395_232_769
    decoder, _ = split_decoder_keys(ours)
    assert decoder and all(name.startswith("text_decoder.") for name in decoder)


def test_conch_config_in_conch_json_form_builds_the_preset():
    conch_form = {
        "embed_dim": 512,
        "embed_dim_caption": 768,
        "vision_cfg": {
            "image_size": 448,
            "timm_model_name": "vit_base_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "",
            "attentional_pool_caption": True,
            "attentional_pool_contrast": True,
            "attn_pooler_heads": 8,
            "n_queries_contrast": 1,
            "n_queries_caption": 256,
            "output_tokens": True,
        },
        "text_cfg": {
            "context_length": 128,
            "vocab_size": 32007,
            "width": 768,
            "heads": 12,
            "layers": 12,
            "embed_cls": True,
            "output_tokens": True,
        },
        "multimodal_cfg": {
            "context_length": 128,
            "vocab_size": 32007,
            "width": 768,
            "heads": 12,
            "layers": 12,
        },
        "custom_text": True,
    }
    cfg = resolve_config(conch_form)
    assert cfg.vision == CONCH_VITB16.vision
    assert cfg.text == CONCH_VITB16.text
    assert cfg.multimodal == CONCH_VITB16.multimodal
    roundtrip = resolve_config(CONCH_VITB16.to_dict())
    assert roundtrip.vision == CONCH_VITB16.vision
