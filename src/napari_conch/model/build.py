"""Building CoCa models: fast construction, weight initialisation and strict state-dict loading."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from napari_conch.errors import CheckpointError
from napari_conch.model.coca import CoCa, split_decoder_keys
from napari_conch.model.config import CocaConfig, resolve_config

logger = logging.getLogger("napari_conch")


def build_model(
    config: str | Path | dict[str, Any] | CocaConfig | None = "conch_ViT-B-16",
    *,
    device: str | torch.device = "cpu",
    init: bool = True,
) -> CoCa:
    """Build a CoCa model.

    Parameters
    ----------
    config : str, path, dict or CocaConfig
        A preset name (``"conch_ViT-B-16"``), a JSON file or dict in CONCH's form.
    device : str or torch.device
        Where the parameters live. ``"meta"`` allocates nothing (for checking names and shapes,
        or before ``load_state_dict(..., assign=True)``).
    init : bool
        Fill the parameters with random values (truncated-normal weights, zero biases, unit norms).
        ``False`` leaves them uninitialised, for when a checkpoint is loaded next.

    Returns
    -------
    CoCa
        In eval mode.
    """
    cfg = resolve_config(config)
    with torch.device("meta"), _SkipInitialisation():
        model = CoCa(cfg)
    if str(device) != "meta":
        model = model.to_empty(device=device)
        if init:
            init_weights(model)
    return model.eval()


class _SkipInitialisation(TorchFunctionMode):
    """Skips ``torch.nn.init`` while modules are made on the meta device.

    Parameters on the meta device hold no values, so their initialisation does nothing, but the
    first one in a process costs about a second: ``Tensor.normal_`` on a meta tensor goes through
    a Python decomposition that imports ``torch._dynamo`` (and sympy), holding a model load (and,
    in napari, the GUI thread's turns) meanwhile. Values come later from :func:`init_weights` or
    a checkpoint.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """Random initialisation (for benchmarks and for decoders a checkpoint does not have)."""
    for name, param in model.named_parameters():
        if name.endswith("logit_scale"):
            param.fill_(torch.log(torch.tensor(1 / 0.07)).item())
        elif param.ndim == 1 and ("ln" in name or "norm" in name) and name.endswith("weight"):
            param.fill_(1.0)
        elif param.ndim == 1 and not name.endswith("cls_emb"):
            param.zero_()
        else:
            param.normal_(0.0, std).clamp_(-2 * std, 2 * std)


def load_weights(
    model: CoCa, state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict"
) -> CoCa:
    """Load ``state_dict`` into ``model`` strictly, the decoder excepted.

    A checkpoint without any ``text_decoder.*`` tensor (the public CONCH release) loads; the
    decoder is then randomly initialised, ``model.decoder_trained`` stays ``False`` and a warning
    is logged once. Anything else missing, unexpected or of another shape raises.

    Raises
    ------
    CheckpointError
        Naming ``source`` and the first mismatched names or shapes.
    """
    given_decoder, _ = split_decoder_keys(state_dict)
    # without decoder weights the decoder is not missing: it is made randomly below
    decoder_free = None if given_decoder else (lambda keys: split_decoder_keys(keys)[1])
    refuse_misfit(model, state_dict, source, ignore_missing=decoder_free)
    state_dict = float32_state(state_dict)  # half-precision checkpoints computed in float32
    on_meta = any(p.is_meta for p in model.parameters())
    if not given_decoder:
        _randomise_decoder(model, device=next(iter(state_dict.values())).device)
    model.load_state_dict(dict(state_dict), strict=False, assign=on_meta)
    model.decoder_trained = bool(given_decoder)
    if not given_decoder:
        logger.warning(
            "%s has no captioning decoder weights (the public CONCH release has none): "
            "embeddings and prompts work, captioning is disabled.",
            source,
        )
    return model


def refuse_misfit(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    ignore_missing: Callable[[list[str]], list[str]] | None = None,
    name: str | None = None,
) -> None:
    """Raise a :class:`CheckpointError` when ``state`` does not fit ``model``'s tensors.

    The message names ``source``, the architecture (``name``, else ``model.config.name``) and
    the first three
    mis-shaped, missing and unexpected tensors. ``ignore_missing`` keeps of the missing names
    those that count (CONCH's checkpoint may lack the captioning decoder).
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    if ignore_missing is not None:
        missing = ignore_missing(missing)
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {expected[k]}"
        for k in state
        if k in expected and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if wrong_shape:
        problems.append(
            f"{len(wrong_shape)} shape mismatches (checkpoint vs model), first: "
            + ", ".join(wrong_shape[:3])
        )
    if missing:
        problems.append(f"{len(missing)} missing tensors, first: " + ", ".join(missing[:3]))
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected tensors, first: " + ", ".join(unexpected[:3])
        )
    if problems:
        raise CheckpointError(
            f"{source} does not fit the {name or model.config.name} architecture: "
            + "; ".join(problems)
        )


def float32_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with its floating-point tensors in float32 (a half-precision checkpoint, such as
    the demo model's, is computed in float32 like any other)."""
    return {
        k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v
        for k, v in state.items()
    }


def _randomise_decoder(model: CoCa, device: torch.device) -> None:
    """Random decoder weights for a checkpoint without any (materialised if still on meta)."""
    if any(p.is_meta for p in model.text_decoder.parameters()):
        model.text_decoder.to_empty(device=device)
    init_weights(model.text_decoder)
