"""Reading the JSON files users give (prompt sets, GeoJSON annotations, configs), bounded.

Every such file goes through :func:`read_json`, which refuses, in one line naming the file, a file
larger than its kind may be and JSON nested deeper than :data:`MAX_DEPTH` levels, before the
parser runs: Python's parser recurses once per level, so a file of 100,000 ``[`` ended in a
``RecursionError``. The depth is measured on the text itself (strings left out), at C speed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.errors import InputError

#: Deepest nesting of arrays and objects accepted (GeoJSON needs 6 or 7; prompt sets 4).
MAX_DEPTH = 64
#: Largest file accepted unless the caller says otherwise (prompt sets, configs, projects).
MAX_BYTES = 16 * 2**20

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def read_json(
    path: str | Path,
    what: str,
    *,
    max_bytes: int = MAX_BYTES,
    error: type[Exception] = InputError,
) -> Any:
    """The JSON value of the file ``path``, a ``what`` (``"prompt file"``) for the messages.

    Raises
    ------
    error (InputError unless told)
        When the file is missing, cannot be read, is larger than ``max_bytes``, is nested deeper
        than :data:`MAX_DEPTH`, or is not JSON; one line naming the file.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise FileNotFoundError
        size = path.stat().st_size
        if size > max_bytes:
            raise error(
                f"{what} {path} is {_size(size)}, more than the {_size(max_bytes)} such a file "
                "may have"
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        what_is = "is not a file" if path.exists() else "does not exist"
        raise error(f"{what} {path} {what_is}") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # grew while we looked
        raise error(f"{what} {path} is more than the {_size(max_bytes)} such a file may have")
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        raise error(f"{what} {path} is nested {depth} levels deep (at most {MAX_DEPTH})")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # a last guard; the depth check comes first
        raise error(f"{what} {path} is nested too deeply") from None


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text (brackets inside strings ignored)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"
