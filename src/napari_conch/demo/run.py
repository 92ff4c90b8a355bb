"""The headless demo: the demo model on a real slide, a prompt, a heatmap TIFF and a PNG overlay."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_conch.demo import DEMO_VIEW_PROMPTS, load_demo_model

#: What the demo looks for unless told otherwise: the H&E concepts of the default sample.
DEFAULT_PROMPTS = DEMO_VIEW_PROMPTS
#: The demo model was trained on tiles of about this many microns per pixel.
DEMO_MPP = 0.5


@dataclass(frozen=True)
class DemoOutputs:
    """Files the demo wrote, and what it did."""

    heatmap_tiff: Path
    overlay_png: Path
    store: Path
    tiles_embedded: int
    names: list[str]


def run_demo(
    out_dir: str | os.PathLike,
    *,
    slide_path: str | os.PathLike | None = None,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    templates: str = "conch",
    device: str | None = None,
    on_progress: Callable | None = None,
    precision: str | None = None,
) -> DemoOutputs:
    """Embed a slide with the demo model and write the map for ``prompts``.

    Parameters
    ----------
    out_dir
        Created if needed; receives ``heatmap.tif``, ``overlay.png`` and the embedding store
        (reused when the demo runs again).
    slide_path
        Default: the held-out H&E sample shipped with the package (parts of the demo model's
        training images it never saw in training; see ``napari_conch.samples.HGSC_HELDOUT``).
    prompts
        One prompt gives a similarity heatmap; several give labels (zero-shot segmentation).
    precision
        The image encoder's number format (``--precision``; default ``auto``).
    """
    import imagecodecs

    from napari_conch.engine.embed import embed_slide, open_store
    from napari_conch.engine.export.writers import atomic_path, export_result
    from napari_conch.engine.prompts import text_queries
    from napari_conch.engine.query import QueryIndex, run_query
    from napari_conch.engine.render import overlay, thumbnail
    from napari_conch.samples import HGSC_HELDOUT
    from napari_conch.slide import make_grid, open_slide

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model = load_demo_model(device=device, precision=precision)
    slide = open_slide(slide_path or HGSC_HELDOUT)
    at_mpp = slide.mpp is not None and slide.mpp < DEMO_MPP * 0.9
    grid = make_grid(
        slide, mpp=DEMO_MPP if at_mpp else None, level=None if at_mpp else 0,
        tile_size=model.default_tile_size,
    )  # fmt: skip
    store = open_store(slide, model, grid, out / "stores")
    summary = embed_slide(slide, model, grid, store, batch_size=64, on_progress=on_progress)
    names, queries = text_queries(model, list(prompts), templates)
    result = run_query(
        QueryIndex.from_store(store), names, queries, grid, logit_scale=model.logit_scale
    )
    tiff = export_result(
        out / "heatmap.tif", result, grid, mpp=slide.mpp,
        metadata={"model": "demo model (not CONCH)", "slide": str(slide.path)},
    )  # fmt: skip
    image, pixel_size = thumbnail(slide)
    several = result.cell_labels is not None and len(names) > 1
    picture = overlay(
        image, pixel_size, result.geometry,
        values=None if several else result.cell_cosine[0],
        labels=result.cell_labels if several else None,
    )  # fmt: skip
    png = out / "overlay.png"
    with atomic_path(png) as tmp:
        tmp.write_bytes(imagecodecs.png_encode(picture))
    return DemoOutputs(tiff, png, store.path, summary.done, names)
