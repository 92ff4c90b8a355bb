"""vispy's shader variable parsing in linear time, with the same result.

Before a vispy program is first drawn, ``vispy.gloo.program.Program`` finds the variables its
GLSL declares, and first cuts every line at its last ``//`` with
``re.sub(r"(.*)(//.*)", r"\\1", code, flags=re.M)``. Python's regular expression engine tries
that pattern from every position of a line and backtracks over the rest of it, so the time grows
with the square of the line lengths: 116 ms in all for the 23 programs napari built in the
stall benchmark's flow (one source was 84,544 characters), much of it inside single pauses of
napari's event loop (29 ms for a canvas legend text's first drawing).

:func:`speed_up_shader_parsing` gives ``vispy.gloo.program`` a view of :mod:`re` in which that
one call is answered by :func:`strip_line_comments` (the same text, found with ``str.rfind``);
every other use of :mod:`re` there is passed through unchanged. It is installed when napari
first uses napari-conch (see :mod:`napari_conch._napari`), for the whole napari process. If a
vispy release parses differently, the call is never matched and nothing changes.
"""

from __future__ import annotations

import re
from typing import Any

#: vispy's pattern for the comment-stripping call answered by :func:`strip_line_comments`.
LINE_COMMENT_PATTERN = r"(.*)(//.*)"


def strip_line_comments(code: str) -> str:
    """``code`` with each line cut at its last ``//``, as ``re.sub(LINE_COMMENT_PATTERN, ...)``.

    The regular expression's greedy first group keeps the longest start of a line that is
    followed by ``//``; with ``re.M`` a line ends at ``"\\n"`` only. So: split at newlines, cut
    each line at ``rfind("//")``.
    """
    return "\n".join(
        line[: line.rfind("//")] if "//" in line else line for line in code.split("\n")
    )


class LinearCommentStripping:
    """The :mod:`re` module as ``vispy.gloo.program`` sees it once sped up (see the module)."""

    def __init__(self, module: Any = re) -> None:
        self._re = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._re, name)

    def sub(self, pattern: Any, repl: Any, string: Any, count: int = 0, flags: Any = 0) -> Any:
        """``re.sub``, with vispy's comment stripping answered by :func:`strip_line_comments`."""
        if (
            pattern == LINE_COMMENT_PATTERN
            and repl == r"\1"
            and count == 0
            and flags == re.M
            and isinstance(string, str)
        ):
            return strip_line_comments(string)
        return self._re.sub(pattern, repl, string, count=count, flags=flags)


def speed_up_shader_parsing() -> bool:
    """Install :class:`LinearCommentStripping` in ``vispy.gloo.program``; whether it is there.

    Done once per process; a ``re`` there that is neither the standard module nor ours (changed
    by someone else) is left alone.
    """
    try:
        from vispy.gloo import program
    except ImportError:  # pragma: no cover - napari brings vispy
        return False
    current = getattr(program, "re", None)
    if isinstance(current, LinearCommentStripping):
        return True
    if current is not re:
        return False
    program.re = LinearCommentStripping(re)
    return True
