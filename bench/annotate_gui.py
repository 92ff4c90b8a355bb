"""The Annotate dock at 100,000 tiles: time from a stroke to the redrawn maps, and GUI stalls.

Usage (needs a display; under Xvfb)::

    xvfb-run -a -s "-screen 0 1366x768x24" python bench/annotate_gui.py

A napari viewer shows the lazy 50,000 x 50,000 synthetic sample slide; the demo model (D = 128)
is loaded into the session; the slide's store (160 px tiles: 313 x 313 = 97,969 tiles) is
filled with synthetic embeddings (three noisy clusters around the prompts' text embeddings)
instead of running the image encoder, so the number is the dock's, not the encoder's. The
prompts "tumor cells", "stroma", "inflammatory cells" are set on the session. Then, ``--steps``
times, a batch of example tiles is labelled as a stroke would label them, and measured:

- ``labelling``: the examples put into the ``CONCH examples`` layer (GUI thread);
- ``stroke -> maps``: from the labelling to the learned labels and probability layers redrawn
  (the dock's 300 ms debounce excluded), training and maps running in a worker;
- ``redraw``: the part spent on the GUI thread putting the new maps into the layers;
- ``longest stall``: the longest gap between ticks of a 10 ms Qt timer over the whole step
  (cross-validation included), i.e. how long the viewer did not respond; compared with the same
  timer's longest gap while the viewer is idle (what the machine's load alone costs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from stall_meter import Probe, wait_until  # noqa: E402  (bench/stall_meter.py)

PROMPTS = ("tumor cells", "stroma", "inflammatory cells")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--per-step", type=int, default=30, help="examples added per step")
    parser.add_argument("--tile", type=int, default=160)
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_conch._napari.layers import examples as example_layers
    from napari_conch.engine.embed import open_store
    from napari_conch.engine.session.prompt_request import PromptRequest
    from napari_conch.engine.store.embedding_store import TileStatus

    app = QApplication.instance() or QApplication([])

    def wait(cond, timeout=300.0):
        wait_until(app, cond, timeout, 0.0)

    tmp = Path(tempfile.mkdtemp())
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-conch", "synthetic-slide")
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    session = dock.session
    session.load_model("demo", device="cpu")
    session.set_options(store_root=tmp, tile_size=args.tile, stride=args.tile)
    dock.require_slide()
    grid = session.grid
    store = open_store(session.slide, session.model, grid, tmp)
    rng = np.random.default_rng(0)
    texts = session.model.embed_texts(list(PROMPTS)).numpy()
    rows, cols = np.nonzero(np.ones(grid.shape, bool))
    truth = (rows * 3 // grid.rows + cols * 3 // grid.cols) % 3
    dim = texts.shape[1]
    vectors = texts[truth] + 2.0 * rng.standard_normal((len(rows), dim)) / np.sqrt(dim)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, len(rows), 20_000):
        part = slice(start, start + 20_000)
        store.write_embeddings(rows[part], cols[part], vectors[part])
    assert store.counts()["done"] == len(rows) and TileStatus.DONE
    session.open_store(create=False)
    session.set_prompts(PromptRequest(PROMPTS, "none"))
    wait(lambda: dock.outcome is not None and not dock.busy())

    redraws: list[float] = []
    original = dock.show_outcome

    def timed(outcome):
        start = time.perf_counter()
        original(outcome)
        redraws.append(time.perf_counter() - start)

    dock.show_outcome = timed
    probe = Probe()
    print(
        f"{len(rows)} embedded tiles ({grid.rows} x {grid.cols}), D = {dim}, "
        f"{len(PROMPTS)} prompted classes, {args.per_step} examples per step"
    )
    probe.reset()
    wait_until(app, lambda: True, 0.0, 2.0)  # the same timer with the viewer idle: the baseline
    print(f"longest gap of the 10 ms timer, viewer idle for 2 s: {1000 * max(probe.gaps):.0f} ms")
    print("| examples | labelling | stroke -> maps | redraw (GUI thread) | longest stall |")
    print("|---|---|---|---|---|")
    order = rng.permutation(len(rows))
    results = []
    for step in range(1, args.steps + 1):
        chosen = order[(step - 1) * args.per_step : step * args.per_step]
        dock.learn_panel.live.value = False  # the stroke first, then retrain without the timer
        probe.reset()
        t0 = time.perf_counter()
        for k in range(3):
            picked = chosen[truth[chosen] == k]
            dock.label_tiles([(int(rows[i]), int(cols[i])) for i in picked], PROMPTS[k])
        start = time.perf_counter()
        dock.retrain()
        labelling = start - t0
        wait(lambda step=step: dock.outcome.used == step * args.per_step)
        shown = time.perf_counter() - start
        wait(lambda: not dock.busy())
        gaps = probe.gaps
        stall = max(gaps) if gaps else 0.0
        results.append((shown, redraws[-1], stall))
        print(
            f"| {step * args.per_step} | {1000 * labelling:.0f} ms | {1000 * shown:.0f} ms | "
            f"{1000 * redraws[-1]:.0f} ms | {1000 * stall:.0f} ms |"
        )
    shown, redraw, stall = zip(*results, strict=True)
    print(
        f"median stroke -> maps {1000 * statistics.median(shown):.0f} ms, "
        f"redraw {1000 * statistics.median(redraw):.0f} ms, "
        f"longest stall {1000 * max(stall):.0f} ms; errors: {dock.errors}"
    )
    assert example_layers.LEARNED_LABELS in viewer.layers
    probe.stop()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
