"""The same prompts with several models on one slide: their maps side by side in one figure.

Usage (from the repository root; see ``docs/models.md``)::

    python bench/compare_models.py \\
        --model QuiltNet-B-32=/data/QuiltNet-B-32 --model PLIP=/data/plip \\
        --model CONCH=/data/conch/pytorch_model.bin \\
        --prompt "tumor" --prompt "stroma" --png compare.png

Each ``--model NAME=SOURCE`` is anything ``--model`` takes (a folder laid out as the model's
Hugging Face repository, ``hf_hub:REPO``, a CONCH checkpoint, ``demo``). The slide (default: the
shipped CMU small region) is embedded by each model through the engine (``embed_slide`` into a
store under ``--stores``, resumed when it is there) at the model's own tile size (224 px for
QuiltNet and PLIP, 448 for CONCH) unless ``--tile-size`` is given; the prompts are embedded with
each model's own templates and temperature (``--templates`` to force one set for all). The
figure has one row per model: the slide, then each prompt's probability (one prompt: its
cosine). The per-model class probabilities are printed as a table (mean over tissue tiles).

Needs matplotlib for the figure (``pip install 'napari-conch[bench]'``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_conch.errors import InputError, NapariConchError


@dataclass
class ModelMaps:
    """One model's maps of the prompts over the slide.

    Attributes
    ----------
    name : str
        As given on the command line.
    templates : str
        The template set used.
    tile_size : int
        In slide pixels at the level read.
    maps : numpy.ndarray
        ``[K, rows, cols]`` float32: each prompt's probability (one prompt: its cosine); NaN where
        no tile was embedded.
    """

    name: str
    templates: str
    tile_size: int
    maps: np.ndarray


def parse_model(text: str) -> tuple[str, str]:
    """``NAME=SOURCE`` -> ``(NAME, SOURCE)``."""
    name, sep, source = text.partition("=")
    if not sep or not name.strip() or not source.strip():
        raise InputError(f"--model {text!r}: write NAME=SOURCE (e.g. QuiltNet-B-32=/data/quilt)")
    return name.strip(), source.strip()


def model_maps(
    name: str,
    source: str,
    slide_path: Path,
    prompts: list[str],
    stores: Path,
    *,
    templates: str | None = None,
    tile_size: int | None = None,
    device: str | None = None,
    min_tissue: float = 0.1,
) -> ModelMaps:
    """Embed the slide with one model (resumed when its store exists) and map the prompts."""
    from napari_conch.engine.embed import embed_slide, open_store
    from napari_conch.engine.prompts import chosen_templates, text_queries
    from napari_conch.engine.query import QueryIndex, run_query
    from napari_conch.model import load_model
    from napari_conch.slide import make_grid, open_slide

    model = load_model(source, device=device)
    slide = open_slide(slide_path)
    size = int(tile_size or getattr(model, "default_tile_size", None) or model.image_size)
    grid = make_grid(slide, level=0, tile_size=size)
    store = open_store(slide, model, grid, stores)
    try:
        embed_slide(slide, model, grid, store, min_tissue=min_tissue)
        index = QueryIndex.from_store(store)
        if index.size == 0:
            raise InputError(f"{name}: no tile of {slide_path} was embedded (lower --min-tissue)")
        chosen = chosen_templates(templates, model)
        names, queries = text_queries(model, prompts, chosen)
        result = run_query(index, names, queries, grid, logit_scale=float(model.logit_scale))
    finally:
        store.close()
    maps = result.probs if result.probs is not None else result.cosine
    return ModelMaps(name, chosen, size, np.asarray(maps, dtype=np.float32))


def slide_picture(slide_path: Path, longest: int = 512) -> np.ndarray:
    """The slide's lowest level that fits, as RGB ``[H, W, 3]`` (for the figure's first column)."""
    from napari_conch.slide import open_slide

    slide = open_slide(slide_path)
    level = slide.level_count - 1
    for candidate in range(slide.level_count):
        if max(slide.level_shape(candidate)) <= 4 * longest:
            level = candidate
            break
    height, width = slide.level_shape(level)
    image = slide.read_region(level, 0, 0, width, height)
    step = max(1, max(height, width) // longest)
    return image[::step, ::step]


def write_figure(
    png: Path, picture: np.ndarray, results: list[ModelMaps], prompts: list[str]
) -> Path:
    """One row per model: the slide, then each prompt's map (shared 0..1 colour scale)."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("the figure needs matplotlib: pip install 'napari-conch[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(results), len(prompts) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    single = len(prompts) == 1
    for r, res in enumerate(results):
        axes[r, 0].imshow(picture)
        axes[r, 0].set_ylabel(f"{res.name}\n({res.templates} templates, {res.tile_size} px)")
        for k, prompt in enumerate(prompts):
            ax = axes[r, k + 1]
            shown = ax.imshow(res.maps[k], vmin=None if single else 0.0,
                              vmax=None if single else 1.0, cmap="magma")  # fmt: skip
            if r == 0:
                ax.set_title(f"{prompt!r}" + (" (cosine)" if single else " (probability)"))
            fig.colorbar(shown, ax=ax, fraction=0.046)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> int:
    from napari_conch.samples import CMU_SMALL_REGION

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=SOURCE")
    parser.add_argument("--prompt", action="append", required=True, metavar="TEXT")
    parser.add_argument("--slide", type=Path, default=CMU_SMALL_REGION)
    parser.add_argument("--png", type=Path, required=True, help="the figure to write")
    parser.add_argument("--stores", type=Path, default=Path("compare_stores"), help="store folder")
    parser.add_argument("--templates", choices=("conch", "none", "quiltnet", "plip"),
                        help="one template set for all (default: each model's own)")  # fmt: skip
    parser.add_argument("--tile-size", type=int, help="default: each model's own")
    parser.add_argument("--min-tissue", type=float, default=0.1)
    parser.add_argument("--device", help="torch device (default: auto)")
    args = parser.parse_args(argv)
    try:
        models = [parse_model(m) for m in args.model]
        results = []
        for name, source in models:
            res = model_maps(
                name, source, args.slide, args.prompt, args.stores / name,
                templates=args.templates, tile_size=args.tile_size, device=args.device,
                min_tissue=args.min_tissue,
            )  # fmt: skip
            results.append(res)
            means = ", ".join(
                f"{p} {np.nanmean(m):.3f}" for p, m in zip(args.prompt, res.maps, strict=True)
            )
            print(f"{name} ({res.templates} templates, {res.tile_size} px): mean {means}")
        print(write_figure(args.png, slide_picture(args.slide), results, args.prompt))
    except NapariConchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
