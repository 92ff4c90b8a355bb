"""Process settings: none on import or use of the plugin; ``napari-conch view`` makes them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from napari_conch._napari import fastpaths
from napari_conch._napari.fastpaths import process

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="thread priorities are set on Linux only"
)

#: What a child interpreter prints of the process-wide settings, one line per call of state().
STATE = """
import gc, os, re, sys, threading
def state():
    from vispy.gloo import program
    nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    import warnings
    ours = any(f[1] is not None and "CIE-LAB" in f[1].pattern for f in warnings.filters)
    print(gc.get_freeze_count(), sys.getswitchinterval(), program.re is re, nice, ours,
          os.environ.get("OMP_WAIT_POLICY", "unset"), flush=True)
"""


def _child(body: str, **env: str) -> list[list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", STATE + body], capture_output=True, text=True, timeout=180,
        env={**os.environ, **env}, check=True,
    )  # fmt: skip
    return [line.split() for line in out.stdout.splitlines()]


@pytest.mark.slow
def test_importing_and_using_the_plugin_changes_nothing_outside_it():
    from napari_conch.samples import HGSC_HELDOUT

    body = f"""
import pkgutil, importlib, napari, napari_conch
state()
for info in pkgutil.walk_packages(napari_conch.__path__, "napari_conch."):
    if not info.name.endswith("__main__"):  # that one runs the command
        importlib.import_module(info.name)
from napari_conch._napari.reader import get_reader
layers = get_reader({str(HGSC_HELDOUT)!r})({str(HGSC_HELDOUT)!r})
assert layers
state()
"""
    before, after = _child(body)
    assert before == after  # gc freeze count, switch interval, vispy's re, priority, warnings,
    # OpenMP's wait policy


TUNE = """
state()
from napari_conch._napari.fastpaths.process import tune_process
print(tune_process(), flush=True)
state()
"""


@pytest.mark.slow
def test_view_tunes_its_own_process():
    before, made, after = _child(TUNE, **{fastpaths.SWITCH: "1"})
    assert made == ["True"]
    assert int(after[0]) > int(before[0]) + 1000  # what existed is frozen
    assert float(after[1]) == process.SWITCH_INTERVAL_S
    assert before[2] == "True" and after[2] == "False"  # vispy parses in linear time
    assert before[4] == "False" and after[4] == "True"  # napari's colour note hidden


def test_tuning_is_off_with_the_fast_paths():
    before, made, after = _child(TUNE, **{fastpaths.SWITCH: "0"})
    assert made == ["False"] and before == after


def test_a_shorter_switch_interval_set_by_someone_else_is_kept(monkeypatch):
    monkeypatch.setattr(sys, "getswitchinterval", lambda: 0.0001)
    chosen = []
    monkeypatch.setattr(sys, "setswitchinterval", chosen.append)
    monkeypatch.setattr("gc.freeze", lambda: None)
    monkeypatch.setattr(process, "speed_up_shader_parsing", lambda: True, raising=False)
    monkeypatch.setattr(process, "_TUNED", False)
    monkeypatch.setattr(fastpaths, "enabled", lambda: True)
    import napari_conch._napari.fastpaths.removal as removal
    import napari_conch._napari.fastpaths.shader_parsing as parsing

    monkeypatch.setattr(parsing, "speed_up_shader_parsing", lambda: True)
    monkeypatch.setattr(removal, "guard_layer_removal", lambda: True)

    assert process.tune_process()

    assert chosen == []


@pytest.fixture
def tuned(monkeypatch):
    """A process tuned by ``napari-conch view`` (only the flag: nothing else is changed)."""
    monkeypatch.setattr(process, "_TUNED", True)


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _in_thread(func):
    out = []
    thread = threading.Thread(target=lambda: out.append(func()))
    thread.start()
    thread.join(30)
    return out[0]


@linux_only
def test_a_background_thread_lowers_its_priority_and_its_new_threads_inherit_it(tuned):
    def lowered_then_child():
        assert process.lower_thread_priority()
        return _nice(), _in_thread(_nice)

    own, child = _in_thread(lowered_then_child)

    assert own >= process.BACKGROUND_NICE and child >= process.BACKGROUND_NICE
    assert _in_thread(_nice) < process.BACKGROUND_NICE  # the main thread's new threads: not


@linux_only
def test_the_main_thread_is_never_lowered(tuned):
    before = _nice()
    assert not process.lower_thread_priority()
    assert _nice() == before


@linux_only
def test_a_thread_target_in_background_runs_lowered(tuned):
    assert _in_thread(process.in_background(_nice)) >= process.BACKGROUND_NICE


@linux_only
def test_without_the_call_the_thread_keeps_its_priority(tuned, monkeypatch):
    def refused(*_args):
        raise PermissionError("not in this sandbox")

    monkeypatch.setattr(os, "setpriority", refused)
    assert _in_thread(process.lower_thread_priority) is False


@linux_only
def test_outside_a_tuned_process_no_thread_is_lowered():
    assert not process.tuned() or pytest.skip("this test process was tuned")
    assert _in_thread(process.lower_thread_priority) is False
    assert _in_thread(process.in_background(_nice)) == _nice()
