"""Event-loop pauses of napari while the napari-conch docks work, step by step.

Usage (needs a display; Xvfb is enough, see ``docs/benchmarks.md``)::

    xvfb-run -a -s "-screen 0 1366x768x24" python bench/stalls.py
    xvfb-run -a -s "-screen 0 1366x768x24" python bench/stalls.py --slide SLIDE --repeat 3

The suite's event-loop probe (a 10 ms ``QTimer`` whose gaps between ticks are the pauses of the
Qt event loop) runs while the real docks drive the whole flow with the demo model on the shipped
sample slide (or ``--slide``), in a window of 1366 x 768 with both docks open:

``idle (reference)``  3 s with the slide shown and nothing done: this machine's floor
``open Prompt highlighter``  the first dock opened from the plugin menu, until its warm-up
                thread (imports) has ended
``open Caption and retrieval``  the second dock
``load``        the demo model button (Prompt highlighter)
``embed``       Embed, from the click until the run has ended
``first maps``  one prompt typed: encoded, the heatmap layer made and drawn
``re-prompt``   another prompt typed
``labels``      three prompts: probability and labels layers, the legend
``export``      the Export button (a GeoJSON)
``arm a click`` "Click a point" pressed in the Caption dock (the region layer is made)
``caption``     a tile-sized region clicked on the slide, captioned
``live maps``   Embed again at 128 px tiles, stride 64 (714 overlapping tiles) with the three
                prompts' maps filling in as batches arrive, until the run has ended and the
                labels are drawn (this was a timed assertion in the tests)

With ``--view`` it measures instead ``napari-conch view`` (the README's main command: the demo
model embeds the held-out sample, or ``--slide``, and shows three prompts' labels map without a
click), from the moment the window is up until the map is drawn. With ``--synthetic SECONDS``
it measures instead the lazy 50,000 x 50,000 synthetic sample:
``embed visible`` (Embed visible region first, at MPP 2 so the tissue search reads a coarse
level, for SECONDS, then Cancel until the run has ended) and ``first maps`` during the run.

The process is set up as ``napari-conch view`` sets up its own (``tune_view_process``: OpenMP's
passive waits, the garbage collector's freezes, a short switch interval, background threads at
a lower priority). With ``--plain`` it is left as a napari the user started is: the case of the
docks opened from napari's Plugins menu, where napari-conch changes nothing process-wide.

Each step is measured from its trigger until what it makes is on screen plus ``--settle``
seconds. Printed per step: the longest pause with the CPU time the GUI thread spent in it (a
pause much longer than its CPU time was spent waiting: for the interpreter lock held by another
thread, or for cores taken by other processes) and the time Python's garbage collector ran in it
(any thread), the second longest, and how many pauses exceeded 100 ms. The stores go to a
temporary folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from machine_info import cpu_model  # noqa: E402  (bench/machine_info.py)
from stall_meter import PAUSE_S, Probe, wait_until  # noqa: E402  (bench/stall_meter.py)

#: Seconds a step may take before the run is given up (``--step-timeout``).
STEP_TIMEOUT_S = 300.0


def run_flow(slide: Path, settle: float, store_root: str) -> list[tuple[str, float, list[float]]]:
    """The flow once in a new viewer; returns ``(step, seconds, gaps)`` per step."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers import map_layers

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.move(0, 0)
    window.resize(1366, 768)
    [slide_layer] = viewer.open(str(slide), plugin="napari-conch")
    app = QApplication.instance()
    probe = Probe()
    wait_until(app, lambda: True, 5, 1.0)
    out = []

    def step(name, trigger, condition, timeout=None, settle_s=None):
        timeout = STEP_TIMEOUT_S if timeout is None else timeout
        probe.reset()
        trigger()
        seconds = wait_until(app, condition, timeout, settle if settle_s is None else settle_s)
        out.append((name, seconds, probe.pairs()))
        longest, cpu, collecting = (1000 * x for x in max(probe.pairs()))
        print(
            f"  {name}: {seconds:.1f} s, longest pause {longest:.0f} ms ({cpu:.0f} ms CPU, "
            f"{collecting:.0f} ms collecting garbage)",
            flush=True,
        )

    from napari_conch._napari.warmup import warmed_up

    docks = {}

    def open_dock(name):
        return lambda: docks.update(
            {name: viewer.window.add_plugin_dock_widget("napari-conch", name)[1]}
        )

    step("idle (reference)", lambda: None, lambda: True, settle_s=3.0)
    step("open Prompt highlighter", open_dock("Prompt highlighter"), warmed_up)
    step("open Caption and retrieval", open_dock("Caption and retrieval"), warmed_up)
    dock, caption = docks["Prompt highlighter"], docks["Caption and retrieval"]
    dock.slide_panel.store_root.value = store_root
    dock.model_panel.device.value = "cpu"
    session = dock.session
    demo = dock.model_panel.demo
    step("load", lambda: demo.changed.emit(True), lambda: session.model is not None)
    step(
        "embed",
        lambda: dock.slide_panel.embed.changed.emit(True),
        lambda: not dock.embedding and session.store is not None,
    )

    def shows(names):
        return lambda: session.result is not None and list(session.result.names) == names

    def typed(text):
        return lambda: setattr(dock.prompt_panel.text, "value", text)

    def drawn(names, layer):
        return lambda: shows(names)() and layer in viewer.layers and not dock.drawing

    step("first maps", typed("stroma"), drawn(["stroma"], map_layers.HEATMAP))
    step("re-prompt", typed("tumor cells"), shows(["tumor cells"]))
    three = ["tumor cells", "stroma", "inflammatory cells"]
    step("labels", typed("\n".join(three)), drawn(three, map_layers.LABELS))
    target = Path(store_root) / "map.geojson"
    dock.export_panel.path.value = str(target)
    step(
        "export",
        lambda: dock.export_panel.export.changed.emit(True),
        lambda: target.exists() and not dock.busy("export"),
    )

    from types import SimpleNamespace

    height, width = map_layers.image_shape(slide_layer)
    centre = slide_layer.data_to_world((height / 2, width / 2))
    caption.caption_panel.max_length.value = 12

    def click():
        for callback in viewer.mouse_drag_callbacks:
            callback(viewer, SimpleNamespace(type="mouse_press", position=tuple(centre)))

    step("arm a click", caption.arm_click_region, lambda: caption.click_armed)
    step("caption", click, lambda: caption.caption_text is not None and not caption.busy())
    first_store = session.store.path  # before the new grid closes it
    dock.slide_panel.tile_size.value = 128  # 714 overlapping tiles: a longer run
    dock.slide_panel.stride.value = 64

    def live_done():
        store = session.store
        return store is not None and store.path != first_store and not dock.embedding

    step(
        "live maps",
        lambda: dock.slide_panel.embed.changed.emit(True),
        lambda: live_done() and drawn(three, map_layers.LABELS)(),
    )
    probe.stop()
    viewer.close()
    return out


def run_synthetic(seconds: float, settle: float, store_root: str) -> list:
    """The lazy synthetic slide: Embed visible region first for ``seconds``, then Cancel."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers import map_layers
    from napari_conch._napari.warmup import warmed_up

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.move(0, 0)
    window.resize(1366, 768)
    viewer.open_sample("napari-conch", "synthetic-slide")
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    app = QApplication.instance()
    probe = Probe()
    wait_until(app, warmed_up, 120, 1.0)
    dock.slide_panel.store_root.value = store_root
    dock.model_panel.device.value = "cpu"
    session = dock.session
    dock.model_panel.demo.changed.emit(True)
    wait_until(app, lambda: session.model is not None, 120, 0.5)
    dock.slide_panel.mpp.value = 2.0
    out = []
    probe.reset()
    dock.slide_panel.embed_visible.changed.emit(True)
    wait_until(app, lambda: session.index is not None and session.index.size > 0, 600, 0)
    dock.prompt_panel.text.value = "stroma"
    wait_until(app, lambda: map_layers.HEATMAP in viewer.layers and not dock.drawing, 120, 0)
    out.append(("first maps during the run", 0.0, probe.pairs()))
    probe.reset()
    wait_until(app, lambda: True, 0, seconds)
    dock.cancel_embedding()
    wait_until(app, lambda: not dock.embedding, 300, settle)
    out.append(("embedding, live map, cancel", seconds, probe.pairs()))
    print(f"  embedded {session.index.size} tiles", flush=True)
    probe.stop()
    viewer.close()
    return out


def run_view(settle: float, store_root: str, slide: Path | None = None) -> list:
    """``napari-conch view [SLIDE]`` (demo model; without ``slide`` its held-out sample): from
    the window until the map."""

    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers import map_layers
    from napari_conch.cli.view import open_view
    from napari_conch.demo import DEMO_VIEW_PROMPTS

    os.environ["NAPARI_CONCH_CACHE"] = store_root  # the demo view's stores go there
    from napari_conch.cli import build_parser

    given = [str(slide)] if slide is not None else []
    args = build_parser().parse_args(["view", "--device", "cpu", *given])  # as the command does
    viewer, dock = open_view(args)
    window = viewer.window._qt_window
    window.move(0, 0)
    window.resize(1366, 768)
    app = QApplication.instance()
    probe = Probe()
    session = dock.session
    names = list(DEMO_VIEW_PROMPTS)

    def shown() -> bool:
        result = session.result
        drawn = map_layers.LABELS in viewer.layers and not dock.drawing
        return result is not None and list(result.names) == names and drawn and not dock.embedding

    seconds = wait_until(app, shown, STEP_TIMEOUT_S, settle)
    print(f"  view: {seconds:.1f} s until the labels map, {session.index.size} tiles", flush=True)
    out = [("napari-conch view, from the window to the labels map", seconds, probe.pairs())]
    probe.stop()
    viewer.close()
    return out


def machine() -> str:
    """A one-line description of the machine."""
    return f"{os.cpu_count()} CPU cores ({cpu_model()}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    """Run the flow ``--repeat`` times and print per-step pauses."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", type=Path, help="slide file (default: the shipped sample)")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each in a new viewer")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds measured after a step")
    parser.add_argument(
        "--view", action="store_true",
        help="measure `napari-conch view` (demo model, held-out sample) instead",
    )  # fmt: skip
    parser.add_argument(
        "--synthetic", type=float, metavar="SECONDS",
        help="measure the lazy 50k x 50k synthetic sample for SECONDS of embedding instead",
    )  # fmt: skip
    parser.add_argument(
        "--plain", action="store_true",
        help="a napari of the user's own (the plugin menu's case): no process settings of view",
    )  # fmt: skip
    parser.add_argument(
        "--step-timeout", type=float, default=300.0,
        help="seconds a step may take (embedding a 20k x 20k slide on a busy machine: more)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    global STEP_TIMEOUT_S
    STEP_TIMEOUT_S = args.step_timeout
    from napari_conch._napari import fastpaths
    from napari_conch._napari.sample_data import CMU_SMALL_REGION
    from napari_conch.cli.view import tune_view_process

    if not args.plain:  # as napari-conch view does (none with the fast paths off)
        tune_view_process()
    slide = args.slide or CMU_SMALL_REGION
    name = "synthetic 50k x 50k sample" if args.synthetic else slide.name
    name = (
        f"napari-conch view {args.slide.name if args.slide else ''}".strip() if args.view else name
    )
    fast = "on" if fastpaths.enabled() else "off"
    process = "a plain napari process" if args.plain else "the process tuned as view tunes it"
    print(
        f"napari-conch event-loop pauses: {name}, 1366 x 768, fast paths {fast}, {process}, "
        f"{machine()}"
    )
    runs = []
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat}", flush=True)
        with tempfile.TemporaryDirectory() as root:
            if args.view:
                runs.append(run_view(args.settle, root, args.slide))
            elif args.synthetic:
                runs.append(run_synthetic(args.synthetic, args.settle, root))
            else:
                runs.append(run_flow(slide, args.settle, root))
    print()
    print(
        "| step | seconds | longest pause (ms) | its GUI-thread CPU (ms) | garbage collection "
        "in it (ms) | second longest (ms) | pauses > 100 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for k, (name, _, _) in enumerate(runs[0]):
        gaps = sorted((g for run in runs for g in run[k][2]), reverse=True)
        seconds = max(run[k][1] for run in runs)
        over = sum(wall > PAUSE_S for wall, _, _ in gaps)
        (wall, cpu, collecting), second = gaps[0], gaps[1][0] * 1000 if len(gaps) > 1 else 0.0
        print(
            f"| {name} | {seconds:.1f} | {wall * 1000:.0f} | {cpu * 1000:.0f} "
            f"| {collecting * 1000:.0f} | {second:.0f} | {over} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
