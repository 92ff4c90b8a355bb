"""Interpreter settings made when napari first uses napari-conch (they keep napari running)."""

from __future__ import annotations

import subprocess
import sys

from napari_conch._napari import interpreter


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
