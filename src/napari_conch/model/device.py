"""Choosing the compute device and precision."""

from __future__ import annotations

import torch

from napari_conch.errors import NapariConchError

#: Device types the model runs on (torch knows others, such as ``meta``, that hold no values).
COMPUTE_DEVICES = ("cpu", "cuda", "mps")


def default_device() -> torch.device:
    """CUDA when available, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> :func:`default_device`; otherwise validated ``torch.device``."""
    if device is None or str(device) == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise NapariConchError(
            f"unknown device {device!r} (use cpu, cuda, cuda:N, mps or auto)"
        ) from None
    if dev.type == "meta":
        raise NapariConchError(
            f"device {device!r} is not a device that computes (meta tensors hold no values); "
            "use cpu, cuda, cuda:N, mps or auto"
        )
    if dev.type not in COMPUTE_DEVICES:
        raise NapariConchError(
            f"device {device!r} is not one napari-conch computes on (use cpu, cuda, cuda:N, mps "
            "or auto)"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NapariConchError(f"device {device!r} was asked for but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise NapariConchError(f"device {device!r} was asked for but MPS is not available here")
    return dev


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``None``/``"auto"`` -> bf16 on CUDA GPUs that support it, else fp32.

    Autocast to half precision is only offered on CUDA: on CPUs without bf16 units it is several
    times slower than fp32.
    """
    if precision in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        raise NapariConchError(f"unknown precision {precision!r} (use fp32, bf16, fp16 or auto)")
    if precision != "fp32" and device.type != "cuda":
        raise NapariConchError(f"precision {precision} is only supported on CUDA, not {device}")
    return precision
