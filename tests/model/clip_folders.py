"""Folders laid out as QuiltNet's and PLIP's Hugging Face repositories, with random weights.

Written by tests (no weights are downloaded or committed): ``open_clip_config.json`` +
``open_clip_pytorch_model.bin`` (QuiltNet's layout) or ``config.json`` +
``preprocessor_config.json`` + ``model.safetensors`` / ``pytorch_model.bin`` + ``vocab.json`` +
``merges.txt`` (PLIP's layout, transformers names). The tokenizer files are made from CLIP's
vocabulary shipped in the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from napari_conch.model.clip_config import from_open_clip
from napari_conch.model.clip_tokenizer import HF_SPECIALS, OPEN_CLIP_SPECIALS, clip_vocab
from napari_conch.model.clip_weights import build_clip

#: A tiny CLIP in open_clip's config form (CLIP's real vocabulary, so the tokenizer fits).
TINY_OPEN_CLIP = {
    "model_cfg": {
        "embed_dim": 16,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16,
                       "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1},
    },
    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                       "std": [0.26862954, 0.26130258, 0.27577711]},
}  # fmt: skip


def random_state(config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights for a :class:`ClipConfig`, under open_clip's names."""
    model = build_clip(config, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if name == "logit_scale":
            state[name] = torch.tensor(4.0 + torch.rand((), generator=gen).item())
        elif value.ndim == 1 and ("ln" in name) and name.endswith("weight"):
            state[name] = 1 + 0.1 * torch.randn(value.shape, generator=gen)
        else:
            state[name] = 0.05 * torch.randn(value.shape, generator=gen)
    return state


def to_transformers_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip names -> a transformers ``CLIPModel``'s (the inverse of our loader's mapping)."""
    fixed = {
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias",
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
        "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
        "visual.ln_post.weight": "vision_model.post_layernorm.weight",
        "visual.ln_post.bias": "vision_model.post_layernorm.bias",
        "logit_scale": "logit_scale",
    }
    parts = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}  # fmt: skip
    out = {}
    for name, value in state.items():
        if name in fixed:
            out[fixed[name]] = value
        elif name == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif name == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
        else:
            tower = "vision_model" if name.startswith("visual.") else "text_model"
            rest = name.removeprefix("visual.").removeprefix("transformer.resblocks.")
            index, _, rest = rest.partition(".")
            prefix = f"{tower}.encoder.layers.{index}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                for which, chunk in zip("qkv", value.chunk(3), strict=True):
                    out[f"{prefix}self_attn.{which}_proj.{kind}"] = chunk.contiguous()
            else:
                part, _, kind = rest.rpartition(".")
                out[f"{prefix}{parts[part]}.{kind}"] = value
    return out


def transformers_config(model_cfg: dict) -> dict:
    """The ``config.json`` of a ``CLIPModel`` equal to an open_clip ``model_cfg``."""
    v, t = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": model_cfg["embed_dim"],
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "vocab_size": t["vocab_size"], "hidden_size": t["width"],
            "intermediate_size": 4 * t["width"], "num_hidden_layers": t["layers"],
            "num_attention_heads": t["heads"], "max_position_embeddings": t["context_length"],
            "hidden_act": act, "layer_norm_eps": 1e-5, "bos_token_id": 49406,
            "eos_token_id": 49407, "pad_token_id": 1,
        },
        "vision_config": {
            "hidden_size": v["width"], "intermediate_size": 4 * v["width"],
            "num_hidden_layers": v["layers"], "num_attention_heads": v["width"] // v["head_width"],
            "image_size": v["image_size"], "patch_size": v["patch_size"], "hidden_act": act,
            "layer_norm_eps": 1e-5,
        },
    }  # fmt: skip


def write_tokenizer_files(folder: Path) -> None:
    """``vocab.json`` and ``merges.txt`` of CLIP's vocabulary, as transformers saves them."""
    vocab, merges = clip_vocab()
    renamed = dict(zip(OPEN_CLIP_SPECIALS, HF_SPECIALS, strict=True))
    hf_vocab = {renamed.get(token, token): i for token, i in vocab.items()}
    (folder / "vocab.json").write_text(json.dumps(hf_vocab), encoding="utf-8")
    lines = ["#version: 0.2", *(" ".join(m) for m in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_open_clip_folder(folder: Path, config: dict | None = None, seed: int = 0) -> Path:
    """A folder laid out as QuiltNet's repository, with seeded random weights."""
    config = config or TINY_OPEN_CLIP
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    state = random_state(from_open_clip(config), seed)
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    return folder


def write_transformers_folder(
    folder: Path, config: dict | None = None, seed: int = 1, safetensors: bool = True
) -> Path:
    """A folder laid out as PLIP's repository (transformers names), with seeded random weights."""
    config = config or TINY_OPEN_CLIP
    folder.mkdir(parents=True, exist_ok=True)
    model_cfg = config["model_cfg"]
    (folder / "config.json").write_text(json.dumps(transformers_config(model_cfg)))
    size = model_cfg["vision_cfg"]["image_size"]
    pre = {"crop_size": size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
           "image_mean": config["preprocess_cfg"]["mean"],
           "image_std": config["preprocess_cfg"]["std"], "resample": 3,
           "size": {"shortest_edge": size}}  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    write_tokenizer_files(folder)
    state = to_transformers_names(random_state(from_open_clip(config), seed))
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder
