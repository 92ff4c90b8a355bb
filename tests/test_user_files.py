"""The suite writes nothing of the user's: its own cache and settings, and a guard that sees."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import conftest, user_files
from tests.user_files import FolderGuard, user_cache_folder


def test_the_suite_has_its_own_cache_and_napari_settings():
    from napari.settings import get_settings

    from napari_conch.engine.store.embedding_store import default_cache_root

    home = conftest.TEST_HOME
    assert default_cache_root().is_relative_to(home)
    assert not default_cache_root().is_relative_to(conftest.USER_CACHE)
    assert Path(get_settings().config_path).is_relative_to(home)
    if sys.platform.startswith("linux"):  # platformdirs follows XDG there
        assert user_cache_folder().is_relative_to(home)
    assert conftest.USER_CACHE_GUARD in user_files._GUARDS  # watching the user's folder


def test_the_guard_records_what_touches_the_folder_and_nothing_else(tmp_path):
    watched, other = tmp_path / "watched", tmp_path / "other"
    other.mkdir()
    guard = FolderGuard(watched).start()
    try:
        (other / "a.txt").write_text("x")  # elsewhere: not recorded
        os.listdir(other)
        assert guard.seen == []
        watched.mkdir()
        (watched / "a.txt").write_text("x")
        os.listdir(watched)
        os.rename(watched / "a.txt", watched / "b.txt")
        shutil.rmtree(watched)
    finally:
        guard.stop()
    (tmp_path / "after.txt").write_text("x")
    events = {event for event, _, _ in guard.seen}
    assert {"os.mkdir", "open", "os.listdir", "os.rename", "shutil.rmtree"} <= events
    assert all(path.startswith(str(watched)) for _, path, _ in guard.seen)
    assert all("test_the_guard_records" in test for _, _, test in guard.seen)
    assert "after.txt" not in " ".join(guard.report())


def test_a_store_made_in_the_default_cache_is_seen(tmp_path, monkeypatch):
    """What a test that bypassed the suite's cache would do: caught by the guard."""
    from napari_conch.engine.store.embedding_store import default_cache_root
    from tests.engine.cohort.test_search import make_store, random_vectors

    monkeypatch.delenv("NAPARI_CONCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    if not sys.platform.startswith("linux"):
        pytest.skip("platformdirs follows XDG_CACHE_HOME on Linux only")
    cache = user_cache_folder()
    assert default_cache_root() == cache
    guard = FolderGuard(cache).start()
    try:
        make_store(default_cache_root() / "s.zarr", random_vectors(2, 2, 0), np.ones((2, 2), bool))
    finally:
        guard.stop()
    assert guard.seen and {"os.mkdir", "open"} <= {event for event, _, _ in guard.seen}


@pytest.mark.slow
def test_a_session_that_touches_the_user_cache_fails(tmp_path):
    """A test writing into the user's napari-conch cache makes the whole session fail, naming it.

    Run in a pytest of its own whose "user" cache is a stand-in (``XDG_CACHE_HOME`` of a fake
    home), so the real one is not touched here either.
    """
    import subprocess

    if not sys.platform.startswith("linux"):
        pytest.skip("the stand-in user cache relies on platformdirs following XDG_CACHE_HOME")
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from tests import conftest\n\n\n"
        "def test_writes_the_user_cache():\n"
        "    conftest.USER_CACHE.mkdir(parents=True, exist_ok=True)\n"
        "    (conftest.USER_CACHE / 'x.zarr').write_text('x')\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(conftest.REPO_ROOT), env.get("PYTHONPATH", "")])
    plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider", "-p", "no:napari"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugins, str(probe)],
        cwd=conftest.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 passed" in out and "the tests touched the user's files" in out
    written = tmp_path / "home" / ".cache" / "napari-conch" / "x.zarr"
    assert f"open {written}" in out and "test_writes_the_user_cache" in out
