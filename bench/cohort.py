"""Cohort embedding throughput: here, and on a dask.distributed LocalCluster.

Usage (see ``docs/benchmarks.md`` and ``docs/cohorts.md``)::

    python bench/cohort.py                  # demo model, 6 slides, 2 workers
    python bench/cohort.py --workers 4 --model /path/to/pytorch_model.bin

The cohort is the fixture images in several formats (``$NAPARI_CONCH_FIXTURES/images``): the
Aperio SVS, two H&E JPEGs, the IHC PNG, and two conversions written once under
``.bench/cohort`` (git-ignored): ``hgsc_nest.ome.tif`` (tiled, 256 px, with its pixel size) and
``hgsc_stromal_he.ome.zarr`` (OME-Zarr 0.4 multiscales, one level). Every slide is embedded from
scratch (a fresh store folder per run) at 0.5 um/px, in tiles of ``--tile-size`` grid pixels
(default 64, so that the runs last long enough to time on this small cohort), three ways:

- ``local``: one process, one slide after the other (the engine's reader threads and the model);
- ``slides``: a LocalCluster of ``--workers`` processes, whole slides as tasks;
- ``tiles``: the same cluster, one slide after the other, tiles spread over the workers.

The three run in turn, ``--repeat`` rounds (a busy moment of a shared machine then does not
favour one of them); each run reports the 1-minute load average before and after it. Cluster
start-up is not timed; each worker's first model load is, in the first round (it is part of a
real run), and later rounds find the model loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from search import machine  # noqa: E402  (bench/search.py)


def fixtures() -> Path:
    env = os.environ.get("NAPARI_CONCH_FIXTURES")
    return Path(env) if env else REPO.parent / "shared" / "fixtures"


def write_ome_tiff(src: Path, dst: Path, mpp: float = 0.5) -> None:
    """A tiled OME-TIFF of an RGB image, with its physical pixel size."""
    import tifffile

    from napari_conch.slide import open_slide

    image = np.asarray(open_slide(src).levels[0])
    tmp = dst.with_suffix(".partial")
    tifffile.imwrite(
        tmp, image, ome=True, tile=(256, 256), photometric="rgb", compression="zlib",
        metadata={"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp,
                  "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"},
    )  # fmt: skip
    os.replace(tmp, dst)


def write_ome_zarr(src: Path, dst: Path, mpp: float = 0.5) -> None:
    """An OME-Zarr (0.4 multiscales, axes y, x, c) of an RGB image, one level."""
    import shutil

    import zarr

    from napari_conch.slide import open_slide

    image = np.asarray(open_slide(src).levels[0])
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w")
    array = group.create_array("0", shape=image.shape, chunks=(256, 256, 3), dtype="uint8")
    array[...] = image
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
                {"name": "c", "type": "channel"},
            ],
            "datasets": [
                {"path": "0", "coordinateTransformations": [
                    {"type": "scale", "scale": [mpp, mpp, 1.0]}]}
            ],
        }
    ]  # fmt: skip
    os.replace(tmp, dst)


def cohort_slides(folder: Path) -> list[Path]:
    """The fixture slides plus their OME-TIFF and OME-Zarr conversions."""
    images = fixtures() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    ome_tiff, ome_zarr = folder / "hgsc_nest.ome.tif", folder / "hgsc_stromal_he.ome.zarr"
    if not ome_tiff.exists():
        write_ome_tiff(images / "hgsc_nest.jpg", ome_tiff)
    if not ome_zarr.exists():
        write_ome_zarr(images / "hgsc_stromal_he.jpg", ome_zarr)
    names = ("cmu_small_region.svs", "hgsc_nest.jpg", "hgsc_stromal_he.jpg", "ihc.png")
    return [images / n for n in names] + [ome_tiff, ome_zarr]


def run(slides, model, options, scheduler=None, mode="auto") -> dict:
    from napari_conch.engine.cohort.cluster import embed_cohort

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cohort-bench-") as root:
        summary = embed_cohort(
            slides, model, options.replace(store_root=root), scheduler=scheduler, mode=mode
        )
    return {
        "mode": summary.mode,
        "workers": summary.workers,
        "slides": len(summary.summaries),
        "tiles": summary.tiles,
        "seconds": round(summary.elapsed_s, 2),
        "slides_per_min": round(summary.slides_per_minute, 1),
        "tiles_per_s": round(summary.tiles_per_s, 1),
        "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],  # before, after
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mpp", type=float, default=0.5, help="grid resolution, um/px")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--tile-size", type=int, default=64, help="grid pixels (64: four times the tiles of 128)"
    )
    parser.add_argument("--folder", default=str(REPO / ".bench" / "cohort"))
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the three ways")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from napari_conch.engine.options import RunOptions

    slides = cohort_slides(Path(args.folder))
    options = RunOptions(
        mpp=args.mpp,
        slide_mpp=0.5,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        device="cpu",
    )
    results = []
    path = [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(path)  # the workers import this checkout
    with (
        LocalCluster(
            n_workers=args.workers, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        for _ in range(args.repeat):  # alternate, so that a busy moment does not favour one
            results.append(run(slides, args.model, options))
            results.append(run(slides, args.model, options, client, "slides"))
            results.append(run(slides, args.model, options, client, "tiles"))
    report = {
        "machine": machine(),
        "model": args.model,
        "slides": [s.name for s in slides],
        "runs": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
