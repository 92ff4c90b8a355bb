"""``--precision``: accepted by every command that loads a model, refused in one line when it
cannot run, said by ``info`` and by ``embed``'s log."""

from __future__ import annotations

import sys

import pytest

from napari_conch.cli import build_parser, main
from napari_conch.model import clear_model_cache
from napari_conch.model import precision_gate as gate_mod
from napari_conch.samples import HGSC_HELDOUT

#: The commands that load a model (``view`` loads it through the napari Model panel).
MODEL_COMMANDS = (
    "embed", "demo", "caption", "rank-texts", "classify-slides", "query", "top-tiles", "learn",
    "search",
)  # fmt: skip


def subparser(name: str):
    import argparse

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gate_mod, "GATE_MAX_TILES", 8)
    clear_model_cache()
    yield tmp_path
    clear_model_cache()


@pytest.fixture
def bf16_cpu(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\nflags\t\t: avx2 avx512_bf16\n")
    monkeypatch.setenv("NAPARI_CONCH_CPUINFO", str(info))


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_precision(command):
    (action,) = [a for a in subparser(command)._actions if "--precision" in a.option_strings]
    assert tuple(action.choices) == ("auto", "fp32", "bf16", "fp16", "int8")
    assert action.default == "auto"


def test_an_unknown_precision_is_argparses_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["embed", "slide.svs", "--precision", "fp64"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--precision: invalid choice: 'fp64'" in err


def test_int8_without_the_extra_is_one_line_exit_2(fresh, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code = main(["demo", "--out", str(fresh / "out"), "--precision", "int8", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("napari-conch demo: error: precision int8 needs ONNX Runtime")
    assert "pip install 'napari-conch[int8]'" in err[-1]


def test_fp16_on_the_cpu_is_one_line_exit_2(fresh, capsys):
    code = main(["demo", "--out", str(fresh / "out"), "--precision", "fp16", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "napari-conch demo: error: precision fp16 is only supported on CUDA, not cpu"


def test_info_says_what_auto_picks_on_a_cpu_without_native_bf16(capsys, monkeypatch):
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("precision (auto)")]
    assert line.endswith("fp32: CPU has no native bf16 (none of amx_bf16, avx512_bf16)")
    assert any(x.startswith("precision int8: ") for x in out.splitlines())


def test_info_says_bf16_and_the_gate_on_a_bf16_cpu(fresh, bf16_cpu, capsys):
    assert main(["info", "--model", "demo"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("precision (auto)")]
    assert "on Test CPU: bf16: CPU has avx512_bf16; gate passed (min cosine" in line


def test_info_and_embed_say_a_failed_gate(fresh, bf16_cpu, monkeypatch, capsys):
    monkeypatch.setattr(gate_mod, "MIN_COSINE", 1.0 + 1e-6)  # a bar bf16 cannot reach
    assert main(["info", "--model", "demo"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("precision (")]
    assert "fp32: CPU has avx512_bf16, but the bf16 gate failed (min cosine" in line
    clear_model_cache()
    args = ["embed", str(HGSC_HELDOUT), "--model", "demo", "--store", str(fresh / "stores")]
    assert main([*args, "--quiet", "--tile-size", "448"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert any(
        x.startswith("napari-conch embed: precision fp32: CPU has avx512_bf16, but the bf16 gate")
        for x in err
    ), err
