"""CLIP state dicts: transformers' names -> open_clip's, and strict loading into :class:`ClipModel`.

An open_clip checkpoint (QuiltNet's ``open_clip_pytorch_model.bin``) already has our names. A
transformers ``CLIPModel`` checkpoint (PLIP's ``pytorch_model.bin``) is renamed tensor by tensor:
the separate ``q_proj``/``k_proj``/``v_proj`` of each attention are stacked into
``in_proj_weight``/``in_proj_bias`` (in that order, as ``nn.MultiheadAttention`` stores them) and
the two projection layers (``nn.Linear`` without bias) are transposed into open_clip's projection
matrices. The ``position_ids`` buffers older transformers versions saved are not weights and are
dropped. Anything else unknown, missing or of the wrong shape is refused, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from napari_conch.errors import CheckpointError
from napari_conch.model.build import _SkipInitialisation, float32_state, refuse_misfit
from napari_conch.model.clip import ClipModel
from napari_conch.model.clip_config import OPEN_CLIP, TRANSFORMERS

_HF_FIXED = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "logit_scale": "logit_scale",
}
#: Linear layers stored transposed by open_clip: transformers name -> open_clip name.
_HF_TRANSPOSED = {
    "text_projection.weight": "text_projection",
    "visual_projection.weight": "visual.proj",
}
_HF_LAYER = re.compile(r"^(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)$")
_HF_LAYER_PARTS = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_HF_BUFFERS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")
_QKV = re.compile(r"^self_attn\.([qkv])_proj\.(weight|bias)$")
#: open_clip buffers that are not weights (saved by some open_clip versions).
_OPEN_CLIP_BUFFERS = ("attn_mask",)


def checkpoint_layout(state: Mapping[str, torch.Tensor]) -> str:
    """``"transformers"`` when the names are a ``CLIPModel``'s, else ``"open_clip"``."""
    if any(name.startswith(("text_model.", "vision_model.")) for name in state):
        return TRANSFORMERS
    return OPEN_CLIP


def from_transformers_names(
    state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPModel`` state dict under open_clip's names.

    Raises
    ------
    CheckpointError
        When a tensor has a name that is not a ``CLIPModel``'s, or an attention lacks one of its
        query, key and value projections.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for name, tensor in state.items():
        if name in _HF_BUFFERS:
            continue
        if name in _HF_FIXED:
            out[_HF_FIXED[name]] = tensor
            continue
        if name in _HF_TRANSPOSED:
            out[_HF_TRANSPOSED[name]] = tensor.t().contiguous()
            continue
        match = _HF_LAYER.match(name)
        if match is None:
            unknown.append(name)
            continue
        tower, index, rest = match.groups()
        prefix = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{index}."
        attention = _QKV.match(rest)
        if attention is not None:
            which, kind = attention.groups()
            qkv.setdefault((prefix, kind), {})[which] = tensor
            continue
        part, _, kind = rest.rpartition(".")
        if part not in _HF_LAYER_PARTS:
            unknown.append(name)
            continue
        out[f"{prefix}{_HF_LAYER_PARTS[part]}.{kind}"] = tensor
    if unknown:
        raise CheckpointError(
            f"{source} is not a transformers CLIPModel checkpoint: {len(unknown)} tensors of "
            f"unknown names, first: {', '.join(unknown[:3])}"
        )
    for (prefix, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(
                f"{source}: the attention {prefix}attn lacks its "
                f"{', '.join(sorted({'q', 'k', 'v'} - set(parts)))} projection {kind}"
            )
        out[f"{prefix}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def to_open_clip_names(
    state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The state dict under open_clip's names, whichever layout it came in."""
    if checkpoint_layout(state) == TRANSFORMERS:
        return from_transformers_names(state, source=source)
    return {k: v for k, v in state.items() if k not in _OPEN_CLIP_BUFFERS}


def load_clip_weights(
    model: ClipModel, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> ClipModel:
    """Load a checkpoint (either layout) into ``model`` strictly.

    Raises
    ------
    CheckpointError
        Naming ``source`` and the first missing, unexpected or mis-shaped tensors.
    """
    renamed = to_open_clip_names(state, source=source)
    return load_strict(model, renamed, source=source, name=model.config.name)


def load_strict(
    model: torch.nn.Module, renamed: Mapping[str, torch.Tensor], *, source: str, name: str
) -> torch.nn.Module:
    """Load a state dict already under ``model``'s names, strictly (fp32; ``assign`` on meta).

    Raises
    ------
    CheckpointError
        Naming ``source``, the architecture ``name`` and the first missing, unexpected or
        mis-shaped tensors.
    """
    refuse_misfit(model, renamed, source, name=name)
    floats = float32_state(renamed)
    on_meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(floats, strict=True, assign=on_meta)
    return model


def build_clip(config, *, device: str | torch.device = "cpu") -> ClipModel:
    """A :class:`ClipModel` of ``config``; on ``"meta"`` nothing is allocated (for loading with
    ``assign`` or checking names and shapes). Parameters elsewhere are uninitialised."""
    with torch.device("meta"), _SkipInitialisation():
        model = ClipModel(config)
    if str(device) != "meta":
        model = model.to_empty(device=device)
    return model.eval()
