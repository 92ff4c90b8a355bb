"""Number formats: what ``auto`` picks per CPU, the parity gate, its cache, and the warnings.

The suite runs with ``NAPARI_CONCH_CPUINFO`` at ``os.devnull`` (no CPU flags, so ``auto`` is fp32
on every CPU); the tests of the bf16 choice point it at a cpuinfo with ``avx512_bf16``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from napari_conch.errors import NapariConchError
from napari_conch.model import clear_model_cache, load_model
from napari_conch.model import precision_gate as gate_mod
from napari_conch.model.device import auto_choice, resolve_precision
from napari_conch.model.formats import PrecisionWarning, cpu_flags, cpu_native_bf16
from napari_conch.model.precision_gate import GateResult, compare, gate_tiles, run_gate

CPU = torch.device("cpu")


@pytest.fixture
def bf16_cpu(tmp_path, monkeypatch):
    """A cpuinfo saying the CPU has avx512_bf16 (as this project's EPYC and current Xeons)."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512_bf16\n")
    monkeypatch.setenv("NAPARI_CONCH_CPUINFO", str(info))
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of the test's own (gate results, int8 encoders); the gate measures 24
    tiles of the sample (the tests of its figures measure them all)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(folder))
    monkeypatch.setattr(gate_mod, "GATE_MAX_TILES", 24)
    clear_model_cache()
    yield folder
    clear_model_cache()


# --------------------------------------------------------------------------- the CPU's flags
def test_cpu_flags_decide_what_auto_offers(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("flags\t: sse avx512f amx_bf16 amx_tile\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t: sse avx2 fma\n")
    assert cpu_native_bf16(cpu_flags(amx)) == "amx_bf16"
    assert cpu_native_bf16(cpu_flags(avx2)) is None
    assert cpu_flags(tmp_path / "missing") == frozenset()  # no /proc/cpuinfo (macOS, Windows)


def test_auto_is_fp32_on_a_cpu_without_native_bf16():
    choice, reason, needs_gate = auto_choice(CPU)  # the suite's CPU has no flags
    assert (choice, needs_gate) == ("fp32", False)
    assert reason.startswith("CPU has no native bf16")
    assert resolve_precision("auto", CPU) == resolve_precision(None, CPU) == "fp32"


def test_auto_offers_bf16_on_a_cpu_with_native_bf16_subject_to_the_gate(bf16_cpu):
    assert auto_choice(CPU) == ("bf16", "CPU has avx512_bf16", True)
    assert resolve_precision("auto", CPU) == "fp32"  # until the gate has passed


@pytest.mark.parametrize(
    ("precision", "device", "words"),
    [
        ("fp64", "cpu", "unknown precision 'fp64'"),
        ("fp16", "cpu", "fp16 is only supported on CUDA"),
        ("int8", "cuda", "int8 runs on the CPU"),
        ("bf16", "meta", "bf16 is supported on CUDA and CPUs"),
    ],
)
def test_precisions_a_device_cannot_run_are_refused_in_one_line(precision, device, words):
    with pytest.raises(NapariConchError, match=words) as info:
        resolve_precision(precision, torch.device(device))
    assert "\n" not in str(info.value)


def test_bf16_and_int8_are_accepted_on_the_cpu():
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("int8", CPU) == "int8"


# ------------------------------------------------------------------------------ the gate
def test_compare_measures_cosine_and_label_agreement():
    torch.manual_seed(0)
    ref = torch.nn.functional.normalize(torch.randn(50, 16), dim=-1)
    classes = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    assert compare(ref, ref.clone(), classes) == pytest.approx((1.0, 1.0))
    noisy = ref + 0.3 * torch.randn(50, 16)
    cos, agreement = compare(ref, noisy, classes)
    assert cos < 0.99 and agreement < 1.0
    broken = ref.clone()
    broken[3] = float("nan")  # a non-finite embedding never passes
    result = GateResult("bf16", *compare(ref, broken, classes), tiles=50)
    assert not result.passed and "min cosine nan" in result.failure()


def test_gate_thresholds():
    assert GateResult("bf16", 0.9995, 0.99, 100).passed
    assert not GateResult("bf16", 0.9985, 1.0, 100).passed
    assert not GateResult("bf16", 1.0, 0.98, 100).passed
    text = GateResult("bf16", 0.99994, 1.0, 325).summary()
    assert text == "min cosine 0.99994, labels 100 % of 325 tiles"


def test_gate_tiles_come_from_the_held_out_sample():
    tiles = gate_tiles(128)
    assert tiles.dtype == np.uint8 and tiles.shape[1:] == (128, 128, 3)
    assert len(tiles) == 13 * 25  # half-overlapping over 1664 x 896 px
    assert len(gate_tiles(448, max_tiles=4)) == 4


@pytest.mark.slow
def test_demo_model_passes_the_bf16_gate_on_its_held_out_sample(cache):
    """The demo model, bf16 against fp32, over every held-out tile with its own prompts."""
    from napari_conch.model.precision_choice import as_precision

    fp32 = load_model("demo", device="cpu", precision="fp32")
    result = run_gate(fp32, as_precision(fp32, "bf16"), "bf16", tiles=gate_tiles(128))
    assert result.labels == "prompts" and result.tiles == 325
    assert result.passed, result.summary()
    assert result.min_cosine >= 0.999 and result.label_agreement >= 0.99


def _random_conch(tokenizer=None):
    """Full-size CONCH ViT-B/16 (448 px) with seeded random weights, as load_model makes it."""
    from napari_conch.model.build import build_model
    from napari_conch.model.config import CONCH_VITB16
    from napari_conch.model.loaded import LoadedModel
    from napari_conch.model.preprocess import Preprocess

    torch.manual_seed(0)
    model = build_model(CONCH_VITB16)
    return LoadedModel(
        model=model, config=CONCH_VITB16, device=CPU, precision="fp32", source="random CONCH",
        fingerprint="random-conch", preprocess=Preprocess(448), tokenizer_path=tokenizer,
    )  # fmt: skip


@pytest.mark.slow
def test_full_size_conch_with_random_weights_passes_the_bf16_gate(tokenizer_path):
    """CONCH ViT-B/16 at 448 px through the real preprocessing (resize, crop, normalise) on
    tiles of the held-out sample, labels from the demo concepts with CONCH's tokenizer."""
    from napari_conch.model.precision_choice import as_precision

    fp32 = _random_conch(tokenizer_path)
    result = run_gate(fp32, as_precision(fp32, "bf16"), "bf16", tiles=gate_tiles(448, 4))
    assert result.tiles == 4 and result.labels == "prompts"
    assert result.passed, result.summary()


def test_without_a_tokenizer_the_labels_are_anchor_tiles(tmp_path):
    """A model whose tokenizer is nowhere is still gated: anchor tiles stand in for prompts."""
    from napari_conch.model.precision_choice import as_precision

    fp32 = load_model("demo", device="cpu", precision="fp32")
    lost = as_precision(fp32, "fp32")
    lost.tokenizer_path, lost._tokenizer = tmp_path / "missing.json", None
    result = run_gate(lost, as_precision(lost, "bf16"), "bf16", tiles=gate_tiles(128, 40))
    assert result.labels == "anchor tiles" and "(anchor tiles)" in result.summary()
    assert result.passed, result.summary()


# -------------------------------------------------------------------------- auto, cached
def test_auto_picks_bf16_on_a_bf16_cpu_when_the_gate_passes_and_caches_it(
    bf16_cpu, cache, monkeypatch
):
    model = load_model("demo", device="cpu")
    assert model.precision == "bf16"
    assert model.precision_note.startswith("bf16: CPU has avx512_bf16; gate passed (min cosine")
    kept = list((cache / "precision-gate").glob("*-bf16-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["tiles"] == 24
    # the next load reads the kept result: the gate does not run again
    clear_model_cache()
    monkeypatch.setattr(gate_mod, "run_gate", _must_not_run)
    again = load_model("demo", device="cpu")
    assert again.precision == "bf16"
    # explicit fp32 shares the same modules (one model in memory)
    assert load_model("demo", device="cpu", precision="fp32").model is again.model


def _must_not_run(*args, **kwargs):
    raise AssertionError("the gate ran although its result was kept")


def test_a_damaged_kept_gate_result_is_measured_again(bf16_cpu, cache):
    load_model("demo", device="cpu")
    (kept,) = (cache / "precision-gate").glob("*.json")
    kept.write_text("{not json")
    clear_model_cache()
    assert load_model("demo", device="cpu").precision == "bf16"
    assert json.loads(kept.read_text())["precision"] == "bf16"


def test_a_failed_gate_under_auto_falls_back_to_fp32_and_says_so(bf16_cpu, cache, monkeypatch):
    # bf16 really runs and really falls short of a bar it cannot reach
    monkeypatch.setattr(gate_mod, "MIN_COSINE", 1.0 + 1e-6)
    with pytest.warns(PrecisionWarning, match="fp32: CPU has avx512_bf16, but the bf16 gate"):
        model = load_model("demo", device="cpu")
    assert model.precision == "fp32"
    assert "gate failed (min cosine" in model.precision_note


def test_a_failed_gate_under_explicit_bf16_warns_in_one_line_but_runs(bf16_cpu, cache, monkeypatch):
    monkeypatch.setattr(gate_mod, "MIN_COSINE", 1.0 + 1e-6)
    with pytest.warns(PrecisionWarning) as record:
        model = load_model("demo", device="cpu", precision="bf16")
    assert model.precision == "bf16"
    (warning,) = record
    assert "bf16 (asked for): gate FAILED" in str(warning.message)
    assert "\n" not in str(warning.message)


def test_explicit_bf16_on_a_cpu_without_native_bf16_warns_that_it_is_slow(cache):
    with pytest.warns(PrecisionWarning, match="emulated and slower than fp32"):
        model = load_model("demo", device="cpu", precision="bf16")
    assert model.precision == "bf16"


def test_fp32_is_conch_exact_and_unnoted(cache):
    model = load_model("demo", device="cpu")  # auto on a CPU without native bf16
    assert model.precision == "fp32" and model.precision_note is None
    assert not (cache / "precision-gate").exists()  # no gate needed, none ran


def test_no_warning_when_the_gate_passes(bf16_cpu, cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        load_model("demo", device="cpu")


def test_a_cache_folder_that_cannot_be_written_only_costs_a_new_gate(bf16_cpu, cache):
    cache.mkdir()
    (cache / "precision-gate").write_text("a file where the folder would be")
    model = load_model("demo", device="cpu")
    assert model.precision == "bf16"  # gated, not kept
    assert (cache / "precision-gate").read_text() == "a file where the folder would be"
