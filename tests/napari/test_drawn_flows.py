"""Prompt edits and slide switches with the canvas drawn, each in a process of its own.

napari's removal of a layer runs the layer's OpenGL deletions at once, with Qt's context
current instead of the canvas's; the next drawing then crashed the process (``napari-conch
view``, three prompts to two to one: every time, see ``_napari/layers/gl_context.py``).
The flows run in a child process (``drawn_flows.py``) so that such a crash fails the test
with its signal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.napari.docks.test_cohort_dock import cohort  # noqa: F401 (the cohort fixture)

pytestmark = [pytest.mark.gui, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: Longest run of one flow (seconds); a flow reports its own time-outs well before.
FLOW_TIMEOUT_S = 600


def run_flow(*args: str) -> str:
    """Run a flow of ``drawn_flows.py``; its ``OK`` line, or fail with what it said."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.napari.drawn_flows", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=FLOW_TIMEOUT_S,
    )  # fmt: skip
    out = done.stdout + done.stderr
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        pytest.fail(f"the flow ended with {how}:\n{out[-4000:]}")
    return next(line for line in done.stdout.splitlines() if line.startswith("OK"))


def test_prompt_edits_3_2_1_3_1_with_the_canvas_drawn():
    three = "tumor cells|stroma|inflammatory cells"
    line = run_flow("prompts", "tumor cells|stroma", "stroma", three, "stroma")
    assert "layers=['hgsc_heldout', 'CONCH similarity']" in line  # one prompt: its heatmap
    assert "legend=[]" in line
    assert "caption=similarity of 'stroma': " in line  # its name and range, drawn


def test_new_options_hide_the_maps_and_a_new_run_reuses_them_with_the_canvas_drawn():
    line = run_flow("rerun")
    assert line == "OK same_layers=True layers=['hgsc_heldout']"


def test_annotate_and_caption_docks_with_the_canvas_drawn():
    assert run_flow("docks") == "OK caption=True"


def test_cohort_slide_switch_replaces_the_slide(cohort):  # noqa: F811
    line = run_flow("cohort", str(cohort["csv"]), str(cohort["prompts"]))
    assert line.count(".") >= 3  # three slides opened, each alone on the canvas


@pytest.mark.fast_paths
def test_napari_s_own_removal_is_guarded_in_our_process():
    """The layer list's bin on a layer whose canvas colour bar was drawn: napari's removal
    (unguarded, it ended the process with SIGSEGV here, every time)."""
    assert run_flow("napari-removal", "guarded") == "OK layers=['slide']"
