"""CLIP tokenizers: ids equal to open_clip's tokenizer (QuiltNet) and transformers'
CLIPTokenizer (PLIP) on pathology phrases, punctuation, unicode and long texts."""

from __future__ import annotations

import pytest
import torch

from napari_conch.errors import TokenizerNotFoundError
from napari_conch.model.clip_tokenizer import ClipTokenizer
from tests.model.clip_folders import write_tokenizer_files
from tests.model.reference_libs import import_open_clip, import_transformers

TEXTS = [
    "tumor",
    "a photomicrograph showing invasive ductal carcinoma.",
    "an H&E image of lymphocytes",
    "an H&E stained image showing CLASSNAME.",
    "H&amp;E stain, 40x magnification",
    "Lymphocytes, H&E.",
    "adipose tissue",
    "necrosis",
    "normal colonic mucosa",
    "cancer-associated stroma",
    "debris / mucus",
    "smooth muscle (muscularis propria)",
    "Gleason pattern 4 + 3 = 7",
    "Ki-67 index: 35%",
    "HER2 3+ membranous staining",
    "p53-null, PD-L1 (22C3) TPS ≥ 50%",
    "mitoses: 12/10 HPF",
    "well-differentiated adenocarcinoma",
    "It's the tumour's margin, isn't it?",
    "they'll see we've done it; I'm sure you'd agree",
    "“curly quotes” and ‘single’ ones",
    "naïve café résumé",
    "Ångström µm α-SMA β-catenin",
    "über Färbung: Hämatoxylin–Eosin",
    "細胞 がん 病理",
    "émoji 🔬🧫 test",
    "tabs\tand\nnewlines   and   spaces",
    "   leading and trailing   ",
    "UPPER CASE SHOUTING",
    "MiXeD CaSe WoRdS",
    "numbers 1234567890 and 3.14159",
    "punctuation!!! ??? ... ,,, ;;; :::",
    "<start_of_text> inside",
    "<end_of_text> inside",
    "<|endoftext|> inside",
    "e-mail@example.com http://x.org/a?b=c",
    "fullwidth ＡＢＣ １２３",
    "ligature ﬁne ﬂow",
    "non\u00a0breaking\u2003space",
    "a",
    "",
    "tumor " * 100,
    "carcinoma, " * 40,
    " ".join(f"word{i}" for i in range(90)),
]


def test_enough_texts():
    assert len(TEXTS) >= 40


def test_open_clip_ids_equal():
    open_clip = import_open_clip()
    reference = open_clip.get_tokenizer("ViT-B-32")  # QuiltNet's (open_clip's default)
    ours = ClipTokenizer.open_clip()
    for text in TEXTS:
        assert torch.equal(ours.encode(text), reference([text])), text
    assert torch.equal(ours.encode(TEXTS), reference(TEXTS))


@pytest.mark.slow
@pytest.mark.parametrize("with_tokenizer_json", [False, True])
def test_transformers_ids_equal(tmp_path, with_tokenizer_json):
    transformers = import_transformers()
    write_tokenizer_files(tmp_path)
    reference = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    if with_tokenizer_json:  # as PLIP's repository ships it
        reference.save_pretrained(tmp_path)
        assert (tmp_path / "tokenizer.json").is_file()
        reference = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    ours = ClipTokenizer.from_folder(tmp_path, vocab_size=49408)
    assert ours.path.name == ("tokenizer.json" if with_tokenizer_json else "vocab.json")
    expected = reference(
        TEXTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
    )["input_ids"]
    for row, text in enumerate(TEXTS):
        assert ours.encode(text)[0].tolist() == expected[row].tolist(), text


def test_truncation_keeps_the_end_token():
    ours = ClipTokenizer.open_clip()
    ids = ours.encode("tumor " * 100)[0]
    assert ids[0] == ours.sot_id and ids[-1] == ours.eot_id and len(ids) == 77


def test_folder_without_tokenizer_files(tmp_path):
    with pytest.raises(TokenizerNotFoundError, match=r"no tokenizer\.json"):
        ClipTokenizer.from_folder(tmp_path)


def test_tokenizer_of_another_vocabulary_is_refused(tmp_path):
    write_tokenizer_files(tmp_path)
    with pytest.raises(TokenizerNotFoundError, match="49408 ids but the model's vocabulary"):
        ClipTokenizer.from_folder(tmp_path, vocab_size=32000)


def test_broken_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerNotFoundError, match="cannot be read"):
        ClipTokenizer.from_folder(tmp_path)
