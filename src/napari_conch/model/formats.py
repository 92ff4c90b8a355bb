"""The number formats the image encoder runs in, and what the CPU offers (no torch imported).

``--precision`` takes one of :data:`PRECISION_CHOICES`:

- ``auto`` (the default): on CUDA, bf16 where the GPU supports it, else fp32; on a CPU with
  native bf16 (:data:`CPU_BF16_FLAGS`), bf16 when the model passes the parity gate
  (:mod:`napari_conch.model.precision_gate`), else fp32; on any other CPU, fp32.
- ``fp32``: CONCH-exact float32.
- ``bf16``: autocast to bfloat16 (CUDA, or a CPU; several times slower than fp32 on a CPU
  without native bf16).
- ``fp16``: autocast to float16 (CUDA only).
- ``int8``: the image encoder exported to ONNX and quantised (dynamic int8) for ONNX Runtime on
  the CPU (:mod:`napari_conch.model.int8`; the optional extra ``napari-conch[int8]``); the text
  encoder stays float32.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

AUTO = "auto"
#: What ``--precision`` accepts.
PRECISION_CHOICES = (AUTO, "fp32", "bf16", "fp16", "int8")
#: The precisions a model runs in (``auto`` resolves to one of these).
RESOLVED_PRECISIONS = PRECISION_CHOICES[1:]
#: /proc/cpuinfo flags of CPUs with native bf16 arithmetic (Intel AMX, AVX512-BF16 on Intel
#: Cooper Lake and later and AMD Zen 4 and later).
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: The optional dependency group of the int8 path.
INT8_EXTRA = "int8"
#: The file the CPU's flags are read from; ``$NAPARI_CONCH_CPUINFO`` names another (the test
#: suite points it at ``os.devnull`` so that ``auto`` is the same on every CPU, and at a fixture
#: with ``avx512_bf16`` where it tests the bf16 choice).
CPUINFO = Path("/proc/cpuinfo")
CPUINFO_ENV = "NAPARI_CONCH_CPUINFO"


class PrecisionWarning(UserWarning):
    """A number format's parity gate failed: ``auto`` fell back to fp32, or an explicitly asked
    format runs although its numbers drift; also bf16 asked for on a CPU without native bf16."""


def cpuinfo_path() -> Path:
    """``$NAPARI_CONCH_CPUINFO`` when set, else ``/proc/cpuinfo``."""
    env = os.environ.get(CPUINFO_ENV)
    return Path(env) if env else CPUINFO


def cpu_flags(path: Path | None = None) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none: macOS,
    Windows)."""
    path = cpuinfo_path() if path is None else path
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_name(path: Path | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    path = cpuinfo_path() if path is None else path
    try:
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_native_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The flag that gives this CPU native bf16 (``amx_bf16``, ``avx512_bf16``), or ``None``."""
    flags = cpu_flags() if flags is None else flags
    for flag in CPU_BF16_FLAGS:
        if flag in flags:
            return flag
    return None


def no_native_bf16_reason() -> str:
    """Why ``auto`` stays fp32 on this CPU."""
    return f"CPU has no native bf16 (none of {', '.join(CPU_BF16_FLAGS)})"
