"""Interpreter settings made when napari first uses napari-conch (they keep napari running)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from napari_conch._napari import interpreter

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="thread priorities are set on Linux only"
)


def test_first_use_freezes_what_exists_and_shortens_the_switch_interval():
    script = (
        "import gc, sys\n"
        "print(gc.get_freeze_count(), sys.getswitchinterval())\n"
        "import napari_conch._napari\n"
        "print(gc.get_freeze_count(), sys.getswitchinterval())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    (frozen_before, switch_before), (frozen_after, switch_after) = (
        map(float, line.split()) for line in out.stdout.splitlines()
    )

    assert frozen_before == 0 and frozen_after > 1000  # the interpreter's own objects at least
    assert switch_before == 0.005
    assert switch_after == interpreter.SWITCH_INTERVAL_S


def test_a_shorter_switch_interval_set_by_someone_else_is_kept(monkeypatch):
    monkeypatch.setattr(sys, "getswitchinterval", lambda: 0.0001)
    chosen = []
    monkeypatch.setattr(sys, "setswitchinterval", chosen.append)

    interpreter.keep_event_loop_running()

    assert chosen == []


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _in_thread(func):
    out = []
    thread = threading.Thread(target=lambda: out.append(func()))
    thread.start()
    thread.join(30)
    return out[0]


@linux_only
def test_a_background_thread_lowers_its_priority_and_its_new_threads_inherit_it():
    def lowered_then_child():
        assert interpreter.lower_thread_priority()
        return _nice(), _in_thread(_nice)

    own, child = _in_thread(lowered_then_child)

    assert own >= interpreter.BACKGROUND_NICE and child >= interpreter.BACKGROUND_NICE
    assert _in_thread(_nice) < interpreter.BACKGROUND_NICE  # the main thread's new threads: not


@linux_only
def test_the_main_thread_is_never_lowered():
    before = _nice()
    assert not interpreter.lower_thread_priority()
    assert _nice() == before


@linux_only
def test_a_thread_target_in_background_runs_lowered():
    assert _in_thread(interpreter.in_background(_nice)) >= interpreter.BACKGROUND_NICE


@linux_only
def test_without_the_call_the_thread_keeps_its_priority(monkeypatch):
    def refused(*_args):
        raise PermissionError("not in this sandbox")

    monkeypatch.setattr(os, "setpriority", refused)
    assert _in_thread(interpreter.lower_thread_priority) is False
