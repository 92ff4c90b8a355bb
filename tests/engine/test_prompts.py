"""Prompts, CONCH's templates, prompt files and class ensembling."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from napari_conch.engine.prompts import (
    CONCH_TEMPLATES,
    NO_TEMPLATES,
    PromptSet,
    embed_prompt_sets,
    ensemble_embeddings,
    load_prompt_set,
    text_queries,
)
from napari_conch.errors import InputError


class FakeEncoder:
    """A deterministic text encoder: each text -> a fixed random 8-d vector (not normalised)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts]
        return np.stack(rows).astype(np.float32) * 3.0


def test_conch_templates_are_the_22_of_conch() -> None:
    assert len(CONCH_TEMPLATES) == 22
    assert len(set(CONCH_TEMPLATES)) == 22
    assert all("CLASSNAME" in t for t in CONCH_TEMPLATES)
    assert CONCH_TEMPLATES[0] == "CLASSNAME."
    assert "an H&E stained image of CLASSNAME." in CONCH_TEMPLATES


def test_sentences_are_synonyms_times_templates() -> None:
    ps = PromptSet({"tumor": ["tumor", "carcinoma"], "stroma": "stroma"}, CONCH_TEMPLATES)
    sentences = ps.sentences()
    assert ps.names == ["tumor", "stroma"]
    assert len(sentences[0]) == 44 and len(sentences[1]) == 22
    assert "a photomicrograph of carcinoma." in sentences[0]
    assert PromptSet.from_prompts(["necrosis"], "none").sentences() == [["necrosis"]]


def test_ensemble_normalises_averages_renormalises() -> None:
    encoder = FakeEncoder()
    ps = PromptSet({"a": ["x", "y"], "b": ["z"]}, ("CLASSNAME", "an image of CLASSNAME."))
    names, emb = embed_prompt_sets(encoder, ps)
    assert names == ["a", "b"]
    assert len(encoder.calls) == 1  # one pass of the text encoder for every sentence
    raw = encoder.embed_texts(["x", "an image of x.", "y", "an image of y."])
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    expected = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    np.testing.assert_allclose(emb[0], expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert emb.dtype == np.float32


def test_ensemble_rejects_zero_vectors() -> None:
    with pytest.raises(InputError, match="zero"):
        ensemble_embeddings([np.zeros((2, 4), np.float32)])


def test_duplicate_classes_are_refused() -> None:
    with pytest.raises(InputError, match="more than once"):
        PromptSet.from_prompts(["tumor", "tumor"])
    with pytest.raises(InputError, match="more than once"):
        embed_prompt_sets(FakeEncoder(), PromptSet.from_prompts(["a"]), PromptSet({"a": ["b"]}))


def test_load_prompt_set_conch_format(tmp_path) -> None:
    path = tmp_path / "prompts.json"
    data = {"classnames": {"tumor": ["tumor", "carcinoma"]}, "templates": ["CLASSNAME, H&E."]}
    path.write_text(json.dumps(data))
    ps = load_prompt_set(path)
    assert ps.classnames == {"tumor": ("tumor", "carcinoma")}
    assert ps.templates == ("CLASSNAME, H&E.",)
    path.write_text(json.dumps({"classnames": {"tumor": ["tumor"]}}))
    assert load_prompt_set(path, "none").templates == NO_TEMPLATES
    assert load_prompt_set(path).templates == CONCH_TEMPLATES


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"classnames": {"a": ["b"]', "not valid JSON"),
        ("[1, 2]", "classnames"),
        ('{"classnames": {}}', "classnames"),
        ('{"classnames": {"a": 3}}', "list of synonyms"),
        ('{"classnames": {"a": []}}', "synonyms"),
        ('{"classnames": {"a": ["b"]}, "templates": ["no placeholder"]}', "CLASSNAME"),
        ('{"classnames": {"a": ["b"]}, "templates": []}', "empty"),
        ('{"classnames": {"a": ["b"]}, "prompts": []}', "unknown entry"),
    ],
)
def test_bad_prompt_files_give_clear_errors(tmp_path, text, match) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        load_prompt_set(path)
    assert str(path) in str(info.value)


def test_missing_prompt_file(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_prompt_set(tmp_path / "nope.json")


def test_unknown_template_set() -> None:
    with pytest.raises(InputError, match="unknown template set"):
        PromptSet.from_prompts(["a"], "clip")


@pytest.mark.slow
def test_text_queries_with_the_tiny_model(tiny_model) -> None:
    names, emb = text_queries(tiny_model, ["tumor", "stroma"], templates="none")
    direct = tiny_model.embed_texts(["tumor", "stroma"]).numpy()
    assert names == ["tumor", "stroma"]
    assert emb.shape == (2, tiny_model.embed_dim)
    np.testing.assert_allclose(emb, direct, atol=1e-6)
    _, ensembled = text_queries(tiny_model, ["tumor"], templates="conch")
    np.testing.assert_allclose(np.linalg.norm(ensembled), 1.0, atol=1e-6)
    assert not np.allclose(ensembled[0], direct[0], atol=1e-3)


#: CONCH's released NSCLC prompt file, in the form its repository ships it (wrapped in "0").
NSCLC_WRAPPED = {
    "0": {
        "classnames": {
            "LUAD": [
                "adenocarcinoma",
                "lung adenocarcinoma",
                "adenocarcinoma of the lung",
                "LUAD",
            ],
            "LUSC": [
                "squamous cell carcinoma",
                "lung squamous cell carcinoma",
                "squamous cell carcinoma of the lung",
                "LUSC",
            ],
        },
        "templates": list(CONCH_TEMPLATES),
    }
}


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "bare"])
def test_conch_prompt_files_load_in_both_forms(tmp_path, wrapped) -> None:
    path = tmp_path / "nsclc_prompts_all_per_class.json"
    data = NSCLC_WRAPPED if wrapped else NSCLC_WRAPPED["0"]
    path.write_text(json.dumps(data, indent=4))
    ps = load_prompt_set(path, templates="none")  # the file's own templates win
    assert ps.names == ["LUAD", "LUSC"]
    assert ps.classnames["LUSC"][0] == "squamous cell carcinoma"
    assert ps.templates == CONCH_TEMPLATES
    assert [len(s) for s in ps.sentences()] == [4 * 22, 4 * 22]


def test_expansion_is_conchs_zero_shot_classifier_brute_force(tmp_path) -> None:
    """Every synonym x every template, each normalised, averaged, re-normalised, per class."""
    path = tmp_path / "nsclc.json"
    path.write_text(json.dumps(NSCLC_WRAPPED))
    ps = load_prompt_set(path)
    encoder = FakeEncoder()
    names, emb = embed_prompt_sets(encoder, ps)
    embedded = [t for call in encoder.calls for t in call]
    assert names == ["LUAD", "LUSC"]
    inner = NSCLC_WRAPPED["0"]
    for k, cls in enumerate(inner["classnames"]):
        per_synonym = []
        expected_sentences = []
        for synonym in inner["classnames"][cls]:
            texts = [t.replace("CLASSNAME", synonym) for t in inner["templates"]]
            expected_sentences += texts
            raw = encoder.embed_texts(texts).astype(np.float64)
            per_synonym.append(raw / np.linalg.norm(raw, axis=1, keepdims=True))
        mean = np.stack(per_synonym).mean(axis=(0, 1))
        np.testing.assert_allclose(emb[k], mean / np.linalg.norm(mean), atol=1e-6)
        assert ps.sentences()[k] == expected_sentences
    assert embedded == [t for s in ps.sentences() for t in s]  # each sentence embedded once


def test_a_wrapper_with_several_sets_is_refused(tmp_path) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"0": NSCLC_WRAPPED["0"], "1": NSCLC_WRAPPED["0"]}))
    with pytest.raises(InputError, match="holds 2 prompt sets") as info:
        load_prompt_set(path)
    assert str(path) in str(info.value)
    path.write_text(json.dumps({"0": {"templates": ["CLASSNAME."]}}))
    with pytest.raises(InputError, match="classnames"):
        load_prompt_set(path)
