"""Pipeline throughput: ``embed`` against the shared-core limit of model + decode, in one run.

Three parts are measured in interleaved rounds (the machine may be shared: each round times all
three, so a change of load touches them alike):

- **model**: the model alone on random uint8 batches (``LoadedModel.embed_images``), tiles/s and
  CPU ms per tile (the process's CPU time: all of torch's threads), in three child processes:
  one batch at a time on torch's threads with OpenMP's default spinning waits and with passive
  waits (``OMP_WAIT_POLICY``, which ``napari-conch embed`` sets), and as many batches at once as
  torch has threads, one thread each (as ``embed`` runs it on the CPU,
  ``engine/model_workers.py``); the limit takes the one with the least CPU per tile;
- **decode**: tile reading and JPEG decoding alone, through the project's slide reader
  (``TileGrid.read_tile`` on a freshly opened slide: tifffile's chunks, the chunk cache), the
  slide's tissue tiles in embedding order split between ``--num-readers`` threads;
- **embed**: the real command, ``napari-conch embed SLIDE --model demo --level 0 --tile-size 128
  --batch-size 32 --num-readers 2`` into a fresh store, from process start to exit, and its
  steady state (tissue scan + tiles + store, timed inside the child by wrapping
  ``embed_slide_iter``); also its CPU time per tile and peak RSS.

The shared-core limit is ``cores / (model CPU ms + decode CPU ms per tile)``: what the cores
could do if they did nothing but run the model and decode tiles. The wall-clock form,
``1 / (1 / model tiles/s + 1 / decode tiles/s)``, is printed too (it carries the load of the
moment the way ``embed`` does), and ``cpu_efficiency``: (model + decode CPU ms per tile) / embed's
CPU ms per tile, the share of embed's CPU time that did the two. See ``docs/benchmarks.md``::

    python bench/throughput.py                      # 3 rounds on the 20k x 20k slide
    python bench/throughput.py --rounds 2 --cache /tmp/bench
    python bench/throughput.py --profile cprofile   # one in-process embed under cProfile

The slide is a 20,480 x 20,480 JPEG pyramid (256 px tiles, quality 90, levels 1/4/16 as
SubIFDs, 0.5 um/px) of H&E-like tissue: real H&E (the fixture images, as in ``bench_embed.py``)
inside smooth seeded blobs, glass around them, about a third of the 128 px tiles tissue
(8,500 of 25,600). It is written once into ``--cache`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
#: Fraction of the slide's area that is tissue (chosen so that ~8,500 of 25,600 tiles are).
TISSUE_SHARE = 0.35
#: Seed of the tissue blobs.
SEED = 23
GLASS = (242, 240, 244)


# ---------------------------------------------------------------------------------- the slide
def _waves(count: int, lengths: tuple[float, float]):
    import numpy as np

    rng = np.random.default_rng(SEED)
    angle = rng.uniform(0, np.pi, count)
    k = 2 * np.pi / rng.uniform(*lengths, count)
    return np.stack([k * np.sin(angle), k * np.cos(angle), rng.uniform(0, 2 * np.pi, count)], 1)


def tissue_field(y, x, size: int):
    """Smooth tissue level at level-0 positions ``y [h, 1]``, ``x [1, w]`` (higher: tissue)."""
    import numpy as np

    out = np.zeros((y.shape[0], x.shape[1]))
    for ky, kx, phase in _waves(7, (3_000.0, 9_000.0)):
        a, b = ky * y + phase, kx * x
        out += np.cos(a) * np.cos(b) - np.sin(a) * np.sin(b)  # cos(a + b), separably
    ey, ex = (y - size / 2) / (0.5 * size), (x - size / 2) / (0.5 * size)
    return out / 7 + 0.6 * (1.0 - (ey**2 + ex**2))


def tissue_threshold(size: int) -> float:
    """The field value above which :data:`TISSUE_SHARE` of the slide is tissue."""
    import numpy as np

    pos = (np.arange(512) + 0.5) * size / 512
    return float(np.quantile(tissue_field(pos[:, None], pos[None, :], size), 1 - TISSUE_SHARE))


def render(period_at, y0: int, x0: int, n: int, factor: int, size: int, threshold: float):
    """``n x n`` pixels of the level with downsample ``factor`` from level pixel ``(y0, x0)``."""
    import numpy as np
    from bench.bench_embed import periodic_region

    y = (y0 + np.arange(n)[:, None] + 0.5) * factor
    x = (x0 + np.arange(n)[None, :] + 0.5) * factor
    alpha = np.clip((tissue_field(y, x, size) - threshold) * 40.0, 0.0, 1.0)[..., None]
    he = periodic_region(period_at(factor), y0, y0 + n, x0, x0 + n).astype(np.float32)
    rgb = np.asarray(GLASS, np.float32) + (he - np.asarray(GLASS, np.float32)) * alpha
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_slide(path: Path, size: int, tile: int = 256) -> None:
    """Write the ``size`` x ``size`` JPEG pyramid, tile by tile (atomically)."""
    import numpy as np
    import tifffile
    from bench.bench_embed import downsample, mosaic_period

    base = mosaic_period()
    periods: dict[int, np.ndarray] = {}

    def period_at(factor: int) -> np.ndarray:
        if factor not in periods:
            periods[factor] = downsample(base, factor)
        return periods[factor]

    threshold = tissue_threshold(size)
    factors = [f for f in (1, 4, 16, 64) if size // f >= 1024]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.tif")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for i, f in enumerate(factors):
            n = size // f

            def tiles(f=f, n=n):
                for y in range(0, n, tile):
                    for x in range(0, n, tile):
                        yield render(period_at, y, x, tile, f, size, threshold)

            tif.write(
                tiles(), shape=(n, n, 3), dtype=np.uint8, tile=(tile, tile),
                photometric="rgb", compression="jpeg", compressionargs={"level": 90},
                subifds=len(factors) - 1 if i == 0 else None, subfiletype=0 if i == 0 else 1,
                resolution=(1e4 / 0.5 / f, 1e4 / 0.5 / f), resolutionunit="CENTIMETER",
            )  # fmt: skip
    tmp.replace(path)


def bench_slide(cache: Path, size: int) -> Path:
    """The benchmark slide in ``cache`` (written on first use)."""
    path = cache / f"tissue_{size}.tif"
    if not path.exists():
        start = time.perf_counter()
        write_slide(path, size)
        print(f"# wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
    return path


# ---------------------------------------------------------------------------------- the parts
def tissue_tiles(slide_path: Path, tile_size: int):
    """``(rows, cols)`` of the slide's tissue tiles in embedding order (as ``embed`` finds them)."""
    from napari_conch.engine.options import DEFAULTS
    from napari_conch.engine.tiles import tile_order
    from napari_conch.slide import make_grid, open_slide, tissue_mask

    slide = open_slide(slide_path)
    grid = make_grid(slide, level=0, tile_size=tile_size)
    mask, _ = tissue_mask(slide, grid, min_tissue=DEFAULTS.min_tissue)
    slide.close()
    return tile_order(mask, grid), grid.shape


def time_model_child(policy: str, args: argparse.Namespace, workers: bool = False) -> dict:
    """:func:`time_model` in a child process whose OpenMP threads wait as ``policy`` says
    (``ACTIVE``: OpenMP's default spinning; ``PASSIVE``: as ``napari-conch embed`` sets it);
    ``workers``: as many batches at once as torch has threads, one thread each."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(REPO)]),
           "OMP_WAIT_POLICY": policy}  # fmt: skip
    cmd = [sys.executable, __file__, "--model-child", "--model", args.model,
           "--model-tiles", str(args.model_tiles), "--batch-size", str(args.batch_size),
           "--tile-size", str(args.tile_size)] + (["--workers"] if workers else [])  # fmt: skip
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_model(model, tiles: int, batch_size: int, tile_size: int, workers: int = 1) -> dict:
    """The model alone on random uint8 batches: tiles/s and CPU ms per tile.

    ``workers`` > 1: that many batches at once, one torch thread each, as ``embed`` runs the
    model on the CPU (``engine/model_workers.py``).
    """
    import numpy as np

    from napari_conch.engine.model_workers import in_workers

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (batch_size, tile_size, tile_size, 3), dtype=np.uint8)
    n = max(1, tiles // batch_size)
    list(in_workers(model.embed_images, [batch] * workers, workers))  # warm-up, every thread
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in in_workers(model.embed_images, (batch for _ in range(n)), workers):
        pass
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return _rates(n * batch_size, wall, cpu)


def time_decode(slide_path: Path, rows, cols, tile_size: int, workers: int) -> dict:
    """Reading + decoding the tiles alone: a fresh slide, ``workers`` threads, each a share."""
    from concurrent.futures import ThreadPoolExecutor

    from napari_conch.slide import make_grid, open_slide

    slide = open_slide(slide_path)  # a cold chunk cache, as a run starts with
    grid = make_grid(slide, level=0, tile_size=tile_size)
    bounds = [len(rows) * i // workers for i in range(workers + 1)]

    def share(i: int) -> int:
        part = slice(bounds[i], bounds[i + 1])
        for r, c in zip(rows[part], cols[part], strict=True):
            grid.read_tile(slide, int(r), int(c))
        return bounds[i + 1] - bounds[i]

    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        done = sum(pool.map(share, range(workers)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    slide.close()
    return _rates(done, wall, cpu)


def _rates(tiles: int, wall: float, cpu: float) -> dict:
    return {
        "tiles": tiles, "wall_s": round(wall, 3), "tiles_per_s": round(tiles / wall, 1),
        "cpu_ms_per_tile": round(1e3 * cpu / tiles, 4),
    }  # fmt: skip


def embed_command(slide_path: Path, store: Path, args: argparse.Namespace) -> list[str]:
    """The ``napari-conch embed`` arguments of a run."""
    return [
        "embed", str(slide_path), "--model", args.model, "--level", "0",
        "--tile-size", str(args.tile_size), "--batch-size", str(args.batch_size),
        "--num-readers", str(args.num_readers), "--store", str(store), "--quiet",
    ]  # fmt: skip


def time_embed(slide_path: Path, args: argparse.Namespace, tissue: int) -> dict:
    """Run ``napari-conch embed`` in a child (fresh store); its wall, steady state, CPU, RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as root:
        trace = Path(root) / "trace.json"
        cmd = [sys.executable, __file__, "--embed-child", str(trace), "--",
               *embed_command(slide_path, Path(root) / "stores", args)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(REPO)])}
        start = time.time()
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        end = time.time()
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"embed exited with {child.returncode}: {' '.join(cmd)}")
        t = json.loads(trace.read_text())
    computed = t["computed"]
    steady = t["end"] - t["run"]  # tissue scan + tiles + store, as the issue's steady state
    tiles_s = t["end"] - t["first_batch"]
    return {
        "tiles": computed,
        "tissue_tiles": tissue,
        "process_s": round(end - start, 3),
        "tiles_per_s": round(computed / (end - start), 1),
        "startup_s": round(t["run"] - start, 3),
        "scan_s": round(t["first_batch"] - t["run"], 3),
        "steady_s": round(steady, 3),
        "steady_tiles_per_s": round(computed / steady, 1),
        "tile_phase_tiles_per_s": round(computed / tiles_s, 1),
        "exit_s": round(end - t["end"], 3),
        "cpu_ms_per_tile": round(1e3 * (usage.ru_utime + usage.ru_stime) / computed, 4),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def embed_child(trace: Path, argv: list[str]) -> int:
    """Run the CLI with ``argv``, recording when the run starts, its first batch, its end."""
    import napari_conch.engine.embed as engine
    from napari_conch.cli import main
    from napari_conch.engine.progress import EMBED

    times: dict = {"computed": 0}
    real = engine.embed_slide_iter

    def traced(*a, **k):
        times["run"] = time.time()
        summary = None
        events = real(*a, **k)
        try:
            while True:
                event = next(events)
                if event.phase == EMBED and "first_batch" not in times:
                    times["first_batch"] = time.time()
                yield event
        except StopIteration as stop:
            summary = stop.value
        times["end"] = time.time()
        times["computed"] = summary.computed
        return summary

    engine.embed_slide_iter = traced
    status = main(argv)
    trace.write_text(json.dumps(times))
    return status


# ---------------------------------------------------------------------------------- the run
def load(model_name: str):
    sys.path[:0] = [str(SRC)]
    from napari_conch.model import load_model

    return load_model(model_name, device="cpu")


def limit(model: dict, decode: dict, cores: int) -> tuple[float, float]:
    """``(CPU-time limit, wall-clock limit)`` in tiles/s."""
    cpu = cores / ((model["cpu_ms_per_tile"] + decode["cpu_ms_per_tile"]) / 1e3)
    wall = 1.0 / (1.0 / model["tiles_per_s"] + 1.0 / decode["tiles_per_s"])
    return cpu, wall


def uptime() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    import platform

    import torch

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", "x86_64"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    have = " ".join(f for f in wanted if f in flags) or "?"
    return (f"{name}, {len(os.sched_getaffinity(0))} cores ({have}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=20480, help="side of the slide (level-0 px)")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "NAPARI_CONCH_BENCH_CACHE", REPO / ".bench")), help="folder of the slide")  # fmt: skip
    p.add_argument("--model", default="demo")
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-readers", type=int, default=2)
    p.add_argument("--model-tiles", type=int, default=2048, help="tiles of the model-alone part")
    p.add_argument("--parts", default="model,decode,embed")
    p.add_argument("--json", type=Path, help="also write every round's figures here")
    p.add_argument("--embed-child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--model-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", action="store_true", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.embed_child:
        return embed_child(args.embed_child, [a for a in rest if a != "--"])
    if args.model_child:
        from napari_conch.engine.model_workers import compute_workers

        model = load(args.model)
        workers = compute_workers(model) if args.workers else 1
        result = time_model(model, args.model_tiles, args.batch_size, args.tile_size, workers)
        print(json.dumps({**result, "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                          "workers": workers}))  # fmt: skip
        return 0
    sys.path[:0] = [str(SRC), str(REPO)]
    cores = len(os.sched_getaffinity(0))
    slide_path = bench_slide(args.cache, args.size)
    (rows, cols), shape = tissue_tiles(slide_path, args.tile_size)
    print(f"# {machine()}")
    print(f"# {slide_path.name}: grid {shape[0]} x {shape[1]}, {len(rows)} tissue tiles of "
          f"{args.tile_size} px; model {args.model}, batch {args.batch_size}, "
          f"{args.num_readers} readers", flush=True)  # fmt: skip
    parts = args.parts.split(",")
    rounds = []
    for i in range(args.rounds):
        load_before = uptime()
        result = {"round": i + 1, "load_before": load_before}
        order = parts[i % len(parts) :] + parts[: i % len(parts)]  # rotate: no part always first
        for part in order:
            if part == "model":  # one batch: spinning waits, passive ones; batches at once
                spin = time_model_child("ACTIVE", args)
                passive = time_model_child("PASSIVE", args)
                workers = time_model_child("PASSIVE", args, workers=True)
                result["model_spin"], result["model_passive"] = spin, passive
                result["model_workers"] = workers
                # the limit takes the model at its best (the lower CPU time per tile)
                result["model"] = min(spin, passive, workers, key=lambda r: r["cpu_ms_per_tile"])
            elif part == "decode":
                result["decode"] = time_decode(slide_path, rows, cols, args.tile_size,
                                               args.num_readers)  # fmt: skip
            elif part == "embed":
                result["embed"] = time_embed(slide_path, args, len(rows))
        result["load_after"] = uptime()
        if "model" in result and "decode" in result:
            cpu, wall = limit(result["model"], result["decode"], cores)
            result["limit_cpu"], result["limit_wall"] = round(cpu, 1), round(wall, 1)
            if "embed" in result:
                e = result["embed"]
                for key in ("tiles_per_s", "steady_tiles_per_s"):
                    result[f"ratio_{key}"] = round(e[key] / cpu, 3)
                    result[f"ratio_wall_{key}"] = round(e[key] / wall, 3)
                # the share of embed's CPU time that went to the model and the decoding
                useful = result["model"]["cpu_ms_per_tile"] + result["decode"]["cpu_ms_per_tile"]
                result["cpu_efficiency"] = round(useful / e["cpu_ms_per_tile"], 3)
        rounds.append(result)
        print(json.dumps(result), flush=True)
    _summary(rounds, cores)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rounds": rounds}, indent=1))
    return 0


def _summary(rounds: list[dict], cores: int) -> None:
    """The medians over the rounds, as one table."""

    def med(path: str) -> float | None:
        values = []
        for r in rounds:
            v = r
            for key in path.split("."):
                v = v.get(key) if isinstance(v, dict) else None
            if v is not None:
                values.append(v)
        return statistics.median(values) if values else None

    print(f"\n# medians of {len(rounds)} rounds ({cores} cores); load "
          f"{rounds[0]['load_before']} .. {rounds[-1]['load_after']}")  # fmt: skip
    lines = [
        ("model alone, spinning waits", "model_spin.tiles_per_s", "model_spin.cpu_ms_per_tile"),
        (
            "model alone, passive waits",
            "model_passive.tiles_per_s",
            "model_passive.cpu_ms_per_tile",
        ),
        (
            "model alone, batches at once",
            "model_workers.tiles_per_s",
            "model_workers.cpu_ms_per_tile",
        ),
        ("model alone (the best)", "model.tiles_per_s", "model.cpu_ms_per_tile"),
        ("decode alone", "decode.tiles_per_s", "decode.cpu_ms_per_tile"),
        ("shared-core limit (CPU)", "limit_cpu", None),
        ("shared-core limit (wall)", "limit_wall", None),
        ("embed, process start to exit", "embed.tiles_per_s", "embed.cpu_ms_per_tile"),
        ("embed, steady state", "embed.steady_tiles_per_s", None),
        ("embed, tile phase", "embed.tile_phase_tiles_per_s", None),
    ]
    print(f"{'part':32} {'tiles/s':>9} {'CPU ms/tile':>12}")
    for name, rate, cpu in lines:
        r, c = med(rate), med(cpu) if cpu else None
        if r is not None:
            print(f"{name:32} {r:9.1f} {'' if c is None else f'{c:12.3f}'}")
    for key in ("ratio_tiles_per_s", "ratio_steady_tiles_per_s", "ratio_wall_tiles_per_s",
                "ratio_wall_steady_tiles_per_s", "cpu_efficiency"):  # fmt: skip
        v = med(key)
        if v is not None:
            print(f"{key:32} {v:9.3f}")
    for key in ("startup_s", "scan_s", "exit_s", "peak_rss_mib"):
        v = med(f"embed.{key}")
        if v is not None:
            print(f"embed {key:26} {v:9.2f}")


if __name__ == "__main__":
    sys.exit(main())
