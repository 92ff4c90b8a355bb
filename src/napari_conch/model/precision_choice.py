"""Settling a loaded model's number format: ``auto`` with the gate, bf16 and int8 on the CPU.

The loaders (:func:`~napari_conch.model.loaded.load_model`,
:func:`~napari_conch.model.clip_loaded.load_clip_model`) build the model in float32, then hand
it here with the precision asked for:

- ``auto`` on a CPU with native bf16: bf16 when the model passes the parity gate
  (:mod:`napari_conch.model.precision_gate`, cached per weights fingerprint), else fp32 with a
  :class:`~napari_conch.model.precision_gate.PrecisionWarning` saying why (never silently).
- ``auto`` elsewhere: today's choice (bf16 on capable CUDA GPUs, else fp32), no gate.
- ``bf16`` on a CPU, ``int8``: gated too; a failed gate warns in one line but the format is used,
  as asked.

The model's ``precision_note`` says what was chosen and why (``info`` and ``embed`` show it).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from napari_conch.model.device import auto_choice, bf16_cpu_note
from napari_conch.model.formats import AUTO, PrecisionWarning
from napari_conch.model.precision_gate import GateResult, cached_gate


def as_precision(loaded: Any, precision: str, image_engine: Any = None) -> Any:
    """A copy of ``loaded`` (sharing its modules) that runs in ``precision``."""
    return dataclasses.replace(loaded, precision=precision, image_engine=image_engine)


def gate(loaded: Any, precision: str, image_engine: Any = None) -> GateResult:
    """The (cached) gate result of ``loaded`` in ``precision`` against its fp32 self."""
    reference = as_precision(loaded, "fp32")
    candidate = as_precision(loaded, precision, image_engine)
    extra = {}
    if image_engine is not None:
        import onnxruntime

        extra["onnxruntime"] = onnxruntime.__version__
    return cached_gate(reference, candidate, precision, extra)


def apply_precision(loaded: Any, requested: str | None) -> Any:
    """``loaded`` (float32) set to run in ``requested`` (see the module docstring).

    Raises
    ------
    NapariConchError
        ``int8`` without ONNX Runtime (one line naming the extra), or an export that fails.
    """
    device = loaded.device
    if requested in (None, AUTO):
        choice, reason, needs_gate = auto_choice(device)
        if not needs_gate:
            return as_precision_noted(loaded, choice, None)
        result = gate(loaded, choice)
        if result.passed:
            return as_precision_noted(
                loaded, choice, f"{choice}: {reason}; gate passed ({result.summary()})"
            )
        note = (
            f"fp32: {reason}, but the {choice} gate failed ({result.failure()}; {result.summary()})"
        )
        warnings.warn(PrecisionWarning(f"{loaded.source}: {note}"), stacklevel=3)
        return as_precision_noted(loaded, "fp32", note)
    if requested == "bf16" and device.type == "cpu":
        slow = bf16_cpu_note(device)
        if slow is not None:
            warnings.warn(PrecisionWarning(slow), stacklevel=3)
        return _gated(loaded, "bf16", None)
    if requested == "int8":
        from napari_conch.model.int8 import load_int8_encoder

        return _gated(loaded, "int8", load_int8_encoder(loaded))
    return as_precision_noted(loaded, requested, None)


def _gated(loaded: Any, precision: str, image_engine: Any) -> Any:
    """``loaded`` in an explicitly asked ``precision``: gated; a failure warns but runs."""
    result = gate(loaded, precision, image_engine)
    if result.passed:
        note = f"{precision} (asked for): gate passed ({result.summary()})"
    else:
        note = (
            f"{precision} (asked for): gate FAILED ({result.failure()}; {result.summary()}); "
            f"running {precision} as asked"
        )
        warnings.warn(PrecisionWarning(f"{loaded.source}: {note}"), stacklevel=3)
    out = as_precision(loaded, precision, image_engine)
    out.precision_note = note
    return out


def as_precision_noted(loaded: Any, precision: str, note: str | None) -> Any:
    """``loaded`` in ``precision`` with ``note`` as its ``precision_note``."""
    out = as_precision(loaded, precision)
    out.precision_note = note
    return out
