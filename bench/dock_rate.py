"""The napari dock's embedding rate against the CLI's, on the same slide (needs a display: Xvfb).

In turn, ``--rounds`` times, on a fresh store each time:

- ``cli``: ``napari-conch embed SLIDE --model demo --level 0 --tile-size 128`` in a child process;
- ``session``: the engine as the CLI drives it, in this process (``Session.embed(live=False)``:
  grouped writes, no live index);
- ``session-live``: the engine as the dock drives it, without Qt (``Session.embed(live=True)``:
  a write and a read-back per batch, the live index);
- ``dock``: the Prompt highlighter dock in a napari viewer, Embed pressed
  (``start_embedding``), the Qt event loop running until it ends.

Each line gives the rate of the tile phase (the store's ``last_run``: tiles computed over the
seconds from the first batch to the last write) and the wall time of the whole run. Usage::

    xvfb-run -a python bench/dock_rate.py            # the real SVS fixture, demo model
    xvfb-run -a python bench/dock_rate.py --slide /tmp/bench/tissue_20480.tif --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
FIXTURES = Path(os.environ.get("NAPARI_CONCH_FIXTURES", REPO.parent / "shared" / "fixtures"))


def last_run(root: Path) -> dict:
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    (path,) = root.glob("*.zarr")
    run = EmbeddingStore.open(path).attrs["last_run"]
    return {"tiles": run["computed"], "tile_phase_s": run["seconds"],
            "tiles_per_s": round(run["computed"] / run["seconds"], 1)}  # fmt: skip


def run_cli(slide: Path, root: Path, tile: int) -> None:
    cmd = [sys.executable, "-m", "napari_conch", "embed", str(slide), "--model", "demo",
           "--level", "0", "--tile-size", str(tile), "--store", str(root), "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def run_session(slide: Path, root: Path, tile: int, live: bool, model) -> None:
    from napari_conch.engine.options import RunOptions
    from napari_conch.engine.session.session import Session

    session = Session(RunOptions(level=0, tile_size=tile, store_root=str(root)))
    session.set_model(model)
    session.open_slide(slide)
    session.embed(live=live)


def run_dock(viewer, widget, slide_layer, root: Path, tile: int) -> None:
    from qtpy.QtWidgets import QApplication

    s = widget.slide_panel
    s.store_root.value = root
    s.tile_size.value = tile
    s.stride.value = tile
    worker = widget.start_embedding()
    if worker is None:
        raise SystemExit(f"the dock did not start: {widget.errors}")
    app = QApplication.instance()
    while widget.embedding:
        app.processEvents()
        time.sleep(0.002)


def open_dock(slide: Path):
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    [layer] = viewer.open(str(slide), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    widget.model_panel.source.value = "demo"
    widget.model_panel.device.value = "cpu"
    widget.load_model()
    app = QApplication.instance()
    while widget.model is None:
        app.processEvents()
        time.sleep(0.01)
    return viewer, widget, layer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slide", type=Path, default=FIXTURES / "images" / "cmu_small_region.svs")
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ways", default="cli,session,session-live,dock")
    args = p.parse_args(argv)
    sys.path.insert(0, str(SRC))
    from napari_conch.cli.compute_threads import passive_thread_waits

    passive_thread_waits()  # as the CLI: this process's torch waits passively too
    from napari_conch.model import load_model

    model = load_model("demo", device="cpu")
    ways = args.ways.split(",")
    dock = open_dock(args.slide) if "dock" in ways else None
    print(f"# {args.slide.name}, demo model, {args.tile_size} px tiles at level 0")
    for i in range(args.rounds):
        for way in ways:
            with tempfile.TemporaryDirectory(prefix="bench-dock-") as tmp:
                root = Path(tmp)
                load = " ".join(f"{v:.2f}" for v in os.getloadavg())
                start = time.perf_counter()
                if way == "cli":
                    run_cli(args.slide, root, args.tile_size)
                elif way.startswith("session"):
                    run_session(args.slide, root, args.tile_size, way == "session-live", model)
                else:
                    run_dock(*dock, root, args.tile_size)
                wall = time.perf_counter() - start
                line = {"round": i + 1, "way": way, "load": load, "wall_s": round(wall, 2)}
                print(json.dumps({**line, **last_run(root)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
