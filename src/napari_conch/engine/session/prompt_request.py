"""What a prompt box asks for: classes (one per line, or a CONCH prompt set), templates,
background, threshold."""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_conch.bounds import BOUNDS_KEY, check_fields
from napari_conch.engine.options import THRESHOLD_BOUNDS
from napari_conch.engine.prompts import PromptSet
from napari_conch.errors import InputError


@dataclass(frozen=True)
class PromptRequest:
    """Prompts turned into maps together.

    Attributes
    ----------
    prompts : tuple of str
        The classes, in order.
    templates : str
        A name of :data:`~napari_conch.engine.prompts.TEMPLATE_SETS`: ``"conch"`` (CONCH's 22
        templates, averaged), a CLIP-family model's own (``"quiltnet"``, ``"plip"``, ``"keep"``,
        ``"biomedclip"``) or ``"none"``.
    background : str, optional
        A class whose wins become label 0.
    threshold : float, optional
        Label 0 below this winning probability (one prompt: below this cosine).
    prompt_set : PromptSet, optional
        CONCH's classes with synonyms and templates (a prompt file); its class names are the
        prompts, each embedded as CONCH does (synonyms x templates, averaged).
    """

    prompts: tuple[str, ...]
    templates: str = "conch"
    background: str | None = None
    threshold: float | None = field(default=None, metadata={BOUNDS_KEY: THRESHOLD_BOUNDS})
    prompt_set: PromptSet | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.background is not None and not str(self.background).strip():
            raise InputError(
                f"background={self.background!r}: name the background class (or leave it out)"
            )

    @classmethod
    def from_prompt_set(
        cls,
        prompt_set: PromptSet,
        *,
        templates: bool | str = True,
        background: str = "",
        threshold: float = 0.0,
    ) -> PromptRequest:
        """The classes of a prompt set (``templates``: for the background class only; a set's
        name, or True for CONCH's and False for none)."""
        bg = background.strip() or None
        return cls(tuple(prompt_set.names), _mode(templates), bg, threshold or None, prompt_set)

    def class_set(self, name: str) -> PromptSet:
        """The one-class prompt set that ``name`` is embedded from."""
        if self.prompt_set is not None and name in self.prompt_set.classnames:
            synonyms = self.prompt_set.classnames[name]
            return PromptSet({name: synonyms}, self.prompt_set.templates)
        return PromptSet.from_prompts([name], self.templates)

    def sentences(self, name: str) -> tuple[str, ...]:
        """The sentences whose embeddings, averaged, make class ``name``'s query."""
        return tuple(self.class_set(name).sentences()[0])

    @classmethod
    def from_text(
        cls, text: str, *, templates: bool | str, background: str = "", threshold: float = 0.0
    ) -> PromptRequest:
        """Parse a prompt box: one prompt per non-empty line (``templates``: a set's name, or
        True for CONCH's and False for none)."""
        lines = tuple(line.strip() for line in text.splitlines() if line.strip())
        bg = background.strip() or None
        return cls(lines, _mode(templates), bg, threshold or None)

    @property
    def classes(self) -> list[str]:
        """The class names: the prompts, then the background when given."""
        names = list(self.prompts)
        return [*names, self.background] if self.background else names

    def check(self) -> None:
        """Raise :class:`InputError` for a request that cannot become a map."""
        if not self.prompts:
            raise InputError("type at least one prompt (one per line)")
        PromptSet.from_prompts(self.classes, self.templates)  # raises for duplicates


def _mode(templates: bool | str) -> str:
    if isinstance(templates, str):
        return templates
    return "conch" if templates else "none"
