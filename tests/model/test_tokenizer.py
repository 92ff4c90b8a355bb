"""CONCH's tokenizer: bit-exact ids, clean decoding, and the search for the file."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from napari_conch.errors import TokenizerNotFoundError
from napari_conch.model import Tokenizer, find_tokenizer
from napari_conch.model.tokenizer import TOKENIZER_ENV, TOKENIZER_FILENAME
from tests.conftest import require_fixture


@pytest.fixture(scope="module")
def parity():
    return json.loads(require_fixture("reference/tokenizer_parity.json").read_text())


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return Tokenizer.from_file(tokenizer_path)


def test_ids_bit_exact_with_reference(tokenizer, parity):
    ids = tokenizer.encode(parity["texts"])
    expected = torch.tensor(parity["token_ids"], dtype=torch.long)
    assert len(parity["texts"]) == 54
    assert ids.dtype == torch.long and ids.shape == (54, 128)
    for text, row, ref in zip(parity["texts"], ids, expected, strict=True):
        assert torch.equal(row, ref), f"token ids differ for {text!r}"


def test_layout_start_end_pad(tokenizer):
    ids = tokenizer.encode("tumor")
    assert ids.shape == (1, 128)
    row = ids[0].tolist()
    assert row[0] == 1 and 2 in row and row[-1] == 0
    long = tokenizer.encode("tumor " * 300)[0].tolist()
    assert long[126] == 2 and long[127] == 0  # truncated to 127 keeping <end_of_text>


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("An H&E image of tumor.", "an h&e image of tumor."),
        ("  leading and trailing spaces  ", "leading and trailing spaces"),
        ("Café naïve", "cafe naive"),
        ("tumor\tnecrosis\nmucin", "tumor necrosis mucin"),
        ("", ""),
        ("emoji 🔬 microscope", "emoji 🔬 microscope"),
    ],
)
def test_decode_round_trip(tokenizer, text, expected):
    assert tokenizer.decode(tokenizer.encode(text)[0]) == expected


def test_decode_batch_stops_at_end_token(tokenizer):
    ids = tokenizer.encode(["lymphocytes", "necrosis"])
    ids[0, 5:] = 77  # garbage after <end_of_text> is ignored
    assert tokenizer.decode(ids) == ["lymphocytes", "necrosis"]


def test_find_order_explicit_env_package_checkpoint(tmp_path, monkeypatch, tokenizer_path):
    monkeypatch.delenv(TOKENIZER_ENV, raising=False)
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    shutil.copy(tokenizer_path, ckpt_dir / TOKENIZER_FILENAME)
    checkpoint = str(ckpt_dir / "pytorch_model.bin")
    assert find_tokenizer(checkpoint=checkpoint) == ckpt_dir / TOKENIZER_FILENAME

    pkg = tmp_path / "site" / "conch"
    (pkg / "open_clip_custom" / "tokenizers").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(tokenizer_path, pkg / "open_clip_custom" / "tokenizers" / TOKENIZER_FILENAME)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "conch", raising=False)
    found = find_tokenizer(checkpoint=checkpoint)
    assert found == pkg / "open_clip_custom" / "tokenizers" / TOKENIZER_FILENAME

    monkeypatch.setenv(TOKENIZER_ENV, str(tokenizer_path))
    assert find_tokenizer(checkpoint=checkpoint) == tokenizer_path
    explicit = ckpt_dir / TOKENIZER_FILENAME
    assert find_tokenizer(explicit, checkpoint=checkpoint) == explicit


def test_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKENIZER_ENV, str(tmp_path / "nope.json"))
    with pytest.raises(TokenizerNotFoundError) as err:
        find_tokenizer(checkpoint=str(tmp_path / "model.bin"))
    message = str(err.value)
    assert "\n" not in message
    assert "nope.json" in message and str(tmp_path) in message and "--tokenizer" in message


def test_explicit_missing_or_invalid_file(tmp_path):
    with pytest.raises(TokenizerNotFoundError, match="does not exist"):
        find_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerNotFoundError, match="not a tokenizer JSON"):
        Tokenizer.from_file(bad)


def test_a_tokenizer_with_ids_past_the_model_is_refused_at_load(tokenizer_path):
    """CONCH's tokenizer (32007 ids) with the demo model (877): an index error at the first text."""
    from napari_conch.model import load_model

    with pytest.raises(TokenizerNotFoundError) as info:
        load_model("demo", tokenizer=tokenizer_path, device="cpu")
    assert "has 32007 ids but the model's vocabulary has 877" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_tokenizer_of_another_vocabulary_that_fits_is_refused(tiny_checkpoint):
    """The demo tokenizer's ids all fit CONCH's 32007 rows: scores of the wrong words, silently."""
    from napari_conch.demo import demo_model_paths
    from napari_conch.model import load_model

    ckpt, config = tiny_checkpoint
    demo_tokenizer = demo_model_paths()[2]
    with pytest.raises(TokenizerNotFoundError, match="has 877 ids but the model's vocabulary has"):
        load_model(ckpt, config=config, tokenizer=demo_tokenizer, device="cpu")
