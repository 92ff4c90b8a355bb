"""Choosing the compute device and precision."""

from __future__ import annotations

import torch

from napari_conch.errors import NapariConchError
from napari_conch.model.formats import (
    AUTO,
    PRECISION_CHOICES,
    cpu_native_bf16,
    no_native_bf16_reason,
)

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


#: Autocast dtype of each precision (``None``: no autocast; int8 runs the image encoder in ONNX
#: Runtime and everything else in float32).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": None}


def auto_choice(device: torch.device) -> tuple[str, str, bool]:
    """What ``auto`` picks on ``device``: ``(precision, reason, needs_gate)``.

    On CUDA, bf16 where the GPU supports it (no gate: today's behaviour). On a CPU with native
    bf16 (:data:`~napari_conch.model.formats.CPU_BF16_FLAGS`), bf16 if the model passes the
    parity gate (``needs_gate``; the loader runs it). Anywhere else, fp32.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA GPU with bf16", False
        return "fp32", "CUDA GPU without bf16", False
    if device.type == "cpu":
        flag = cpu_native_bf16()
        if flag is not None:
            return "bf16", f"CPU has {flag}", True
        return "fp32", no_native_bf16_reason(), False
    return "fp32", f"{device.type} device", False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``None``/``"auto"`` -> the first part of :func:`auto_choice` without the gate (bf16 on
    CUDA GPUs that support it, else fp32); an explicit precision is checked against ``device``.

    fp16 is offered on CUDA only; bf16 on CUDA and CPUs (where the CPU has no native bf16 it is
    several times slower than fp32, and :func:`bf16_cpu_note` says so); int8 on the CPU only
    (ONNX Runtime).
    """
    if precision in (None, AUTO):
        choice, _, needs_gate = auto_choice(device)
        return "fp32" if needs_gate else choice
    if precision not in PRECISIONS:
        raise NapariConchError(
            f"unknown precision {precision!r} (use {', '.join(PRECISION_CHOICES)})"
        )
    if precision == "fp16" and device.type != "cuda":
        raise NapariConchError(f"precision fp16 is only supported on CUDA, not {device}")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise NapariConchError(f"precision bf16 is supported on CUDA and CPUs, not {device}")
    if precision == "int8" and device.type != "cpu":
        raise NapariConchError(
            f"precision int8 runs on the CPU (ONNX Runtime), not {device}: use --device cpu, "
            "or bf16 on a GPU"
        )
    return precision


def bf16_cpu_note(device: torch.device) -> str | None:
    """One line when bf16 was asked for on a CPU without native bf16 (it runs, slowly)."""
    if device.type == "cpu" and cpu_native_bf16() is None:
        return f"bf16 on this CPU is emulated and slower than fp32: {no_native_bf16_reason()}"
    return None
