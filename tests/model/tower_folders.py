"""Folders laid out as KEEP's and BiomedCLIP's Hugging Face repositories, with random weights.

Written by tests (no weights are downloaded or committed): KEEP's ``config.json`` (``model_type:
keep``, ``text_config``, ``projection_dim``) + ``pytorch_model.bin`` / ``model.safetensors`` +
``vocab.txt`` + ``tokenizer_config.json``; BiomedCLIP's ``open_clip_config.json`` (a timm image
tower, a Hugging Face BERT named by a local folder holding its ``config.json``) +
``open_clip_pytorch_model.bin`` + ``vocab.txt``. The WordPiece vocabulary is built here: a few
hundred pieces, enough for the prompts the tests use.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from napari_conch.model.towers import build_towers
from napari_conch.model.towers_config import from_keep, from_open_clip_towers

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a an the of and in with on image images photo this is showing tissue tumor tumour stroma "
    "normal necrosis lymphocytes carcinoma invasive ductal lobular breast lung adenocarcinoma "
    "squamous cell renal clear papillary chromophobe fat adipose muscle mucosa background "
    "inflammation h&e stain slide histopathology pathology x"
).split()


def build_vocab() -> list[str]:
    """A small uncased WordPiece vocabulary: specials, characters, ``##`` pieces, words."""
    chars = [*(string.ascii_lowercase + string.digits + string.punctuation), "é", "ü"]
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    pieces += ["##s", "##ing", "##ed", "##oma", "##cytes", "##osis", "##al", "##ous"]
    vocab = SPECIALS + chars + pieces
    vocab += [w for w in WORDS if w not in vocab]
    return vocab


def write_vocab(folder: Path, lowercase: bool = True) -> int:
    """``vocab.txt`` and ``tokenizer_config.json`` in ``folder``; the vocabulary's size."""
    vocab = build_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": lowercase, "tokenizer_class": "BertTokenizer"})
    )
    return len(vocab)


def tiny_bert(vocab_size: int) -> dict:
    """A small ``BertConfig`` dict."""
    return {
        "model_type": "bert", "vocab_size": vocab_size, "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 48,
        "max_position_embeddings": 256, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "hidden_act": "gelu",
    }  # fmt: skip


def keep_config(vocab_size: int, image_size: int = 224, patch: int = 32) -> dict:
    """KEEP's ``config.json`` at a small size."""
    return {
        "architectures": ["KEEPModel"], "model_type": "keep", "projection_dim": 32,
        "vision_config": {"img_size": image_size, "patch_size": patch, "embed_dim": 32,
                          "depth": 2, "num_heads": 2, "init_values": 1e-5},
        "text_config": tiny_bert(vocab_size),
    }  # fmt: skip


def biomedclip_config(bert_folder: Path) -> dict:
    """BiomedCLIP's ``open_clip_config.json`` with timm's ``test_vit`` and a small BERT."""
    return {
        "model_cfg": {
            "embed_dim": 24,
            "vision_cfg": {"timm_model_name": "test_vit", "timm_model_pretrained": False,
                           "timm_pool": "", "timm_proj": "linear", "image_size": 160},
            "text_cfg": {"hf_model_name": str(bert_folder), "hf_tokenizer_name": str(bert_folder),
                         "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                         "context_length": 256},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]},
    }  # fmt: skip


def random_state(config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights under the published names."""
    model = build_towers(config, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if name == "logit_scale":
            state[name] = torch.tensor(3.0 + torch.rand((), generator=gen).item())
        elif value.ndim == 1 and "norm" in name.lower() and name.endswith("weight"):
            state[name] = 1 + 0.1 * torch.randn(value.shape, generator=gen)
        else:
            state[name] = 0.05 * torch.randn(value.shape, generator=gen)
    return state


def write_keep_folder(folder: Path, seed: int = 0, safetensors: bool = False) -> Path:
    """A folder laid out as KEEP's repository, with seeded random weights."""
    folder.mkdir(parents=True, exist_ok=True)
    size = write_vocab(folder)
    config = keep_config(size)
    (folder / "config.json").write_text(json.dumps(config))
    state = random_state(from_keep(config), seed)
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


def write_bert_folder(folder: Path) -> Path:
    """A folder named by BiomedCLIP's ``hf_model_name``: the BERT's config and tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    size = write_vocab(folder)
    (folder / "config.json").write_text(json.dumps(tiny_bert(size)))
    return folder


def write_biomedclip_folder(folder: Path, seed: int = 1, bert: Path | None = None) -> Path:
    """A folder laid out as BiomedCLIP's repository, with seeded random weights (its BERT's
    config in ``bert``, default a sibling folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    bert = write_bert_folder(bert or folder.parent / f"{folder.name}-bert")
    write_vocab(folder)
    config = biomedclip_config(bert)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = random_state(from_open_clip_towers(config), seed)
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    return folder
