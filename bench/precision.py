"""Each number format's image-encoder speed and parity-gate figures, for the demo model and
full-size CONCH (ViT-B/16 at 448 px, seeded random weights: CONCH's own weights are gated).

Usage (from the repository root; results in ``docs/benchmarks.md``, Precision)::

    python bench/precision.py                      # demo + CONCH, fp32 / bf16 / int8
    python bench/precision.py --models conch --conch-tiles 16 --json precision.json

Per model and format: tiles/s of the image encoder alone (preprocessed tiles of the held-out
sample, batches of ``--batch``, after a warm-up, best of ``--repeats`` interleaved rounds), the
speed-up over fp32, and the gate's figures (min per-tile cosine to fp32 and label agreement, as
``napari_conch.model.precision_gate`` measures them: the demo model over its whole held-out
sample, CONCH over ``--gate-tiles`` tiles with CONCH's tokenizer when the fixtures have it, else
anchor tiles); then the projected time of a 20,000-tile CONCH slide per format. int8 needs
``pip install 'napari-conch[int8]'`` (skipped without it). The int8 encoders are exported into
a temporary cache folder unless ``$NAPARI_CONCH_CACHE`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

#: Tiles of the slide whose time is projected.
SLIDE_TILES = 20_000


def random_conch():
    """Full-size CONCH with seeded random weights (CONCH's tokenizer from the fixtures if any)."""
    from napari_conch.model.build import build_model
    from napari_conch.model.config import CONCH_VITB16
    from napari_conch.model.loaded import LoadedModel
    from napari_conch.model.preprocess import Preprocess

    fixtures = Path(os.environ.get("NAPARI_CONCH_FIXTURES", "../shared/fixtures"))
    tokenizer = fixtures / "reference" / "conch_byte_level_bpe_uncased.json"
    torch.manual_seed(0)
    return LoadedModel(
        model=build_model(CONCH_VITB16), config=CONCH_VITB16, device=torch.device("cpu"),
        precision="fp32", source="CONCH ViT-B/16 (random weights, seed 0)",
        fingerprint="random-conch-seed0", preprocess=Preprocess(448),
        tokenizer_path=tokenizer if tokenizer.is_file() else fixtures / "no-tokenizer.json",
    )  # fmt: skip


def variant(fp32, precision: str):
    """``fp32`` in another format (int8: its ONNX Runtime encoder, exported when needed)."""
    from napari_conch.model.precision_choice import as_precision

    if precision != "int8":
        return as_precision(fp32, precision)
    from napari_conch.model.int8 import load_int8_encoder

    return as_precision(fp32, "int8", load_int8_encoder(fp32))


def encoder_runner(model, tiles: np.ndarray, batch: int):
    """A function that runs the image encoder once on ``batch`` preprocessed ``tiles`` (warmed
    up) and returns its seconds."""
    x = model.preprocess(tiles[:batch], device=model.device)

    def run(inputs):
        if model.image_engine is not None:
            return model.image_engine(inputs)
        with torch.inference_mode(), model.autocast():
            return model.model.encode_image(inputs)

    run(x[: min(2, batch)])  # warm-up (kernels, allocations)

    def timed() -> float:
        start = time.perf_counter()
        run(x)
        return time.perf_counter() - start

    return timed


def measure(name: str, fp32, formats, args, gate_tiles_n: int | None) -> list[dict]:
    """Speed and gate figures of ``fp32`` in each of ``formats``.

    The formats are timed in interleaved rounds (fp32, bf16, int8, fp32, ...; best of
    ``--repeats`` each), so that a burst of load on a shared machine hits all of them alike.
    """
    from napari_conch.model.precision_gate import gate_tiles, run_gate

    tiles = gate_tiles(fp32.default_tile_size, gate_tiles_n)
    speed_tiles = np.concatenate([tiles] * (args.batch // len(tiles) + 1))[: args.batch]
    models, prepare = {}, {}
    for precision in formats:
        start = time.perf_counter()
        try:
            models[precision] = fp32 if precision == "fp32" else variant(fp32, precision)
        except Exception as exc:  # the int8 extra missing, an export that fails
            print(f"{name} {precision}: skipped ({exc})", file=sys.stderr)
            continue
        prepare[precision] = time.perf_counter() - start
    runners = {p: encoder_runner(m, speed_tiles, args.batch) for p, m in models.items()}
    best = dict.fromkeys(runners, float("inf"))
    for round_ in range(args.repeats):
        for precision, timed in runners.items():
            best[precision] = min(best[precision], timed())
            print(f"  {name} {precision} round {round_ + 1}: {args.batch / best[precision]:.2f}"
                  " tiles/s (best so far)", file=sys.stderr, flush=True)  # fmt: skip
    rows = []
    for precision, model in models.items():
        gate = None if precision == "fp32" else run_gate(fp32, model, precision, tiles=tiles)
        rows.append(
            {
                "model": name,
                "precision": precision,
                "tiles_per_s": args.batch / best[precision],
                "prepare_s": prepare[precision],
                "min_cosine": None if gate is None else gate.min_cosine,
                "label_agreement": None if gate is None else gate.label_agreement,
                "gate_tiles": None if gate is None else gate.tiles,
                "labels": None if gate is None else gate.labels,
                "passed": None if gate is None else gate.passed,
            }
        )
    base = next((r["tiles_per_s"] for r in rows if r["precision"] == "fp32"), None)
    for r in rows:
        r["speedup"] = r["tiles_per_s"] / base if base else None
    return rows


def machine_line() -> str:
    """The CPU, its bf16 flags, threads, torch and the load when the run started."""
    from napari_conch.model.formats import CPU_BF16_FLAGS, cpu_flags, cpu_name

    flags = cpu_flags()
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", *CPU_BF16_FLAGS) if f in flags]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPU cores ({cpu_name()}; flags: {' '.join(have) or 'none'}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load:.1f} at start"
    )


def table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        "| model | precision | encoder tiles/s | speed-up | min cosine | labels agree | gate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gate = "-" if r["passed"] is None else ("pass" if r["passed"] else "FAIL")
        cos = "-" if r["min_cosine"] is None else f"{r['min_cosine']:.5f}"
        agree = (
            "-"
            if r["label_agreement"] is None
            else f"{100 * r['label_agreement']:.1f} % of {r['gate_tiles']}"
            + (" (anchors)" if r["labels"] == "anchor tiles" else "")
        )
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['tiles_per_s']:.2f} | "
            f"{r['speedup']:.2f}x | {cos} | {agree} | {gate} |"
        )
    return "\n".join(lines)


def projection(rows: list[dict]) -> str:
    """Hours for a 20,000-tile CONCH slide per format (the encoder alone)."""
    lines = [f"Projected image-encoder time of a {SLIDE_TILES:,}-tile CONCH slide:"]
    for r in rows:
        if r["model"] == "CONCH":
            hours = SLIDE_TILES / r["tiles_per_s"] / 3600
            lines.append(f"- {r['precision']}: {hours:.1f} h")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="demo,conch", help="demo, conch or both")
    parser.add_argument("--formats", default="fp32,bf16,int8")
    parser.add_argument("--batch", type=int, default=8, help="tiles per encoder call")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gate-tiles", type=int, default=6, help="CONCH's gate tiles")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if "NAPARI_CONCH_CACHE" not in os.environ:
        os.environ["NAPARI_CONCH_CACHE"] = tempfile.mkdtemp(prefix="precision-bench-")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    print(machine_line())
    rows: list[dict] = []
    models = [m.strip() for m in args.models.split(",")]
    if "demo" in models:
        from napari_conch.model import load_model

        demo = load_model("demo", device="cpu", precision="fp32")
        rows += measure("demo", demo, formats, args, None)
    if "conch" in models:
        rows += measure("CONCH", random_conch(), formats, args, args.gate_tiles)
    print(table(rows))
    print(projection(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
