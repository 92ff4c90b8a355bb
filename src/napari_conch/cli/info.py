"""``napari-conch info``: the installation, the device, and what the weights/tokenizer search finds.

With a PATH it describes that slide or embedding store instead.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path

from napari_conch import __version__
from napari_conch.errors import NapariConchError

#: What ``info`` says when no CONCH weights are configured.
DEMO_AVAILABLE = (
    "demo model: available without CONCH's weights (--model demo; a small model trained here, "
    "not CONCH, not for diagnosis); `napari-conch view` uses it when no weights are configured"
)


#: What ``info`` says of the open models (``napari-conch models`` lists them).
OPEN_MODELS = (
    "open models without CONCH's gate: KEEP (hf_hub:Astaxanthin/KEEP), QuiltNet-B-32, "
    "QuiltNet-B-16 (hf_hub:wisdomik/...), PLIP (hf_hub:vinid/plip), BiomedCLIP; see "
    "napari-conch models"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="show the installation, device, weights and tokenizer; or describe a slide/store",
        description=(
            "Without PATH: versions, the device napari-conch would use, and where it looks for "
            "CONCH's weights and tokenizer (and what it found), or that the demo model is there "
            "when no weights are configured. With PATH: what a slide or an embedding store holds."
        ),
    )
    parser.add_argument("path", nargs="?", help="a slide or an embedding store to describe")
    parser.add_argument(
        "--model", help="a model source to look for: a checkpoint, hf_hub:REPO or demo "
        "(default: $NAPARI_CONCH_MODEL)",
    )  # fmt: skip
    parser.add_argument("--tokenizer", help="a tokenizer JSON to check")
    parser.add_argument(
        "--slide-mpp", type=float, metavar="X", help="level-0 microns/px of a slide without one"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report."""
    if args.path:
        print(describe_path(Path(args.path), slide_mpp=args.slide_mpp))
        return 0
    for line in environment_report(args.model, args.tokenizer):
        print(line)
    return 0


def environment_report(model: str | None = None, tokenizer: str | None = None) -> list[str]:
    """Lines describing versions, device, and the weights/tokenizer search."""
    import torch

    from napari_conch.model.device import default_device
    from napari_conch.model.tokenizer import find_tokenizer

    lines = [
        f"napari-conch {__version__} (Python {sys.version.split()[0]})",
        f"torch {torch.__version__}; device: {default_device()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""),
    ]
    for package in ("napari", "zarr", "dask", "tifffile", "tokenizers", "huggingface_hub"):
        try:
            lines.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{package}: not installed")
    model = model or os.environ.get("NAPARI_CONCH_MODEL")
    lines.append(precision_line(model))
    lines.append(int8_line())
    bundled_tokenizer = None
    if model:
        line, bundled_tokenizer = weights_line(model)
        lines.append(line)
    else:
        lines.append(
            "weights: none configured (pass --model PATH or hf_hub:MahmoodLab/conch, "
            "or set NAPARI_CONCH_MODEL)"
        )
        lines.append(DEMO_AVAILABLE)
        lines.append(OPEN_MODELS)
    if tokenizer is None and bundled_tokenizer is not None:
        lines.append(f"tokenizer: {bundled_tokenizer} (comes with the model)")
        return lines
    try:
        lines.append(f"tokenizer: {find_tokenizer(tokenizer, checkpoint=model)}")
    except NapariConchError as exc:
        lines.append(f"tokenizer: not found: {exc}")
    return lines


def precision_line(model: str | None) -> str:
    """What ``--precision auto`` picks here and why.

    On a CPU with native bf16 that depends on the model's parity gate: with a model, it is
    loaded (the gate runs once per model and is cached); without one, the line says so.
    """
    import warnings

    from napari_conch.model.device import auto_choice, default_device
    from napari_conch.model.formats import PrecisionWarning, cpu_name

    device = default_device()
    choice, reason, needs_gate = auto_choice(device)
    where = f" on {cpu_name()}" if device.type == "cpu" else ""
    if not needs_gate:
        return f"precision (auto){where}: {choice}: {reason}"
    if not model:
        return (
            f"precision (auto){where}: {choice} where the model passes the parity gate "
            f"({reason}); give --model to gate one"
        )
    from napari_conch.model import load_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrecisionWarning)  # the line below says it
            loaded = load_model(model, device=device)
    except NapariConchError as exc:
        return f"precision (auto){where}: not decided ({reason}; the model did not load: {exc})"
    return f"precision (auto){where}: {loaded.precision_note or loaded.precision}"


def int8_line() -> str:
    """Whether ``--precision int8`` can run (ONNX Runtime and onnx installed)."""
    import importlib.util

    from napari_conch.model.formats import INT8_EXTRA

    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"precision int8: not available ({', '.join(missing)} not installed; "
            f"pip install 'napari-conch[{INT8_EXTRA}]')"
        )
    return f"precision int8: available (onnxruntime {importlib.metadata.version('onnxruntime')})"


def weights_line(model: str) -> tuple[str, str | None]:
    """The ``weights:`` line for a model source, and its own tokenizer when it brings one."""
    from napari_conch.model.clip_sources import is_clip_source, known_model, uses_wordpiece
    from napari_conch.model.sources import HUB, PATH, resolve_source, source_info

    if is_clip_source(model):
        card = known_model(model)
        what = f"{card.name}, {card.licence}" if card is not None else "a CLIP model"
        if uses_wordpiece(model):
            return f"weights: {model} ({what}; timm ViT + BERT)", "BERT WordPiece (vocab.txt)"
        return f"weights: {model} ({what}; CLIP)", "CLIP BPE"
    info = source_info(model)
    if info.kind == HUB:
        return f"weights: {model} (Hugging Face Hub; downloaded on first use)", None
    if info.kind == PATH:
        return f"weights: {model} ({'found' if Path(model).exists() else 'NOT FOUND'})", None
    label = f"{info.display_name}, not CONCH" if info.is_demo else info.display_name
    try:
        resolved = resolve_source(model)
    except NapariConchError as exc:
        return f"weights: {model} ({label}): NOT FOUND: {exc}", None
    tokenizer = str(resolved.tokenizer) if resolved.tokenizer is not None else None
    return f"weights: {model} ({label}; {resolved.weights})", tokenizer


def describe_path(path: Path, slide_mpp: float | None = None) -> str:
    """What a slide or an embedding store holds (``slide_mpp``: a slide's stated MPP)."""
    if not path.exists():
        raise NapariConchError(f"{str(path)!r} does not exist")
    if path.is_dir() and (path / "zarr.json").is_file():
        from napari_conch.engine.store.embedding_store import EmbeddingStore, check_metadata

        if _is_store(path) or (path / "embeddings").is_dir():
            check_metadata(path)  # a damaged zarr.json is said plainly, not "not a zarr group"
            return describe_store(EmbeddingStore.open(path))
    from napari_conch.slide import open_slide

    return describe_slide(open_slide(path, mpp=slide_mpp))


def _is_store(path: Path) -> bool:
    import json

    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return "signature" in attrs


def describe_slide(slide) -> str:
    """Levels, size, microns per pixel and fingerprint of a slide."""
    mpp = (
        f"{slide.mpp:g} um/px ({'stated' if slide.mpp_source == 'caller' else slide.mpp_source})"
        if slide.mpp
        else "unknown (give it with --slide-mpp)"
    )
    lines = [
        f"slide: {slide.name} ({slide.path})",
        f"reader: {slide.reader}",
        f"size: {slide.shape[1]} x {slide.shape[0]} px (width x height) at level 0",
        f"microns per pixel: {mpp}",
        f"fingerprint: {slide.fingerprint}",
        f"levels: {len(slide.levels)}",
    ]
    for level, downsample in enumerate(slide.downsamples):
        h, w = slide.level_shape(level)
        lines.append(f"  level {level}: {w} x {h} px, downsample {downsample:g}")
    return "\n".join(lines)


def describe_store(store) -> str:
    """What an embedding store was made from and how far it got."""
    attrs, grid = store.attrs, store.grid
    counts = store.counts()
    total = grid.rows * grid.cols
    lines = [
        f"embedding store: {store.path}",
        f"slide: {attrs.get('slide_name')} ({attrs.get('slide_path')})",
        f"model: {attrs.get('model_source')} "
        f"(fingerprint {store.signature.get('model_fingerprint')})",
        f"grid: {grid.rows} x {grid.cols} tiles of {grid.tile_size} px, stride {grid.stride}, "
        f"level {grid.level}",
        f"embeddings: {store.embed_dim}-d",
        "tiles: " + ", ".join(f"{n} {name}" for name, n in counts.items()) + f" (of {total})",
        f"made by napari-conch {attrs.get('version')}",
    ]
    return "\n".join(lines)
