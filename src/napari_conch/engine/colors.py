"""The colours of label maps: one per class, the same in every export, picture and layer."""

from __future__ import annotations

#: Colours of labels 1, 2, ... (cycled), RGB.
LABEL_COLORS: tuple[tuple[int, int, int], ...] = (
    (228, 26, 28),
    (55, 126, 184),
    (77, 175, 74),
    (152, 78, 163),
    (255, 127, 0),
    (255, 255, 51),
    (166, 86, 40),
    (247, 129, 191),
    (0, 200, 200),
    (120, 120, 120),
)


def label_color(label: int) -> tuple[int, int, int]:
    """RGB colour of label ``label`` (1-based)."""
    return LABEL_COLORS[(int(label) - 1) % len(LABEL_COLORS)]
