"""The canvas font's glyphs rendered ahead of time, a few per event-loop turn."""

from __future__ import annotations

import pytest

from napari_conch._napari.fastpaths import glyphs

pytestmark = pytest.mark.gui


def test_the_glyphs_are_rendered_in_turns_and_once_per_font(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    font = glyphs.canvas_font(viewer)
    assert font is not None, "this napari has no canvas font to warm"
    characters = "0123456789.-"
    assert glyphs.missing_characters(font, characters)
    assert glyphs.warm_glyphs(viewer, characters)
    assert glyphs.missing_characters(font, characters) == list(characters)  # nothing at once
    qtbot.waitUntil(lambda: not glyphs.missing_characters(font, characters), timeout=10_000)
    assert not glyphs.warm_glyphs(viewer, characters)  # the same canvas font: done already


def test_warming_stops_when_the_dock_that_asked_is_gone(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    font = glyphs.canvas_font(viewer)
    characters = "QWERTYUIOP"
    before = glyphs.missing_characters(font, characters)
    assert glyphs.warm_glyphs(viewer, characters, alive=lambda: False)
    qtbot.wait(glyphs.START_DELAY_MS + 200)
    assert glyphs.missing_characters(font, characters) == before
    assert glyphs.warm_glyphs(viewer, characters)  # not marked done: a new dock warms it


def test_a_napari_without_the_canvas_font_is_left_alone():
    class NoCanvas:
        window = None

    assert glyphs.canvas_font(NoCanvas()) is None
    assert not glyphs.warm_glyphs(NoCanvas())


def test_glyphs_can_be_rendered_at_once_before_the_window_answers(make_napari_viewer):
    viewer = make_napari_viewer()
    font = glyphs.canvas_font(viewer)
    wanted = "\u25a0 tumor cells"
    missing = glyphs.missing_characters(font, wanted)
    assert glyphs.render_glyphs(viewer, wanted) == len(missing) > 0
    assert glyphs.missing_characters(font, wanted) == []
    assert glyphs.render_glyphs(viewer, wanted) == 0
