"""User flows run in a process of their own, with napari's canvas drawn (Xvfb).

Run by ``test_drawn_flows.py`` as ``python -m tests.napari.drawn_flows FLOW ...``: a crash of
the process (napari's canvas once died in ``glDrawArrays`` when a map layer was removed) is then
a failed test with the signal in its message, not the end of the test run. Each flow prints one
``OK ...`` line describing the final state and exits 0, or says what went wrong and exits 3.
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
import time
from pathlib import Path

#: Longest wait for one step of a flow (seconds).
STEP_TIMEOUT_S = 120
#: Canvas draws to see after each step before the next, so that every change is drawn.
DRAWS_PER_STEP = 3


def _fail(message: str) -> None:
    print(f"FAILED: {message}", flush=True)
    raise SystemExit(3)


def _wait(app, condition, what: str) -> None:
    """Process Qt events until ``condition()`` holds (or fail after STEP_TIMEOUT_S)."""
    end = time.monotonic() + STEP_TIMEOUT_S
    while not condition():
        if time.monotonic() > end:
            _fail(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def _drawn(app, viewer, draws: int = DRAWS_PER_STEP) -> None:
    """Wait until the canvas has been drawn ``draws`` more times (forcing redraws)."""
    from napari_conch._napari.layers.gl_context import canvas_widget

    canvas = canvas_widget(viewer.window._qt_window)
    if canvas is None:
        _fail("no shown OpenGL canvas")
    count = [0]
    canvas.frameSwapped.connect(lambda: count.__setitem__(0, count[0] + 1))
    for target in range(1, draws + 1):
        canvas.update()
        _wait(app, lambda t=target: count[0] >= t, "the canvas to draw")


def prompts_flow(sequence: list[str]) -> str:
    """``napari-conch view`` (demo model, held-out sample), then the prompt box set to each
    entry of ``sequence`` in turn (prompts separated by ``|``), every map drawn."""
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers import map_layers

    viewer, dock = _view_with_labels()
    app = QApplication.instance()
    for entry in sequence:
        prompts = entry.split("|")
        dock.prompt_panel.text.native.setPlainText("\n".join(prompts))
        expect = (
            {map_layers.HEATMAP, map_layers.PROBABILITY, map_layers.LABELS}
            if len(prompts) > 1
            else {map_layers.HEATMAP}
        )

        def settled(prompts=prompts, expect=expect) -> bool:
            result = dock.session.result
            names = {layer.name for layer in viewer.layers} - {dock.slide_layer.name}
            return (
                result is not None and list(result.names) == prompts
                and not dock.drawing and names == expect
            )  # fmt: skip

        _wait(app, settled, f"the maps of {prompts}")
        _drawn(app, viewer)
    layers = [layer.name for layer in viewer.layers]
    legend = map_layers.legend_shown(viewer)
    from napari_conch._napari.layers.on_show import caption_shown

    caption = caption_shown(viewer)
    viewer.close()
    return f"layers={layers} legend={legend} caption={caption}"


def rerun_flow() -> str:
    """``napari-conch view``, then new tile options (the store closes: the maps are hidden and
    kept), a run at those options (the maps come back in the same layers), the prompts cleared
    (the kept maps removed), every change drawn."""
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers import map_layers

    viewer, dock = _view_with_labels()
    app = QApplication.instance()
    # each layer's own metadata dict names it (napari hands plugins proxies of the layers)
    kept = {name: id(viewer.layers[name].metadata) for name in map_layers.PROMPT_MAP_LAYERS}
    s = dock.slide_panel
    s.tile_size.value = s.stride.value = 192  # the demo's tiles are 128 px: another grid
    _wait(app, lambda: dock.session.result is None and not dock.drawing, "the maps hidden")
    _drawn(app, viewer)
    if any(viewer.layers[name].visible for name in kept):
        _fail("a map of the closed store is still shown")
    if dock.start_embedding() is None:
        _fail(f"the run did not start: {dock.errors}")
    _wait(app, lambda: not dock.embedding and dock.session.result is not None, "the new run")
    _wait(app, lambda: not dock.drawing and viewer.layers[map_layers.LABELS].visible, "labels")
    _drawn(app, viewer)
    again = {name: id(viewer.layers[name].metadata) for name in map_layers.PROMPT_MAP_LAYERS}
    dock.prompt_panel.text.native.setPlainText("")
    _wait(
        app,
        lambda: not set(map_layers.PROMPT_MAP_LAYERS) & {ly.name for ly in viewer.layers},
        "the maps removed with their prompts",
    )
    _drawn(app, viewer)
    if dock.errors:
        _fail(f"the dock reported {dock.errors}")
    layers = [layer.name for layer in viewer.layers]
    viewer.close()
    return f"same_layers={again == kept} layers={layers}"


def _view_with_labels():
    """``napari-conch view`` as typed, at 1366 x 768, once its labels map is drawn."""
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers import map_layers
    from napari_conch.cli import build_parser, view

    args = build_parser().parse_args(["view"])
    viewer, dock = view.open_view(args, tune=True)  # as the command does
    viewer.window._qt_window.resize(1366, 768)
    app = QApplication.instance()
    _wait(
        app, lambda: map_layers.LABELS in viewer.layers and not dock.drawing, "the first labels map"
    )
    _drawn(app, viewer)
    return viewer, dock


def docks_flow() -> str:
    """``napari-conch view``, then the Annotate dock (examples painted, a class learned from
    examples alone), the Caption dock (a clicked region captioned), one prompt, and the
    Annotate dock closed and opened again."""
    from types import SimpleNamespace

    import numpy as np
    from qtpy.QtWidgets import QApplication

    viewer, prompts = _view_with_labels()
    app = QApplication.instance()
    window, annotate = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")

    def learned(examples: int) -> bool:
        outcome = annotate.outcome
        return outcome is not None and outcome.used == examples and not annotate.busy()

    _wait(app, lambda: learned(0), "the zero-shot learned map")
    tiles = [tuple(map(int, t)) for t in np.argwhere(prompts.session.live_embeddings()[0].valid)]
    annotate.class_panel.klass.value = "stroma"
    layer = annotate.paint_examples()
    for r, c in tiles[:3]:
        layer.paint((r, c), annotate.classes.index("stroma") + 1)
    _wait(app, lambda: learned(3), "the map learned from 3 painted tiles")
    _drawn(app, viewer)
    annotate.class_panel.new_class.value = "necrosis"
    annotate.add_class()
    annotate.label_tiles(tiles[-2:], "necrosis")
    _wait(app, lambda: learned(5), "the map learned with a new class")
    _drawn(app, viewer)
    if annotate.errors:
        _fail(f"the Annotate dock reported {annotate.errors}")

    _, caption = viewer.window.add_plugin_dock_widget("napari-conch", "Caption and retrieval")
    _wait(app, lambda: caption.model is not None, "the Caption dock to share the model")
    caption.region_panel.box_size.value = 128
    caption.arm_click_region()
    slide = prompts.slide_layer
    centre = np.asarray(slide.translate) + 200.0 * np.asarray(slide.scale)
    press = SimpleNamespace(type="mouse_press", position=tuple(centre))
    for callback in viewer.mouse_drag_callbacks:  # what napari calls on a click
        callback(viewer, press)
    _wait(app, lambda: caption.caption_text is not None and not caption.busy(), "the caption")
    _drawn(app, viewer)

    prompts.prompt_panel.text.native.setPlainText("stroma")
    _wait(
        app,
        lambda: (
            prompts.session.result is not None
            and list(prompts.session.result.names) == ["stroma"]
            and not prompts.drawing
        ),
        "the one-prompt map",
    )
    _drawn(app, viewer)
    viewer.window.remove_dock_widget(window)
    _drawn(app, viewer)
    _, again = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    _drawn(app, viewer)
    errors = [*prompts.errors, *caption.errors, *again.errors]
    if errors:
        _fail(f"the docks reported {errors}")
    text = caption.caption_text
    viewer.close()
    return f"caption={bool(text)}"


def cohort_flow(csv: Path, prompts: Path) -> str:
    """The Cohort dock: its slides CSV loaded, the first slide opened, then the second."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers.slide_source import META_KEY

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    app = QApplication.instance()
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Cohort")
    dock.slides_csv.value = csv
    dock.prompts.value = prompts
    dock.load_slides()
    opened = []
    for row in (0, 1, 0):
        dock.slides.native.setCurrentCell(row, 0)
        dock.open_selected()
        _wait(app, lambda: not dock.busy(), f"slide row {row} to open")
        if dock.errors:
            _fail(f"the dock reported {dock.errors}")
        _drawn(app, viewer)
        slides = [ly.metadata[META_KEY]["path"] for ly in viewer.layers if META_KEY in ly.metadata]
        if slides != [str(dock.opened.slide.path)]:
            _fail(f"slide layers after opening row {row}: {slides}")
        opened.append(Path(slides[0]).name)
    viewer.close()
    return f"opened={opened}"


def napari_removal_flow(guarded: bool) -> str:
    """A layer whose canvas colour bar was drawn, removed by napari itself (the layer list's
    bin), with napari's removal guarded as ``napari-conch view`` guards it, or not."""
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.fastpaths.removal import guard_layer_removal

    if guarded and not guard_layer_removal():
        _fail("napari's removal could not be guarded")
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.add_image(np.zeros((400, 400, 3), np.uint8), rgb=True, name="slide")
    layer = viewer.add_image(np.random.default_rng(0).random((60, 80)), name="map")
    layer.colorbar.visible = True
    _drawn(app, viewer)
    viewer.layers.remove(layer)
    viewer.camera.zoom = 2.0
    _drawn(app, viewer)
    names = [ly.name for ly in viewer.layers]
    viewer.close()
    return f"layers={names}"


def main(argv: list[str]) -> int:
    faulthandler.enable()
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="flow", required=True)
    sub.add_parser("prompts").add_argument("sequence", nargs="+")
    cohort = sub.add_parser("cohort")
    cohort.add_argument("csv", type=Path)
    cohort.add_argument("prompts", type=Path)
    sub.add_parser("napari-removal").add_argument("how", choices=["guarded", "plain"])
    sub.add_parser("docks")
    sub.add_parser("rerun")
    args = parser.parse_args(argv)
    if args.flow == "prompts":
        print("OK", prompts_flow(args.sequence), flush=True)
    elif args.flow == "docks":
        print("OK", docks_flow(), flush=True)
    elif args.flow == "rerun":
        print("OK", rerun_flow(), flush=True)
    elif args.flow == "cohort":
        print("OK", cohort_flow(args.csv, args.prompts), flush=True)
    else:
        print("OK", napari_removal_flow(args.how == "guarded"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
