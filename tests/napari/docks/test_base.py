"""The dock base: one session per viewer shared by the docks, slide choice, clicks, workers."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_conch._napari.docks.workers import background, background_generator
from napari_conch._napari.fastpaths import process
from napari_conch._napari.fastpaths.process import BACKGROUND_NICE
from napari_conch._napari.session_registry import session_for
from napari_conch.errors import InputError

pytestmark = pytest.mark.gui

NAPARI_DIR = Path(__file__).resolve().parents[3] / "src" / "napari_conch" / "_napari"


def _docks(make_napari_viewer):
    viewer = make_napari_viewer()
    _, prompt = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    _, caption = viewer.window.add_plugin_dock_widget("napari-conch", "Caption and retrieval")
    return viewer, prompt, caption


@pytest.mark.slow
def test_docks_share_the_viewers_session_and_slide(make_napari_viewer):
    viewer, prompt, caption = _docks(make_napari_viewer)
    assert prompt.session is caption.session is session_for(viewer)
    assert session_for(make_napari_viewer()) is not prompt.session  # one per viewer
    first = viewer.add_image(np.full((64, 80, 3), 200, np.uint8), name="first", rgb=True)
    second = viewer.add_image(np.full((50, 60, 3), 90, np.uint8), name="second", rgb=True)
    # the layer added last is active, and the active RGB layer is the slide
    assert prompt.slide_layer is second and caption.slide_layer is second
    assert prompt.session.slide_source is second and prompt.session.slide.shape == (50, 60)
    caption.region_panel.layer.value = first  # chosen in one dock ...
    assert prompt.slide_panel.layer.value is first  # ... shown by the other
    assert prompt.session.slide_source is first and prompt.session.slide.shape == (64, 80)
    viewer.layers.selection.active = first
    viewer.layers.selection.active = second  # selecting a layer picks it as the slide
    assert caption.slide_layer is second and prompt.session.slide_source is second
    viewer.layers.remove(first)
    viewer.layers.remove(second)
    assert prompt.session.slide is None and prompt.slide_layer is None


@pytest.mark.slow
def test_the_slide_worked_on_is_shown_and_the_slides_over_it_hidden(make_napari_viewer):
    viewer, prompt, caption = _docks(make_napari_viewer)
    first = viewer.add_image(np.full((64, 80, 3), 200, np.uint8), name="first", rgb=True)
    second = viewer.add_image(np.full((50, 60, 3), 90, np.uint8), name="second", rgb=True)
    assert prompt.slide_layer is second  # the one on top: the first is hidden under it
    assert [first.visible, second.visible] == [False, True]
    apart = viewer.add_image(
        np.full((40, 40, 3), 30, np.uint8), name="apart", rgb=True, translate=(0, 500)
    )
    caption.region_panel.layer.value = first  # back to the first: the second would cover it
    assert prompt.session.slide_source is first
    assert [first.visible, second.visible, apart.visible] == [True, False, True]


def test_slides_overlap_only_when_they_share_area():
    from napari_conch._napari.layers.slide_view import overlap

    box = np.array([[0.0, 0.0], [10.0, 20.0]])
    assert overlap(box, box + 5) and overlap(box + 5, box)
    assert not overlap(box, box + np.array([0.0, 20.0]))  # side by side: touching edges only
    assert not overlap(box, box + np.array([30.0, 0.0]))


@pytest.mark.slow
def test_a_model_loaded_in_one_dock_is_the_others(make_napari_viewer, tiny_model):
    _viewer, prompt, caption = _docks(make_napari_viewer)
    caption._set_model(tiny_model)  # what the Load worker hands back
    assert prompt.model is tiny_model
    assert prompt.model_panel.info.tooltip == tiny_model.describe()
    assert prompt.model_panel.note.value == caption.model_panel.note.value


def test_no_dock_reads_another():
    """Docks talk through the session: none looks up the window's docks or another dock class."""
    paths = sorted(NAPARI_DIR.rglob("*.py"))
    assert len(paths) > 20 and NAPARI_DIR / "docks" / "annotate_dock.py" in paths
    for path in paths:
        text = path.read_text()
        assert "dock_widgets" not in text, path.name
        if path.name != "prompt_dock.py":
            assert "PromptDock" not in text, path.name


@pytest.mark.slow
def test_click_arming(make_napari_viewer):
    viewer, prompt, _caption = _docks(make_napari_viewer)
    button = prompt.prompt_panel.more_like_this
    text, clicks = button.text, []
    assert prompt.arm_click(button, "Click now", clicks.append)
    assert prompt.click_armed and button.text == "Click now"
    assert not prompt.arm_click(button, "Click now", clicks.append)  # pressed again: disarmed
    assert not prompt.click_armed and button.text == text
    prompt.arm_click(button, "Click now", clicks.append)
    press = SimpleNamespace(type="mouse_press", position=(3.0, 4.0))
    for callback in viewer.mouse_drag_callbacks:
        callback(viewer, press)
    assert clicks == [(3.0, 4.0)] and not prompt.click_armed and button.text == text


@pytest.mark.slow
def test_workers_report_failures_as_one_line(make_napari_viewer, qtbot):
    _viewer, prompt, _caption = _docks(make_napari_viewer)
    failed, done = [], []

    def fail():
        raise InputError("the thing: wrong\nvery wrong")

    prompt.run("job", background(fail), done.append, failed=failed.append)
    assert prompt.busy("job") and prompt.busy()
    with pytest.raises(InputError, match="under way"):
        prompt.check_idle("job", "the job")
    qtbot.waitUntil(lambda: not prompt.busy(), timeout=10_000)
    assert done == [] and failed == ["the thing: wrong very wrong"]
    assert prompt.errors[-1] == "the thing: wrong very wrong"
    prompt.run("job", background(lambda: 42), done.append)
    qtbot.waitUntil(lambda: not prompt.busy(), timeout=10_000)
    assert done == [42]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="priorities set on Linux only")
def test_workers_run_below_the_gui_threads_priority(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setattr(process, "_TUNED", True)  # as in napari-conch view (fastpaths/process.py)
    _viewer, prompt, _caption = _docks(make_napari_viewer)
    nice = lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # noqa: E731
    gui, done = nice(), []

    def items():
        yield nice()

    prompt.run("job", background(nice), done.append)
    qtbot.waitUntil(lambda: not prompt.busy(), timeout=10_000)
    prompt.run("gen", background_generator(items()), done.append, progress=done.append)
    qtbot.waitUntil(lambda: not prompt.busy(), timeout=10_000)

    assert done[0] >= BACKGROUND_NICE and done[1] >= BACKGROUND_NICE
    assert nice() == gui < BACKGROUND_NICE  # napari's GUI thread keeps its own


def test_a_dock_of_bare_widgets_and_sections(make_napari_viewer):
    from magicgui.widgets import Container, Label, PushButton

    from napari_conch._napari.docks.base import DockBase

    class Small(DockBase):
        def __init__(self, viewer):
            self.note = Label(value="a note that is long enough to wrap in a narrow dock " * 3)
            self.panel = Container(widgets=[PushButton(text="Go")])
            super().__init__(viewer, [self.note, ("Actions", self.panel, False)])

    viewer = make_napari_viewer()
    dock = Small(viewer)
    viewer.window.add_dock_widget(dock, name="small")
    assert list(dock.sections) == ["Actions"] and not dock.sections["Actions"].isExpanded()
    assert dock.native.widget().isAncestorOf(dock.note.native)
    assert dock.note.native.wordWrap()  # a long label wraps instead of widening the dock


def test_a_dock_opens_over_three_turns_its_advanced_options_folded_last(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    content = dock.native.widget()
    # in napari's turn the dock is added empty: its content is polished and painted later
    assert content.isHidden() and not dock.on_screen and dock.advanced_sections == []
    assert dock.slide_panel.more.native.isHidden()
    qtbot.waitUntil(lambda: dock.on_screen, timeout=5000)
    assert content.isVisible()
    assert len(dock.advanced_sections) == 3
    assert not any(box.isExpanded() for box in dock.advanced_sections)
    assert dock.advanced_sections[1].isAncestorOf(dock.slide_panel.tile_size.native)


def test_a_dock_from_the_menu_makes_its_panels_in_later_turns(make_napari_viewer, qtbot):
    """napari's turn adds the dock without its panels (the first dock's opening built its 55
    widgets in that one turn); they come one per turn after it, then the dock is wired."""
    viewer = make_napari_viewer(show=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    assert not dock.built and "model_panel" not in vars(dock) and dock.sections == {}
    made = []
    qtbot.waitUntil(lambda: made.append(len(dock.sections)) or dock.built, timeout=5000)
    assert list(dock.sections) == ["Model", "Slide and embedding", "Prompts and maps", "Export"]
    assert 0 in made and max(made) == 4 and len(set(made)) > 2  # over several turns
    qtbot.waitUntil(lambda: dock.on_screen, timeout=5000)


def test_what_waits_for_a_dock_runs_after_its_turns_without_hurrying_them(
    make_napari_viewer, qtbot
):
    """``napari-conch view`` starts its demo with ``when_built``: asking the dock for its model
    panel at once made all its sections in one turn (a pause of 100-130 ms on the 20k slide)."""
    viewer = make_napari_viewer(show=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    called = []
    dock.when_built(lambda: called.append(sorted(dock.sections)))
    assert called == [] and not dock.built  # nothing made early
    qtbot.waitUntil(lambda: bool(called), timeout=5000)
    assert called == [sorted(["Model", "Slide and embedding", "Prompts and maps", "Export"])]
    dock.when_built(lambda: called.append("at once"))
    assert called[-1] == "at once"


@pytest.mark.parametrize(
    "name", ["Prompt highlighter", "Caption and retrieval", "Annotate", "Cohort"]
)
def test_asking_a_dock_for_a_panel_before_its_turns_makes_it_at_once(make_napari_viewer, name):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", name)
    assert not dock.built
    viewer.add_image(np.full((64, 80, 3), 200, np.uint8), name="slide", rgb=True)
    first = {
        "Prompt highlighter": "model_panel",
        "Caption and retrieval": "region_panel",
        "Annotate": "class_panel",
        "Cohort": "slides_csv",
    }[name]
    assert getattr(dock, first) is not None and dock.built and dock.sections
    if name != "Cohort":  # the docks with a slide choice follow the layers from then on
        assert dock.slide_layer is viewer.layers["slide"]
