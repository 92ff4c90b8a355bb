"""Real faulty filesystems for CLI tests: a tiny full tmpfs and a read-only bind mount.

Both need to mount filesystems (root, or a container that allows it); elsewhere the tests that
use them skip, saying why, and the same faults are covered by tests that inject the ``OSError``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a test filesystem needs root and mount(8)")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a test filesystem here: {done.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A folder on a 1 MiB tmpfs; ``fill(path, leave=bytes)`` fills it up to ``leave`` bytes."""
    target = tmp_path / "small-disk"
    target.mkdir()
    _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target))
    try:
        yield target
    finally:
        _umount(target)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a filler file into ``folder`` until the disk is full, then free ``leave`` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\1" * 4096)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@pytest.fixture
def read_only():
    """``read_only(folder)`` bind-mounts ``folder`` read-only on itself until the test ends."""
    mounted: list[Path] = []

    def make(folder: Path) -> Path:
        _mount("--bind", str(folder), str(folder))
        mounted.append(folder)
        _mount("-o", "remount,bind,ro", str(folder))
        return folder

    yield make
    for folder in reversed(mounted):
        _umount(folder)


def refused(main, argv: list[str], capsys) -> str:
    """Run the CLI on ``argv``, which must stop with exit status 2 and one line on stderr.

    Returns that line. Argument errors leave argparse as ``SystemExit(2)``; the command's own
    errors return 2.
    """
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1, err
    return err.strip()
