"""Captions of the demo concepts: every synonym in every template of its stain."""

from __future__ import annotations

import numpy as np


def concept_captions(data_list: dict) -> dict[str, list[str]]:
    """All captions of each concept (synonym x template), in a fixed order."""
    templates = data_list["templates"]
    out = {}
    for name, concept in data_list["concepts"].items():
        forms = templates[concept["templates"]]
        out[name] = [form.format(word) for word in concept["synonyms"] for form in forms]
    return out


def prompts(data_list: dict) -> dict[str, str]:
    """The one prompt per concept that the evaluation and the model card use."""
    return {name: concept["prompt"] for name, concept in data_list["concepts"].items()}


def sample_captions(
    concepts: list[str], captions: dict[str, list[str]], rng: np.random.Generator
) -> list[str]:
    """One random caption for each concept name in ``concepts``."""
    return [captions[c][rng.integers(len(captions[c]))] for c in concepts]
