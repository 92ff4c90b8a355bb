"""What a prompt box asks for: classes (one per line), templates, background, threshold."""

from __future__ import annotations

from dataclasses import dataclass

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
        ``"conch"`` (CONCH's 22 templates, averaged) or ``"none"``.
    background : str, optional
        A class whose wins become label 0.
    threshold : float, optional
        Label 0 below this winning probability (one prompt: below this cosine).
    """

    prompts: tuple[str, ...]
    templates: str = "conch"
    background: str | None = None
    threshold: float | None = None

    @classmethod
    def from_text(
        cls, text: str, *, templates: bool, background: str = "", threshold: float = 0.0
    ) -> PromptRequest:
        """Parse a prompt box: one prompt per non-empty line."""
        lines = tuple(line.strip() for line in text.splitlines() if line.strip())
        bg = background.strip() or None
        return cls(lines, "conch" if templates else "none", bg, threshold or None)

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
