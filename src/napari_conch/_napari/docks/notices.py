"""Notices that fit napari's toasts.

napari shows a notification as a toast 400 px wide at the canvas's bottom right: one line of
about 300 px (40 characters of its font here: "Demo model (not CONCH; not for" was all a user
saw of a longer note), the rest behind its expand chevron. :func:`toast_text` wraps a message
into lines of at most :data:`NOTICE_LINE_CHARS` characters (a long path is broken, not cut), so
its first line is whole in the collapsed toast and every line whole once expanded. Messages
put what matters first.
"""

from __future__ import annotations

import textwrap

#: Characters of napari's toast line (300 px of its 10 pt font measured 283 px for 40).
NOTICE_LINE_CHARS = 40


def toast_text(message: str) -> str:
    """``message`` in lines of at most :data:`NOTICE_LINE_CHARS` characters (its own line
    breaks kept; words kept whole unless longer than a line)."""
    width, lines = NOTICE_LINE_CHARS, []
    for paragraph in str(message).splitlines() or [""]:
        wrapped = textwrap.wrap(
            paragraph, width, break_on_hyphens=False, break_long_words=False
        ) or [""]  # a word longer than a line (a path) starts its own lines
        for line in wrapped:
            lines += [line[i : i + width] for i in range(0, max(len(line), 1), width)]
    return "\n".join(lines)


def fits_toast(text: str) -> bool:
    """Whether every line of ``text`` shows whole in napari's toast."""
    return all(len(line) <= NOTICE_LINE_CHARS for line in text.splitlines())
