"""The slide first: with the sample slide and every napari-conch dock open, napari fits a laptop
screen (1366 x 768) and a desktop one (1920 x 1080), and the canvas keeps at least half the width.

Xvfb has no window manager, so nothing keeps a window on the screen: the test sets the window to
the screen's size and checks that napari can keep it there (no dock forces it larger).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from qtpy.QtWidgets import QDockWidget, QTabBar

from napari_conch._napari.docks.base import DockBase
from napari_conch._napari.docks.scroll_layout import DOCK_WIDTH, TAB_TITLES, dock_of
from napari_conch._napari.sample_data import CMU_SMALL_REGION

pytestmark = pytest.mark.gui

MANIFEST = Path(__file__).resolve().parents[3] / "napari.yaml"


def dock_names() -> list[str]:
    """Every dock napari-conch contributes (from its manifest)."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    return [w["display_name"] for w in manifest["contributions"]["widgets"]]


def open_everything(make_napari_viewer, qtbot, size):
    """A shown viewer at ``size`` with the sample slide and every napari-conch dock."""
    viewer = make_napari_viewer(show=True)
    viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    window = viewer.window._qt_window
    window.move(0, 0)
    window.resize(*size)
    docks = [viewer.window.add_plugin_dock_widget("napari-conch", n) for n in dock_names()]
    # a dock opens over three event-loop turns: added, tabified with its siblings, filled
    qtbot.waitUntil(lambda: all(widget.on_screen for _, widget in docks), timeout=5000)
    first, others = docks[0][0], {dock_widget for dock_widget, _ in docks[1:]}
    qtbot.waitUntil(lambda: set(window.tabifiedDockWidgets(first)) == others, timeout=5000)
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size, timeout=5000)
    return viewer, window, docks


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)], ids=["1366x768", "1920x1080"])
def test_window_fits_the_screen_and_the_canvas_keeps_half(make_napari_viewer, qtbot, size):
    viewer, window, docks = open_everything(make_napari_viewer, qtbot, size)
    width, height = size
    hint = window.minimumSizeHint()
    assert hint.width() <= width and hint.height() <= height
    assert (window.width(), window.height()) == size
    canvas = viewer.window._qt_viewer.canvas.native
    share = canvas.width() / window.width()
    print(f"\n{width} x {height}: canvas {canvas.width()} x {canvas.height()} px, {share:.0%}")
    assert share >= 0.5

    # the napari-conch docks share one area as tabs, each narrow and scrolling its content
    ours = [d for d in window.findChildren(QDockWidget) if isinstance(_dock_base(d), DockBase)]
    assert len(ours) == len(dock_names()) >= 2
    assert set(window.tabifiedDockWidgets(ours[0])) == set(ours[1:])
    tabs = sorted(TAB_TITLES.get(name, name) for name in dock_names())
    assert sorted(d.windowTitle() for d in ours) == tabs  # tabs: short names
    [bar] = [b for b in window.findChildren(QTabBar) if b.count() == len(ours) and b.isVisible()]
    assert sorted(bar.tabText(i) for i in range(bar.count())) == tabs
    for i in range(bar.count()):  # each name whole on its tab, not elided ("C...")
        assert bar.tabRect(i).width() >= bar.fontMetrics().horizontalAdvance(bar.tabText(i))
    for dock_widget, widget in docks:
        assert dock_widget.widget() is widget.native  # the scroll area itself is docked
        assert widget.native.parentWidget() is not None
        assert dock_widget.width() <= DOCK_WIDTH + 40
    if height == 768:
        _, highlighter = docks[0]
        assert highlighter.native.verticalScrollBar().maximum() > 0  # taller than the screen


@pytest.mark.slow
def test_sections_fold_and_advanced_options_start_folded(make_napari_viewer, qtbot):
    _viewer, _window, docks = open_everything(make_napari_viewer, qtbot, (1366, 768))
    _, highlighter = docks[0]
    assert set(highlighter.sections) == {
        "Model",
        "Slide and embedding",
        "Prompts and maps",
        "Export",
    }
    assert all(box.isExpanded() for box in highlighter.sections.values())
    folded = highlighter.advanced_sections
    assert len(folded) == 3 and not any(box.isExpanded() for box in folded)
    tile_size = highlighter.slide_panel.tile_size.native
    assert any(box.isAncestorOf(tile_size) for box in folded)  # under "More options"
    # folded content is hidden (Qt leaves it alone until it is unfolded), then shown
    assert not tile_size.isVisible() and highlighter.slide_panel.more.native.isHidden()
    content = highlighter.native.widget()
    tall = content.sizeHint().height()
    folded[1].expand(animate=False)
    more = highlighter.slide_panel.more.native
    # the sections refit over a few event-loop turns
    qtbot.waitUntil(
        lambda: (
            folded[1].content().height() >= more.sizeHint().height()
            and content.sizeHint().height() > tall
        ),
        timeout=5000,
    )
    assert tile_size.isVisible() and tile_size.height() > 0
    highlighter.sections["Export"].collapse(animate=False)
    highlighter.sections["Prompts and maps"].collapse(animate=False)
    qtbot.waitUntil(lambda: content.sizeHint().height() < tall, timeout=5000)


@pytest.mark.slow
def test_a_long_model_path_does_not_widen_the_dock(make_napari_viewer, qtbot, tiny_model):
    _viewer, window, docks = open_everything(make_napari_viewer, qtbot, (1366, 768))
    _, highlighter = docks[0]
    before = highlighter.native.minimumSizeHint().width()
    long_source = "/a/very/long/folder/name/that/goes/on/" * 6 + "pytorch_model.bin"
    model = _Renamed(tiny_model, long_source)
    highlighter._show_model(model)
    qtbot.wait(20)
    info = highlighter.model_panel.info
    assert info.tooltip == model.describe() and long_source in info.tooltip
    assert long_source not in info.value and "pytorch_model.bin" in info.value
    assert highlighter.native.minimumSizeHint().width() == before
    assert window.width() == 1366


class _Renamed:
    """A loaded model seen under another source path."""

    def __init__(self, model, source):
        self._model, self.source = model, source

    def __getattr__(self, name):
        return getattr(self._model, name)

    def describe(self):
        return type(self._model).describe(self)


def _dock_base(dock_widget):
    return getattr(dock_widget.widget(), "_magic_widget", None)


@pytest.mark.gui
def test_a_section_grows_with_a_line_whose_text_grows_later(make_napari_viewer, qtbot):
    # The status changes while its dock is a tab behind another, as when the Prompt
    # highlighter's prompts retrain the Annotate dock.
    viewer = make_napari_viewer(show=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    status = dock.learn_panel.status
    label = status.native
    qtbot.waitUntil(lambda: not label.isVisible(), timeout=5000)  # a tab behind the other

    status.value = "a status line long enough to wrap to several lines in a narrow dock " * 3
    qtbot.wait(100)  # the text grew while the tab was behind
    dock_of(dock.native).raise_()
    qtbot.waitUntil(  # no line cut off
        lambda: label.isVisible() and label.height() >= label.heightForWidth(label.width()),
        timeout=5000,
    )
