"""Where an ``embed`` run's time goes: stage timers, cProfile or py-spy over the real pipeline.

Companion of ``bench/throughput.py`` (same slide, same options). Three ways:

- ``stages`` (default): one in-process run of the engine (``open_job`` + ``embed_slide``, what
  the CLI's ``embed`` does, without its argument parsing; its OpenMP wait policy and grouped
  writes where the code has them) with timers around its parts: the
  start-up (imports, model load, slide, grid and store opened), the tissue scan, and, per batch
  in the main thread, waiting for tiles, the model, the store writes and the rest (events,
  checks, hand-offs). Wall and CPU time per part; the reader threads' CPU (``_read_one``) and
  what other threads used (torch's workers, zarr's I/O loop) from the process's CPU time.
- ``cprofile``: the same run under cProfile (main thread), the top functions by own time.
- ``pyspy``: ``py-spy record`` (all threads, ``--idle`` off) of the real ``napari-conch embed``
  command, written as a speedscope JSON and summarised by leaf function.

Usage::

    python bench/throughput_profile.py --cache /tmp/bench            # stages
    python bench/throughput_profile.py --cache /tmp/bench --way cprofile
    python bench/throughput_profile.py --cache /tmp/bench --way pyspy   # needs py-spy
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_T0 = time.perf_counter(), time.process_time()  # before any heavy import: the start-up
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


#: The model's timer: its calls run in the main thread or, a fast model's batches several at
#: once, in worker threads (``engine/model_workers.py``), so its wall time is summed over them.
MODEL = "model: embed_images (in the threads running batches; wall summed over them)"


class Timers:
    """Wall and thread-CPU seconds accumulated per name (thread-safe)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = collections.defaultdict(float)
        self.cpu: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)
        self._lock = threading.Lock()

    def add(self, name: str, wall: float, cpu: float) -> None:
        with self._lock:
            self.wall[name] += wall
            self.cpu[name] += cpu
            self.calls[name] += 1

    def wrap(self, name: str, func):
        def timed(*a, **k):
            w, c = time.perf_counter(), time.thread_time()
            try:
                return func(*a, **k)
            finally:
                self.add(name, time.perf_counter() - w, time.thread_time() - c)

        return timed


def instrument(timers: Timers):
    """Wrap the pipeline's parts with timers; returns a function that undoes it."""
    import napari_conch.engine.embed as engine
    import napari_conch.engine.tiles as tiles
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    saved = [
        (tiles, "_read_one", tiles._read_one),
        (tiles.TileReader, "batches", tiles.TileReader.batches),
        (EmbeddingStore, "write_embeddings", EmbeddingStore.write_embeddings),
        (EmbeddingStore, "set_status", EmbeddingStore.set_status),
        (engine, "plan_run_iter", engine.plan_run_iter),
    ]
    tiles._read_one = timers.wrap("reader: read + decode a tile", tiles._read_one)
    real_batches = tiles.TileReader.batches

    def batches(self, *a, **k):  # the main thread's wait for each batch of tiles
        inner = real_batches(self, *a, **k)
        step = timers.wrap("main: wait for tiles", lambda: next(inner, None))
        while (batch := step()) is not None:
            yield batch

    tiles.TileReader.batches = batches
    writes = EmbeddingStore.write_embeddings
    EmbeddingStore.write_embeddings = timers.wrap("main: store writes", writes)
    EmbeddingStore.set_status = timers.wrap("main: store status", EmbeddingStore.set_status)
    real_plan = engine.plan_run_iter

    def plan(*a, **k):
        w, c = time.perf_counter(), time.thread_time()
        result = yield from real_plan(*a, **k)
        timers.add("main: tissue scan (plan)", time.perf_counter() - w, time.thread_time() - c)
        return result

    engine.plan_run_iter = plan

    def undo() -> None:
        for owner, name, value in saved:
            setattr(owner, name, value)

    return undo


def stages(slide_path: Path, args: argparse.Namespace) -> dict:
    """One in-process run with timers; returns the breakdown."""
    timers = Timers()
    w, c = time.perf_counter(), time.process_time()
    try:  # as napari-conch embed does, where it does (before torch is imported)
        from napari_conch.cli.compute_threads import passive_thread_waits

        passive_thread_waits()
    except ImportError:
        pass
    import torch  # noqa: F401  (the start-up's largest import, as the CLI's model load does)

    import napari_conch.engine.embed as engine
    from napari_conch.engine.options import RunOptions

    timers.add("start: imports", time.perf_counter() - w, time.process_time() - c)
    undo = instrument(timers)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as root:
        options = RunOptions(
            level=0, tile_size=args.tile_size, batch_size=args.batch_size,
            num_readers=args.num_readers, store_root=root,
        )  # fmt: skip
        w, c = time.perf_counter(), time.process_time()
        job = engine.open_job(slide_path, args.model, options)
        timers.add("start: model, slide, grid, store", time.perf_counter() - w,
                   time.process_time() - c)  # fmt: skip
        model = job.model
        model.embed_images = timers.wrap(MODEL, model.embed_images)
        w, c = time.perf_counter(), time.process_time()
        grouped = (
            {"write_every_s": engine.WRITE_EVERY_S} if hasattr(engine, "WRITE_EVERY_S") else {}
        )
        summary = engine.embed_slide(job.slide, model, job.grid, job.store, options, **grouped)
        run_wall, run_cpu = time.perf_counter() - w, time.process_time() - c
        del model.embed_images
        job.store.close()
    undo()
    total_wall = time.perf_counter() - _T0[0]
    total_cpu = time.process_time() - _T0[1]
    main_parts = [k for k in timers.wall if k.startswith("main: ")]
    main_wall = sum(timers.wall[k] for k in main_parts if k != "main: store status")
    main_cpu = sum(timers.cpu[k] for k in main_parts if k != "main: store status")
    plan = "main: tissue scan (plan)"
    rows = {k: (timers.wall[k], timers.cpu[k], timers.calls[k]) for k in timers.wall}
    # status writes happen inside write_embeddings too: shown, not added twice
    rows["main: rest (waiting for the model's batches, events, checks)"] = (
        run_wall - main_wall, None, 0)  # fmt: skip
    reader_cpu = timers.cpu["reader: read + decode a tile"]
    main_run_cpu = main_cpu  # thread CPU of the main thread's timed parts
    rows["other threads (torch's own, zarr I/O, scan readers)"] = (
        None, run_cpu - main_run_cpu - reader_cpu - timers.cpu[MODEL], 0)  # fmt: skip
    return {
        "tiles": summary.computed,
        "run_wall_s": run_wall,
        "run_cpu_s": run_cpu,
        "tile_phase_wall_s": run_wall - timers.wall[plan],
        "total_wall_s": total_wall,
        "total_cpu_s": total_cpu,
        "rows": rows,
    }


def print_stages(result: dict) -> None:
    n = result["tiles"]
    print(f"# {n} tiles; run {result['run_wall_s']:.2f} s wall, {result['run_cpu_s']:.2f} s CPU "
          f"({n / result['run_wall_s']:.0f} tiles/s); tile phase "
          f"{n / result['tile_phase_wall_s']:.0f} tiles/s; process so far "
          f"{result['total_wall_s']:.2f} s wall, {result['total_cpu_s']:.2f} s CPU")  # fmt: skip
    print(f"{'part':56} {'wall s':>8} {'CPU s':>8} {'CPU ms/tile':>12} {'calls':>7}")
    for name, (wall, cpu, calls) in sorted(result["rows"].items()):
        ws = "" if wall is None else f"{wall:8.2f}"
        cs = "" if cpu is None else f"{cpu:8.2f}"
        per = "" if cpu is None else f"{1e3 * cpu / n:12.3f}"
        print(f"{name:56} {ws:>8} {cs:>8} {per:>12} {calls:7d}")


def cprofile(slide_path: Path, args: argparse.Namespace, top: int = 30) -> None:
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    result = stages(slide_path, args)
    profile.disable()
    print_stages(result)
    stats = pstats.Stats(profile).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)


def pyspy(slide_path: Path, args: argparse.Namespace, out: Path) -> None:
    """``py-spy record`` of the real command (all threads); summary by leaf function."""
    from bench.throughput import embed_command

    with tempfile.TemporaryDirectory(prefix="bench-pyspy-") as root:
        cmd = ["py-spy", "record", "--format", "speedscope", "--output", str(out),
               "--rate", "200", "--threads", "--subprocesses", "--",
               sys.executable, "-m", "napari_conch",
               *embed_command(slide_path, Path(root) / "stores", args)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    summarise_speedscope(out)


def summarise_speedscope(path: Path, top: int = 25) -> None:
    """Samples per thread and the most frequent leaf and 'our' frames."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    leaves: collections.Counter = collections.Counter()
    ours: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    total = 0
    for profile in data["profiles"]:
        name = profile["name"]
        for sample, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            threads[name] += weight
            if sample:
                f = frames[sample[-1]]
                leaves[f"{f['name']} ({Path(f.get('file', '?')).name})"] += weight
                for index in reversed(sample):
                    f = frames[index]
                    if "napari_conch" in f.get("file", ""):
                        ours[f"{f['name']} ({Path(f['file']).name}:{f.get('line', '')})"] += weight
                        break
    print(f"# {total} samples")
    for title, counter in (("threads", threads), ("leaf functions", leaves),
                           ("innermost napari_conch frame", ours)):  # fmt: skip
        print(f"\n## {title}")
        for key, weight in counter.most_common(top):
            print(f"{100 * weight / total:6.1f} %  {key}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--way", choices=("stages", "cprofile", "pyspy"), default="stages")
    p.add_argument("--size", type=int, default=20480)
    p.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "NAPARI_CONCH_BENCH_CACHE", REPO / ".bench")))  # fmt: skip
    p.add_argument("--model", default="demo")
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-readers", type=int, default=2)
    p.add_argument("--output", type=Path, help="py-spy: the speedscope file")
    args = p.parse_args(argv)
    sys.path[:0] = [str(SRC), str(REPO)]
    from bench.throughput import bench_slide

    slide_path = bench_slide(args.cache, args.size)
    print(f"# load {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    if args.way == "stages":
        print_stages(stages(slide_path, args))
    elif args.way == "cprofile":
        cprofile(slide_path, args)
    else:
        pyspy(slide_path, args, args.output or args.cache / "embed.speedscope.json")
    print(f"# load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
