"""LoadedModel's public API: wrongly typed or empty inputs are one-line InputErrors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_conch.errors import InputError
from napari_conch.model import load_model


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


def test_a_string_is_one_text_not_its_characters(demo):
    """``embed_texts("a string")`` embedded each of its 8 characters."""
    one = demo.embed_texts("a string")
    assert one.shape == (1, demo.embed_dim)
    torch.testing.assert_close(one, demo.embed_texts(["a string"]))
    assert demo.rank_texts(np.full((1, 128, 128, 3), 200, np.uint8), "tumor").shape == (1, 1)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda m: m.embed_texts([]), "no text given"),
        (lambda m: m.embed_texts(["a", 3]), r"text 1 is not a string \(int\)"),
        (lambda m: m.embed_texts(7), "texts must be a string or a list of strings, not int"),
        (lambda m: m.embed_images(np.zeros((0, 128, 128, 3), np.uint8)), "an empty batch"),
        (lambda m: m.embed_images(np.zeros((2, 0, 128, 3), np.uint8)), "have no pixels"),
        (lambda m: m.embed_images(np.zeros((0, 0, 3), np.uint8)), "have no pixels"),
        (lambda m: m.caption(np.zeros((0, 128, 128, 3), np.uint8)), "an empty batch"),
        (lambda m: m.rank_texts(np.zeros((1, 128, 128, 3), np.uint8), []), "no text given"),
    ],
)
def test_empty_or_wrongly_typed_inputs_are_one_line(demo, call, words):
    """These ended in RuntimeError (reshape of 0 elements), ZeroDivisionError or TypeError."""
    with pytest.raises(InputError, match=words) as info:
        call(demo)
    assert "\n" not in str(info.value)
