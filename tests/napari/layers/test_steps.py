"""New napari layers shown in steps: hidden, not made active, tool overlays given back later."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.fastpaths import canvas as fast_canvas
from napari_conch._napari.fastpaths import layer_parts
from napari_conch._napari.layers import map_layers
from napari_conch._napari.layers import steps as layer_steps


@pytest.mark.gui
@pytest.mark.fast_paths
def test_a_new_layer_is_revealed_even_when_a_newer_display_drops_its_steps(make_napari_viewer):
    viewer = make_napari_viewer()
    place = map_layers.Placement((1.0, 1.0), (0.0, 0.0))
    data = np.ones((4, 4), np.int32)
    layer = map_layers.upsert_labels(
        viewer, data, ["a"], place, units=("pixel", "pixel"), opacity=1
    )
    first = layer_steps.reveal_steps(layer)
    assert len(first) >= 2 and not layer.visible
    first[0]()  # one step runs; the others are dropped (a newer display came)
    again = map_layers.upsert_labels(
        viewer, data * 2, ["a"], place, units=("pixel", "pixel"), opacity=1
    )
    assert again is layer
    rest = layer_steps.reveal_steps(layer)  # the next display is given what is still missing
    assert len(rest) == len(first) - 1
    for step in rest:
        step()
    assert layer.visible and layer_steps.reveal_steps(layer) == []


@pytest.mark.slow
@pytest.mark.gui
def test_a_new_map_layer_leaves_the_active_layer_alone(make_napari_viewer):
    viewer = make_napari_viewer()
    slide = viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="slide")
    assert viewer.layers.selection.active is slide
    place = map_layers.Placement((8.0, 8.0), (0.0, 0.0))
    style = {"units": ("pixel", "pixel"), "colormap": "inferno", "opacity": 0.5}
    heat = map_layers.upsert_image(
        viewer, map_layers.HEATMAP, np.ones((8, 8)), place, contrast_limits=(0, 1), **style
    )
    assert heat in viewer.layers and viewer.layers.selection.active is slide
    labels = map_layers.upsert_labels(
        viewer, np.ones((8, 8), np.int32), ["a"], place, units=("pixel", "pixel"), opacity=0.5
    )
    assert viewer.layers.selection.active is slide
    # a later layer added the usual way still becomes active: the switch was given back
    points = viewer.add_points(np.zeros((1, 2)))
    assert viewer.layers.selection.active is points and labels in viewer.layers


@pytest.mark.gui
@pytest.mark.fast_paths
def test_a_labels_layers_drawing_tools_are_given_back_before_it_is_shown(make_napari_viewer):
    viewer = make_napari_viewer()
    place = map_layers.Placement((1.0, 1.0), (0.0, 0.0))
    layer = map_layers.upsert_labels(
        viewer, np.ones((4, 4), np.int32), ["a", "b"], place, units=("pixel", "pixel"), opacity=1
    )
    held = [key for key in layer_parts.DEFERRED_OVERLAYS if key not in layer._overlays]
    assert held, "this napari makes the tools' overlays with the layer: nothing is deferred"
    steps = layer_steps.reveal_steps(layer)
    # one turn for napari's controls, one per overlay, then the layer is shown
    assert len(steps) == 1 + len(held) + 1
    for step in steps[:-1]:
        step()
        assert not layer.visible
    steps[-1]()
    assert layer.visible and all(key in layer._overlays for key in layer_parts.DEFERRED_OVERLAYS)
    layer.mode = "polygon"  # the polygon tool works with its overlay back
    assert layer.mode == "polygon" and layer_steps.reveal_steps(layer) == []


def test_only_a_layer_the_plugin_hid_is_shown_again():
    from types import SimpleNamespace

    ours = SimpleNamespace(visible=True, metadata={})
    layer_steps.hide_for_now(ours)
    assert not ours.visible
    layer_steps.show_again(ours)
    assert ours.visible and layer_steps.KEPT_HIDDEN not in ours.metadata
    theirs = SimpleNamespace(visible=False, metadata={})  # hidden by the user
    layer_steps.show_again(theirs)
    assert not theirs.visible
    new = SimpleNamespace(visible=False, metadata={layer_steps.REVEAL: ["layer"]})
    assert layer_steps.reveal_steps(layer_steps.keep_hidden(new)) == [] and not new.visible
    layer_steps.show_again(new)
    assert new.visible


@pytest.mark.gui
@pytest.mark.fast_paths
def test_a_shapes_layer_without_text_does_not_draw_its_text_until_given_some(make_napari_viewer):
    from napari.layers import Shapes

    viewer = make_napari_viewer()
    layer = Shapes(visible=False, name="boxes")
    layer_steps.add_in_parts(viewer, layer)
    text_visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer].node.text
    assert not text_visual.visible  # napari's empty string would build the text program
    for step in layer_steps.reveal_steps(layer):
        step()
    layer.add_rectangles([np.array([[0, 0], [10, 10]])])
    assert layer.visible and not text_visual.visible

    layer.text = {"string": {"constant": "box"}}  # text given: napari draws it as usual

    assert text_visual.visible


@pytest.mark.gui
def test_a_shapes_layer_with_text_keeps_its_text_visual(make_napari_viewer):
    from napari.layers import Shapes

    viewer = make_napari_viewer()
    layer = Shapes(
        [np.array([[0, 0], [10, 10]])],
        shape_type="rectangle",
        features={"name": ["a"]},
        text="name",
        visible=False,
    )
    layer_steps.add_in_parts(viewer, layer)

    assert viewer.window._qt_viewer.canvas.layer_to_visual[layer].node.text.visible


def _shapes_parts(viewer, layer):
    node = viewer.window._qt_viewer.canvas.layer_to_visual[layer].node
    return [part for part in node._subvisuals if part is not node.text]


@pytest.mark.gui
@pytest.mark.fast_paths
def test_a_new_shapes_layer_is_drawn_part_by_part_after_it_is_shown(make_napari_viewer):
    from napari.layers import Shapes

    viewer = make_napari_viewer()
    layer = Shapes([np.array([[0, 0], [10, 10]])], shape_type="rectangle", visible=False)
    layer_steps.add_in_parts(viewer, layer)
    parts = _shapes_parts(viewer, layer)
    steps = layer_steps.reveal_steps(layer)
    assert layer.metadata[layer_steps.REVEAL] == [
        "controls", "layer", *(f"part:{k}" for k in range(len(parts)))
    ]  # fmt: skip
    assert len(parts) == 4 and not any(part.visible for part in parts)

    steps.pop(0)()  # napari's controls of the layer
    steps[0]()  # the layer is shown, none of its parts drawn yet
    assert layer.visible and not any(part.visible for part in parts)
    steps[1]()
    assert [part.visible for part in parts] == [True, False, False, False]
    for step in steps[2:]:
        step()

    assert all(part.visible for part in parts)
    assert layer_steps.reveal_steps(layer) == []


@pytest.mark.gui
def test_a_shapes_layer_shown_by_hand_before_its_steps_is_drawn_whole(make_napari_viewer):
    from napari.layers import Shapes

    viewer = make_napari_viewer()
    layer = Shapes([np.array([[0, 0], [10, 10]])], shape_type="rectangle", visible=False)
    layer_steps.add_in_parts(viewer, layer)

    layer.visible = True  # the eye clicked, or a step dropped and the layer shown elsewhere

    assert all(part.visible for part in _shapes_parts(viewer, layer))
    assert not any(s.startswith("part:") for s in layer.metadata[layer_steps.REVEAL])


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.fast_paths
def test_adding_a_layer_leaves_the_canvas_redraw_to_a_later_turn(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    canvas = viewer.window._qt_viewer.canvas
    native, draws = canvas.native, []
    qtbot.waitUntil(lambda: native.isVisible(), timeout=2000)
    place = map_layers.Placement((1.0, 1.0), (0.0, 0.0))
    style = {"units": ("pixel", "pixel"), "colormap": "inferno", "opacity": 0.5}
    canvas._scene_canvas.events.draw.connect(lambda _event: draws.append(1))
    map_layers.upsert_image(
        viewer, map_layers.HEATMAP, np.ones((4, 4)), place, contrast_limits=(0, 1), **style
    )
    assert "update" in vars(native)  # held for this turn: the layer list repaints alone
    # and Qt shows the canvas's last picture meanwhile (with its updates disabled instead, a
    # screen grab showed the canvas blank for a frame)
    assert native.updatesEnabled()
    with fast_canvas.canvas_redrawn_later(viewer):  # already held: left to the first block
        pass
    assert "update" in vars(native) and draws == []
    qtbot.waitUntil(lambda: "update" not in vars(native), timeout=2000)  # Qt's own again
    qtbot.waitUntil(lambda: bool(draws), timeout=2000)  # and the redraw asked for meanwhile is made


@pytest.mark.gui
def test_a_canvas_closed_before_its_redraw_is_left_alone(qtbot):
    from qtpy.QtWidgets import QWidget

    widget = QWidget()
    widget.update = lambda *args: None
    widget.deleteLater()
    qtbot.waitUntil(lambda: not _alive(widget), timeout=2000)
    fast_canvas.release_redraws(widget, [()])  # no error: the viewer was closed in between


def _alive(widget) -> bool:
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True


def _controls(viewer):
    return viewer.window._qt_viewer.controls.widgets


@pytest.mark.gui
@pytest.mark.fast_paths
def test_a_new_layers_controls_are_built_by_their_step(make_napari_viewer):
    viewer = make_napari_viewer()
    place = map_layers.Placement((1.0, 1.0), (0.0, 0.0))
    style = {"units": ("pixel", "pixel"), "colormap": "inferno", "opacity": 0.5}
    heat = map_layers.upsert_image(
        viewer, map_layers.HEATMAP, np.ones((4, 4)), place, contrast_limits=(0, 1), **style
    )
    assert heat not in _controls(viewer)  # not in the turn that added the layer
    steps = layer_steps.reveal_steps(heat)
    assert heat.metadata[layer_steps.REVEAL][0] == "controls"
    steps[0]()
    assert heat in _controls(viewer) and not heat.visible
    for step in steps[1:]:
        step()
    assert heat.visible
    # built once: the layer's panel is napari's own, shown when the layer is chosen
    panel = _controls(viewer)[heat]
    viewer.layers.selection.active = heat
    assert viewer.window._qt_viewer.controls.currentWidget() is panel


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.fast_paths
@pytest.mark.parametrize("first", ["selected", "removed", "shown by napari"])
def test_a_layer_chosen_or_removed_before_its_controls_step_works_as_usual(
    make_napari_viewer, first
):
    viewer = make_napari_viewer()
    place = map_layers.Placement((1.0, 1.0), (0.0, 0.0))
    layer = map_layers.upsert_labels(
        viewer, np.ones((4, 4), np.int32), ["a"], place, units=("pixel", "pixel"), opacity=1
    )
    steps = layer_steps.reveal_steps(layer)
    assert layer not in _controls(viewer)
    if first == "selected":  # a click in the layer list: napari shows the layer's controls
        viewer.layers.selection.active = layer
        panel = _controls(viewer)[layer]
        assert viewer.window._qt_viewer.controls.currentWidget() is panel
    elif first == "removed":  # napari drops the controls it expects to find
        viewer.layers.remove(layer)
        assert layer not in _controls(viewer)
    else:  # the user shows the layer with its eye; the controls come when chosen
        layer.visible = True
        viewer.layers.selection.active = layer
        assert layer in _controls(viewer)
    for step in steps:  # the steps left do nothing twice
        step()
    assert (layer in _controls(viewer)) == (first != "removed")


def test_without_napari_s_window_a_layer_is_added_with_nothing_held():
    # a viewer model without Qt (no controls container, no canvas): added as napari adds it
    from napari.components import ViewerModel
    from napari.layers import Image

    viewer = ViewerModel()
    layer = Image(np.ones((4, 4)), visible=False)
    layer_steps.add_in_parts(viewer, layer)
    assert layer in viewer.layers and layer.metadata[layer_steps.REVEAL] == ["layer"]
    for step in layer_steps.reveal_steps(layer):
        step()
    assert layer.visible


@pytest.mark.gui
@pytest.mark.fast_paths
def test_the_next_step_waits_for_the_canvas_to_draw_the_last_one(make_napari_viewer, qtbot):
    from napari.components import ViewerModel

    viewer = make_napari_viewer(show=True)
    calls = []
    fast_canvas.after_canvas_drawn(viewer, lambda: calls.append("drawn"))
    assert calls == []
    viewer.window._qt_viewer.canvas.native.update()  # what a step's change asks for
    qtbot.waitUntil(lambda: calls == ["drawn"], timeout=2000)
    qtbot.wait(2 * fast_canvas.CANVAS_WAIT_MS)
    assert calls == ["drawn"]  # once: the fallback timer does not call it again

    fast_canvas.after_canvas_drawn(viewer, lambda: calls.append("nothing drawn"))  # draws nothing
    qtbot.waitUntil(lambda: calls[-1] == "nothing drawn", timeout=2000)
    fast_canvas.after_canvas_drawn(ViewerModel(), lambda: calls.append("no canvas"))
    assert calls[-1] == "no canvas"  # at once


@pytest.mark.gui
def test_the_step_queue_runs_one_step_a_turn_and_a_newer_display_replaces_the_waiting(qtbot):
    from napari.components import ViewerModel

    viewer = ViewerModel()  # no canvas: each next step is due STEP_GAP_MS after the last
    ran: list[str] = []
    alive = [True]
    after = []
    queue = layer_steps.StepQueue(
        viewer, alive=lambda: alive[0], after_step=lambda: after.append(len(ran))
    )

    def step(name, more=()):
        return lambda: (ran.append(name), list(more))[1]

    queue.replace([step("a", [step("a.1")]), step("b")])
    assert ran == [] and queue.busy  # the first in the next turn
    qtbot.waitUntil(lambda: ran == ["a"], timeout=2000)
    queue.replace([step("c")])  # a newer display: what waited ("a.1", "b") is dropped
    qtbot.waitUntil(lambda: not queue.busy, timeout=2000)
    assert ran == ["a", "c"] and after == [1, 2]

    queue.replace([step("d"), step("e")])
    qtbot.waitUntil(lambda: ran[-1] == "d", timeout=2000)
    alive[0] = False  # the dock closed: nothing more runs
    qtbot.wait(4 * layer_steps.STEP_GAP_MS)
    assert ran[-1] == "d"

    layer_steps.run_in_turns(viewer, [step("now"), step("later")])
    assert ran[-1] == "now"  # the first at once
    qtbot.waitUntil(lambda: ran[-1] == "later", timeout=2000)


@pytest.mark.gui
def test_steps_stop_quietly_once_their_window_is_gone_and_only_then(make_napari_viewer):
    """A step that runs after its viewer's window was closed meets Qt's deleted canvas (inside
    napari's signals): the queue stops instead of raising out of a Qt timer, which aborted a
    process making a second viewer (``bench/stalls.py --view --repeat 2``)."""

    def canvas_gone():
        try:
            raise RuntimeError("wrapped C/C++ object of type CanvasBackendDesktop has been deleted")
        except RuntimeError as exc:
            raise ValueError("while emitting signal 'visible', an error occurred") from exc

    ran = []
    queue = layer_steps.StepQueue(make_napari_viewer())
    queue.run_now([canvas_gone, lambda: ran.append(1)])
    assert not queue.busy and ran == []
    assert layer_steps.window_closed(RuntimeError("Internal C++ object (QWidget) already deleted."))
    with pytest.raises(RuntimeError, match="a bug of ours"):
        queue.run_now([lambda: (_ for _ in ()).throw(RuntimeError("a bug of ours"))])
