"""Shared pytest fixtures, and the suite's own folders in place of the user's.

Reference data lives outside the repository (CONCH's tokenizer may not be redistributed). Tests
find it through ``NAPARI_CONCH_FIXTURES`` (default ``../shared/fixtures`` next to the repository)
and skip with a clear reason when it is absent.

The whole session runs with its own cache, napari settings and XDG folders, set here when pytest
loads this file (before any test module, and before napari's settings are read); the user's
napari-conch cache folder is watched, and a session that touched it fails
(:mod:`tests.user_files`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests import user_files

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The user's napari-conch cache folder (platformdirs), taken before the redirection below.
USER_CACHE = user_files.user_cache_folder()
#: The session's stand-in for the user's folders (``$NAPARI_CONCH_CACHE``, napari's settings, XDG).
TEST_HOME = user_files.isolate()
USER_CACHE_GUARD = user_files.FolderGuard(USER_CACHE).start()
#: ``--precision auto`` the same on every CPU: no CPU flags, so no CPU bf16 (fp32, CONCH-exact);
#: tests of the bf16 choice point it at a cpuinfo with ``avx512_bf16`` (tests/model).
os.environ["NAPARI_CONCH_CPUINFO"] = os.devnull


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when a test touched the user's napari-conch cache folder."""
    USER_CACHE_GUARD.stop()
    shutil.rmtree(TEST_HOME, ignore_errors=True)
    if not USER_CACHE_GUARD.seen:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "the tests touched the user's files", red=True)
        reporter.write_line(f"{USER_CACHE} (the user's napari-conch cache) must stay untouched:")
        for line in USER_CACHE_GUARD.report():
            reporter.write_line(f"  {line}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``."""
    import subprocess
    import sys

    probe = f"{code}\nimport sys\nprint(','.join(m for m in {modules!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return [m for m in out.stdout.strip().split(",") if m]


def fixtures_root() -> Path:
    """Return the folder holding the shared test fixtures (may not exist)."""
    env = os.environ.get("NAPARI_CONCH_FIXTURES")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "fixtures")


def require_fixture(relative: str) -> Path:
    """Return the path of a shared fixture, or skip the test when it is absent."""
    path = fixtures_root() / relative
    if not path.exists():
        pytest.skip(
            f"fixture {relative!r} not found under {fixtures_root()} "
            "(set NAPARI_CONCH_FIXTURES to the shared fixtures folder)"
        )
    return path


@pytest.fixture(scope="session")
def tiny_reference() -> dict:
    """The reference tiny CoCa: ``config``, ``state_dict``, ``inputs`` and ``outputs``."""
    import torch

    path = require_fixture("reference/coca_tiny_a.pt")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def tokenizer_path() -> Path:
    """CONCH's tokenizer JSON (tests only, never shipped)."""
    return require_fixture("reference/conch_byte_level_bpe_uncased.json")


@pytest.fixture(scope="session")
def svs_path() -> Path:
    """The real CC0 Aperio slide (2967 x 2220 px at 0.499 um/px)."""
    return require_fixture("images/cmu_small_region.svs")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_reference, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny reference model written as a checkpoint and a CONCH-form config JSON.

    Returns ``(checkpoint_path, config_path)``.
    """
    import torch

    folder = tmp_path_factory.mktemp("tiny_ckpt")
    ckpt = folder / "pytorch_model.bin"
    torch.save(tiny_reference["state_dict"], ckpt)
    config = folder / "coca_tiny.json"
    config.write_text(json.dumps(tiny_reference["config"]))
    return ckpt, config


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint, tokenizer_path):
    """The tiny reference model loaded through the public API, on CPU."""
    from napari_conch.model import load_model

    ckpt, config = tiny_checkpoint
    return load_model(ckpt, config=config, tokenizer=tokenizer_path, device="cpu")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests of a fast path itself skip when the fast paths are off (NAPARI_CONCH_FAST_PATHS=0)."""
    if item.get_closest_marker("fast_paths") is not None:
        from napari_conch._napari import fastpaths

        if not fastpaths.enabled():
            pytest.skip(f"tests a fast path, and they are off ({fastpaths.SWITCH}=0)")
