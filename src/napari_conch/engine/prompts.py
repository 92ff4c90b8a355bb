"""Text prompts and their embeddings, CONCH's way.

A *prompt set* is a list of classes, each with one or more synonyms, and a list of templates
holding the placeholder ``CLASSNAME``. Every class becomes ``synonyms x templates`` sentences;
each sentence is embedded and L2-normalised, the class embedding is their mean, normalised again
(CONCH's zero-shot recipe, Lu et al., *Nature Medicine* 2024). With the single template
``"CLASSNAME"`` a class is just its synonyms (a bare prompt is a class with one synonym).

Prompt sets load from JSON files in CONCH's format::

    {"classnames": {"tumor": ["tumor", "carcinoma"], "stroma": ["stroma"]},
     "templates": ["a photomicrograph showing CLASSNAME.", "CLASSNAME."]}

``templates`` may be left out; the caller's default templates are used then. CONCH's released
prompt files (``prompts/*.json`` in its repository) wrap that object in one more level,
``{"0": {"classnames": ..., "templates": ...}}``; both forms load unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.errors import InputError
from napari_conch.json_input import read_json

#: The placeholder that templates hold.
PLACEHOLDER = "CLASSNAME"

#: CONCH's 22 zero-shot templates.
CONCH_TEMPLATES: tuple[str, ...] = (
    "CLASSNAME.",
    "a photomicrograph showing CLASSNAME.",
    "a photomicrograph of CLASSNAME.",
    "an image of CLASSNAME.",
    "an image showing CLASSNAME.",
    "an example of CLASSNAME.",
    "CLASSNAME is shown.",
    "this is CLASSNAME.",
    "there is CLASSNAME.",
    "a histopathological image showing CLASSNAME.",
    "a histopathological image of CLASSNAME.",
    "a histopathological photograph of CLASSNAME.",
    "a histopathological photograph showing CLASSNAME.",
    "shows CLASSNAME.",
    "presence of CLASSNAME.",
    "CLASSNAME is present.",
    "an H&E stained image of CLASSNAME.",
    "an H&E stained image showing CLASSNAME.",
    "an H&E image showing CLASSNAME.",
    "an H&E image of CLASSNAME.",
    "CLASSNAME, H&E stain.",
    "CLASSNAME, H&E.",
)

#: The identity template: a class is embedded as its synonyms, nothing added.
NO_TEMPLATES: tuple[str, ...] = (PLACEHOLDER,)

#: QuiltNet's zero-shot templates: the four its authors' benchmark uses for histopathology
#: datasets (Ikezogwo et al., NeurIPS 2023; see docs/models.md for how far this was checked).
QUILTNET_TEMPLATES: tuple[str, ...] = (
    "a histopathology slide showing CLASSNAME",
    "histopathology image of CLASSNAME",
    "pathology tissue showing CLASSNAME",
    "presence of CLASSNAME tissue on image",
)

#: PLIP's zero-shot template (Huang et al., *Nature Medicine* 2023; see docs/models.md).
PLIP_TEMPLATES: tuple[str, ...] = ("An H&E image of CLASSNAME.",)

#: KEEP's zero-shot template: the class name and a full stop (its WSI evaluation prompts,
#: ``"templates": "CLASSNAME."``; Zhou et al. 2024; see docs/models.md).
KEEP_TEMPLATES: tuple[str, ...] = ("CLASSNAME.",)

#: BiomedCLIP's zero-shot template (its model card's example, ``"this is a photo of " + label``).
BIOMEDCLIP_TEMPLATES: tuple[str, ...] = ("this is a photo of CLASSNAME",)

#: Template choices by name (the CLI's ``--templates``).
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "conch": CONCH_TEMPLATES,
    "none": NO_TEMPLATES,
    "quiltnet": QUILTNET_TEMPLATES,
    "plip": PLIP_TEMPLATES,
    "keep": KEEP_TEMPLATES,
    "biomedclip": BIOMEDCLIP_TEMPLATES,
}


def model_templates(model: Any) -> str:
    """The name of a model's own template set: a CLIP-family model's (``quiltnet``, ``plip``,
    ``keep``, ``biomedclip``, or ``none`` for one napari-conch does not know), ``conch`` for
    CONCH and the demo model."""
    name = getattr(model, "templates", "conch")
    return name if name in TEMPLATE_SETS else "none"


def chosen_templates(templates: str | None, model: Any) -> str:
    """``templates`` when given (a name of :data:`TEMPLATE_SETS`), else the model's own set."""
    return templates if templates is not None else model_templates(model)


def resolve_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
    """Return a template tuple from a name in :data:`TEMPLATE_SETS` or a sequence of templates.

    Raises
    ------
    InputError
        When the name is unknown, the sequence is empty, or a template lacks ``CLASSNAME``.
    """
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            known = ", ".join(TEMPLATE_SETS)
            raise InputError(f"unknown template set {templates!r} (known: {known})")
        return TEMPLATE_SETS[templates]
    result = tuple(templates)
    if not result:
        raise InputError("the template list is empty")
    for template in result:
        if not isinstance(template, str) or PLACEHOLDER not in template:
            raise InputError(f"template {template!r} does not contain {PLACEHOLDER}")
    return result


@dataclass(frozen=True)
class PromptSet:
    """Classes with their synonyms, and the templates that turn them into sentences.

    Attributes
    ----------
    classnames
        Class name -> synonyms (at least one each), in class order.
    templates
        Sentences holding ``CLASSNAME``; :data:`NO_TEMPLATES` embeds the synonyms as they are.
    """

    classnames: Mapping[str, tuple[str, ...]]
    templates: tuple[str, ...] = NO_TEMPLATES

    def __post_init__(self) -> None:
        classes = {}
        for name, synonyms in self.classnames.items():
            synonyms = (synonyms,) if isinstance(synonyms, str) else tuple(synonyms)
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"class name {name!r} is empty or not text")
            if not synonyms or not all(isinstance(s, str) and s.strip() for s in synonyms):
                raise InputError(f"class {name!r} needs one or more non-empty synonyms")
            classes[name] = synonyms
        if not classes:
            raise InputError("the prompt set has no classes")
        object.__setattr__(self, "classnames", classes)
        object.__setattr__(self, "templates", resolve_templates(self.templates))

    @classmethod
    def from_prompts(
        cls, prompts: Sequence[str], templates: str | Sequence[str] = "conch"
    ) -> PromptSet:
        """One class per prompt, named by it, with the prompt as its only synonym."""
        if isinstance(prompts, str):
            prompts = [prompts]
        names = list(prompts)
        duplicates = sorted({p for p in names if names.count(p) > 1})
        if duplicates:
            raise InputError(f"prompt {duplicates[0]!r} is given more than once")
        return cls({p: (p,) for p in names}, resolve_templates(templates))

    @property
    def names(self) -> list[str]:
        """The class names, in order."""
        return list(self.classnames)

    def sentences(self) -> list[list[str]]:
        """Per class, the sentences to embed (synonyms x templates)."""
        return [
            [t.replace(PLACEHOLDER, s) for s in synonyms for t in self.templates]
            for synonyms in self.classnames.values()
        ]


def load_prompt_set(path: str | Path, templates: str | Sequence[str] = "conch") -> PromptSet:
    """Read a prompt set from a JSON file in CONCH's format.

    Parameters
    ----------
    path
        JSON file ``{"classnames": {CLASS: [synonyms]}, "templates": [...]}``, or that object
        wrapped as CONCH ships its prompt files: ``{"0": {...}}``.
    templates
        Templates used when the file has no ``"templates"`` entry.

    Raises
    ------
    InputError
        When the file is missing, is not JSON (or larger or more deeply nested than a prompt
        file may be, see :func:`~napari_conch.json_input.read_json`), or does not have that
        shape.
    """
    data = read_json(path, "prompt file")
    return prompt_set_from_dict(data, templates=templates, source=str(path))


def prompt_set_from_dict(
    data: Any, templates: str | Sequence[str] = "conch", source: str = "prompt set"
) -> PromptSet:
    """Build a :class:`PromptSet` from CONCH's prompt dictionary (see :func:`load_prompt_set`)."""
    data = unwrap_prompt_dict(data, source)
    if not isinstance(data, dict) or "classnames" not in data:
        raise InputError(f"{source}: expected an object with a 'classnames' entry")
    unknown = sorted(set(data) - {"classnames", "templates"})
    if unknown:
        raise InputError(f"{source}: unknown entry {unknown[0]!r} (expected classnames, templates)")
    classnames = data["classnames"]
    if not isinstance(classnames, dict) or not classnames:
        raise InputError(f"{source}: 'classnames' must map each class to a list of synonyms")
    for name, synonyms in classnames.items():
        if not isinstance(synonyms, list | str):
            raise InputError(f"{source}: class {name!r} must have a list of synonyms")
    chosen = data.get("templates", templates)
    if isinstance(chosen, list) and not all(isinstance(t, str) for t in chosen):
        raise InputError(f"{source}: 'templates' must be a list of strings")
    try:
        return PromptSet(classnames, resolve_templates(chosen))
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def unwrap_prompt_dict(data: Any, source: str = "prompt set") -> Any:
    """Return the inner object of CONCH's wrapped form ``{"0": {"classnames": ...}}``.

    An object with a ``classnames`` entry (or anything that is not an object) is returned as it
    is. A wrapper must hold exactly one prompt set; several are refused (name the one to use by
    writing it to its own file).
    """
    if not isinstance(data, dict) or "classnames" in data or not data:
        return data
    inner = [v for v in data.values() if isinstance(v, dict) and "classnames" in v]
    if len(inner) != len(data):
        return data  # not a wrapper: reported as a missing 'classnames' entry
    if len(inner) > 1:
        keys = ", ".join(repr(k) for k in data)
        raise InputError(f"{source}: holds {len(inner)} prompt sets ({keys}); give a file with one")
    return inner[0]


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise InputError("a text embedding is zero or not finite; it cannot be normalised")
    return x / norms


def encode_texts(encoder: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Embed ``texts`` with a model (``.embed_texts``) or a callable; float32 ``[N, D]``."""
    embed = getattr(encoder, "embed_texts", encoder)
    parts = []
    for start in range(0, len(texts), batch_size):
        out = embed(texts[start : start + batch_size])
        out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
        parts.append(np.asarray(out, dtype=np.float32))
    return np.concatenate(parts, axis=0)


def ensemble_embeddings(per_class: Sequence[np.ndarray]) -> np.ndarray:
    """Normalise each sentence embedding, average per class, normalise again: ``[K, D]``."""
    return _normalise(np.stack([_normalise(e).mean(axis=0) for e in per_class]).astype(np.float32))


def embed_prompt_sets(encoder: Any, *sets: PromptSet) -> tuple[list[str], np.ndarray]:
    """Embed the classes of one or more prompt sets in a single pass of the text encoder.

    Parameters
    ----------
    encoder
        A loaded model (its ``embed_texts`` is used) or a callable ``list[str] -> [N, D]``.
    *sets
        Prompt sets; their class names must all differ.

    Returns
    -------
    names, embeddings
        The class names in order, and float32 ``[K, D]`` unit-norm class embeddings.
    """
    names: list[str] = []
    groups: list[list[str]] = []
    for prompt_set in sets:
        for name, sentences in zip(prompt_set.names, prompt_set.sentences(), strict=True):
            if name in names:
                raise InputError(f"class {name!r} is given more than once")
            names.append(name)
            groups.append(sentences)
    flat = [s for group in groups for s in group]
    vectors = encode_texts(encoder, flat)
    bounds = np.cumsum([0] + [len(g) for g in groups])
    per_class = [vectors[a:b] for a, b in itertools.pairwise(bounds)]
    return names, ensemble_embeddings(per_class)


def text_queries(
    encoder: Any, prompts: Sequence[str] | PromptSet, templates: str | Sequence[str] = "conch"
) -> tuple[list[str], np.ndarray]:
    """Class names and unit-norm float32 ``[K, D]`` text embeddings for prompts.

    ``prompts`` is a list of texts (one class each, expanded with ``templates``) or a
    :class:`PromptSet` (which carries its own templates).
    """
    prompt_set = (
        prompts if isinstance(prompts, PromptSet) else PromptSet.from_prompts(prompts, templates)
    )
    return embed_prompt_sets(encoder, prompt_set)
