"""``napari-conch --help``, ``--version`` and ``info``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_conch import __version__
from napari_conch.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-conch {__version__}"
    assert main([]) == 0
    assert "info" in capsys.readouterr().out


def test_info_reports_device_weights_and_tokenizer(capsys, monkeypatch, tokenizer_path, tmp_path):
    monkeypatch.setenv("NAPARI_CONCH_TOKENIZER", str(tokenizer_path))
    missing = tmp_path / "pytorch_model.bin"
    assert main(["info", "--model", str(missing)]) == 0
    out = capsys.readouterr().out
    assert f"napari-conch {__version__}" in out
    assert "device: cpu" in out
    assert f"weights: {missing} (NOT FOUND)" in out
    assert f"tokenizer: {tokenizer_path}" in out


def test_info_without_tokenizer_says_how_to_get_it(capsys, monkeypatch):
    monkeypatch.delenv("NAPARI_CONCH_TOKENIZER", raising=False)
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "weights: none configured" in out
    assert "tokenizer: not found" in out and "--tokenizer" in out
    (demo,) = [line for line in out.splitlines() if line.startswith("demo model:")]
    assert "--model demo" in demo and "not CONCH" in demo and "napari-conch view" in demo


def test_info_about_the_demo_model_source(capsys, monkeypatch):
    monkeypatch.delenv("NAPARI_CONCH_TOKENIZER", raising=False)
    from napari_conch.demo import demo_model_paths

    weights, _, tokenizer = demo_model_paths()
    assert main(["info", "--model", "demo"]) == 0
    out = capsys.readouterr().out
    assert f"weights: demo (demo model, not CONCH; {weights})" in out
    assert f"tokenizer: {tokenizer} (comes with the model)" in out
    assert "demo model: available" not in out  # weights are configured: the demo itself


def test_info_says_when_the_demo_files_are_missing(capsys, monkeypatch):
    import napari_conch.demo
    from napari_conch.errors import CheckpointError

    def missing():
        raise CheckpointError("the demo model's file 'demo_coca.pt' is missing")

    monkeypatch.setattr(napari_conch.demo, "demo_model_paths", missing)
    assert main(["info", "--model", "demo"]) == 0
    out = capsys.readouterr().out
    assert "weights: demo (demo model, not CONCH): NOT FOUND: the demo model's file" in out


@pytest.mark.slow
def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "napari_conch", "info"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "torch" in out.stdout


def test_user_error_is_one_line_without_traceback(capsys, tmp_path):
    assert main(["info", str(tmp_path / "missing.svs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "missing.svs" in err and "does not exist" in err


def test_info_describes_a_slide(capsys, svs_path):
    assert main(["info", str(svs_path)]) == 0
    out = capsys.readouterr().out
    assert "2220 x 2967 px" in out and "0.499 um/px (aperio)" in out and "levels: 1" in out


@pytest.mark.slow
def test_info_describes_a_store(capsys, svs_path, tmp_path):
    assert (
        main(
            [
                "embed",
                str(svs_path),
                "--model",
                "demo",
                "--tile-size",
                "256",
                "--device",
                "cpu",
                "--store",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    store = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["info", store]) == 0
    out = capsys.readouterr().out
    assert "model: demo" in out and "done" in out and "grid: " in out and "256 px" in out
