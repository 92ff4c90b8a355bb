"""``napari-conch caption`` and ``rank-texts``."""

from __future__ import annotations

import json

import pytest
import torch

from napari_conch.cli import main
from tests.cli.conftest import refused

BOX = ["--box", "1200", "800", "1400", "960"]


def model_args(tiny_checkpoint, tokenizer_path):
    ckpt, config = tiny_checkpoint
    return [
        "--model",
        str(ckpt),
        "--config",
        str(config),
        "--tokenizer",
        str(tokenizer_path),
        "--device",
        "cpu",
    ]


def test_rank_texts_json(capsys, svs_path, tiny_checkpoint, tokenizer_path):
    args = ["rank-texts", str(svs_path), *BOX, "--text", "tumor", "--text", "stroma", "--json"]
    assert main(args + model_args(tiny_checkpoint, tokenizer_path)) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert {r["text"] for r in ranking} == {"tumor", "stroma"}
    assert abs(sum(r["probability"] for r in ranking) - 1) < 1e-5


def test_rank_texts_prompt_set_table(capsys, svs_path, tiny_checkpoint, tokenizer_path, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps(
            {
                "classnames": {"tumor": ["tumor", "carcinoma"], "stroma": ["stroma"]},
                "templates": ["CLASSNAME.", "an image of CLASSNAME."],
            }
        )
    )
    args = ["rank-texts", str(svs_path), *BOX, "--prompts", str(prompts)]
    assert main(args + model_args(tiny_checkpoint, tokenizer_path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["text", "probability", "cosine"] and len(out) == 3


def test_caption_prints_a_caption(capsys, svs_path, tiny_checkpoint, tokenizer_path):
    args = ["caption", str(svs_path), *BOX, "--strategy", "greedy", "--max-length", "6"]
    assert main(args + model_args(tiny_checkpoint, tokenizer_path)) == 0
    assert capsys.readouterr().out.endswith("\n")


@pytest.mark.slow
def test_caption_without_decoder_is_one_clear_line(
    capsys, svs_path, tiny_reference, tiny_checkpoint, tokenizer_path, tmp_path
):
    state = {
        k: v for k, v in tiny_reference["state_dict"].items() if not k.startswith("text_decoder.")
    }
    ckpt = tmp_path / "no_decoder.bin"
    torch.save(state, ckpt)
    _, config = tiny_checkpoint
    args = ["caption", str(svs_path), *BOX, *model_args((ckpt, config), tokenizer_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no captioning decoder" in err and "rank-texts" in err


def test_empty_box_is_a_clear_error(capsys, svs_path, tiny_checkpoint, tokenizer_path):
    args = ["rank-texts", str(svs_path), "--box", "10", "10", "5", "5", "--text", "tumor"]
    assert main(args + model_args(tiny_checkpoint, tokenizer_path)) == 2
    assert "is empty" in capsys.readouterr().err


@pytest.mark.slow
def test_huge_box_is_clipped_and_ranked(capsys, svs_path, tiny_checkpoint, tokenizer_path):
    """The box of the issue (it tried to allocate 112 GiB): clipped to the 2967 x 2220 slide."""
    box = ["--box", "-100000", "-100000", "100000", "100000"]
    args = ["rank-texts", str(svs_path), *box, "--text", "tumor", "--text", "glass", "--json"]
    assert main(args + model_args(tiny_checkpoint, tokenizer_path)) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert abs(sum(r["probability"] for r in ranking) - 1) < 1e-5


def test_box_outside_the_slide_is_one_line(capsys, svs_path, tiny_checkpoint, tokenizer_path):
    box = ["--box", "5000", "5000", "6000", "6000"]
    args = ["rank-texts", str(svs_path), *box, "--text", "tumor"]
    assert main(args + model_args(tiny_checkpoint, tokenizer_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lies outside cmu_small_region" in err


def test_no_model_offers_the_demo_model(capsys, svs_path, monkeypatch):
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    assert main(["rank-texts", str(svs_path), *BOX, "--text", "tumor"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model demo" in err
    assert main(["embed", str(svs_path)]) == 2
    assert "--model demo" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--min-length", "50", "--max-length", "5"], "min_length=50 is more than max_length=5"),
        (["--strategy", "top_p", "--temperature", "nan"], "argument --temperature: nan: expected"),
        (["--repetition-penalty", "0"], "argument --repetition-penalty: 0: must be greater than 0"),
        (["--beams", "0"], "argument --beams: 0: must be at least 1"),
    ],
)
def test_caption_settings_are_checked_before_any_work(
    capsys, svs_path, tiny_checkpoint, tokenizer_path, extra, words
):
    """These were accepted (exit 0) or ended in a traceback from the decoding loop."""
    argv = ["caption", str(svs_path), *BOX, *extra, *model_args(tiny_checkpoint, tokenizer_path)]
    line = refused(main, argv, capsys)
    assert line.startswith("napari-conch caption: error:") and words in line


@pytest.mark.parametrize("box", [["nan", "0", "10", "10"], ["0", "0", "inf", "10"]])
def test_box_corners_must_be_finite(capsys, svs_path, tiny_checkpoint, tokenizer_path, box):
    argv = ["rank-texts", str(svs_path), "--box", *box, "--text", "tumor",
            *model_args(tiny_checkpoint, tokenizer_path)]  # fmt: skip
    assert "argument --box:" in refused(main, argv, capsys)


def test_device_meta_is_one_line(capsys, svs_path, tiny_checkpoint, tokenizer_path):
    argv = ["rank-texts", str(svs_path), *BOX, "--text", "tumor",
            *model_args(tiny_checkpoint, tokenizer_path), "--device", "meta"]  # fmt: skip
    assert "'meta' is not a device that computes" in refused(main, argv, capsys)


def test_a_prompt_file_nested_100000_deep_is_one_line(
    capsys, svs_path, tiny_checkpoint, tokenizer_path, tmp_path
):
    """It ended in a RecursionError from the JSON parser."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    argv = ["rank-texts", str(svs_path), *BOX, "--prompts", str(deep),
            *model_args(tiny_checkpoint, tokenizer_path)]  # fmt: skip
    assert f"prompt file {deep} is nested 100000 levels deep" in refused(main, argv, capsys)


def test_rank_texts_over_a_100k_tiff_without_pyramid_is_refused(
    capsys, tiny_checkpoint, tokenizer_path, tmp_path
):
    """It decoded every level-0 tile (138 s, no word) to shrink the box; now it says why not."""
    from tests.slide.forged import tiff_claiming

    big = tiff_claiming(tmp_path / "big.tif", 100_000, 100_000)
    argv = ["rank-texts", str(big), "--box", "0", "0", "100000", "100000", "--text", "tumor",
            *model_args(tiny_checkpoint, tokenizer_path)]  # fmt: skip
    line = refused(main, argv, capsys)
    assert "is 100000 x 100000 px at level 0, its coarsest: reading it would decode 10,000 Mpx" in (
        line
    )
