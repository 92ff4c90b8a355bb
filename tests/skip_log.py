"""A pytest plugin for CI: every test a run skipped, with the reason, one per line.

``.ci/run`` loads it in the README's environment (``PYTEST_PLUGINS=tests.skip_log``) and runs
the tests it lists again in the environment with the optional extras (docs/testing.md). The
log is ``$NAPARI_CONCH_SKIP_LOG``: lines of ``node id<TAB>reason``, a module that skipped as a
whole (a module-level ``importorskip``) under the module's node id. Expected failures
(``xfail``) are not skips. Without the variable the plugin writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The environment variable naming the log file.
SKIP_LOG_ENV = "NAPARI_CONCH_SKIP_LOG"


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason of a skip report, on one line."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr
    text = str(reason).removeprefix("Skipped: ")
    return " ".join(text.split())


def _log(report: pytest.TestReport | pytest.CollectReport) -> None:
    target = os.environ.get(SKIP_LOG_ENV)
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as log:
        log.write(f"{report.nodeid}\t{skip_reason(report)}\n")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Log a test skipped in its setup or its call (not an ``xfail``)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        _log(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Log a module skipped while it was collected."""
    if report.skipped:
        _log(report)
