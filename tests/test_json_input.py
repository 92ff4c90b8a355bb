"""read_json: the JSON files users give are read with a size and a depth limit, in one line."""

from __future__ import annotations

import os

import pytest

from napari_conch.errors import ConfigError, InputError
from napari_conch.json_input import MAX_DEPTH, nesting_depth, read_json


def deep(n: int) -> str:
    return "[" * n + "]" * n


def test_nesting_depth_ignores_brackets_in_strings():
    assert nesting_depth(b'{"a": [1, {"b": "[[[[\\"[["}]}') == 3
    assert nesting_depth(b"3") == 0
    assert nesting_depth(deep(100_000).encode()) == 100_000


def test_a_file_nested_100000_deep_is_one_line(tmp_path):
    """json.loads raised RecursionError on it."""
    path = tmp_path / "prompts.json"
    path.write_text('{"classnames": ' + deep(100_000) + "}")
    with pytest.raises(InputError) as info:
        read_json(path, "prompt file")
    assert str(info.value) == (
        f"prompt file {path} is nested 100001 levels deep (at most {MAX_DEPTH})"
    )


def test_depth_at_the_limit_is_read(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(deep(MAX_DEPTH))
    assert read_json(path, "file") == eval(deep(MAX_DEPTH))


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(2048)  # sparse: nothing is written
    with pytest.raises(ConfigError, match=r"is 2048 bytes, more than the 1024 bytes"):
        read_json(path, "model config", max_bytes=1024, error=ConfigError)


def test_missing_folder_fifo_and_bad_json(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_json(tmp_path / "none.json", "prompt file")
    with pytest.raises(InputError, match="is not a file"):
        read_json(tmp_path, "prompt file")
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is not a file"):  # not opened: no wait for a writer
        read_json(fifo, "prompt file")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{\xff}")
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 1\)"):
        read_json(bad, "prompt file")
    bad.write_text('{"a": ')
    with pytest.raises(InputError, match=r"is not valid JSON \(line 1: Expecting value\)"):
        read_json(bad, "prompt file")
