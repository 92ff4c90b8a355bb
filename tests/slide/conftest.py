"""Slide-test helpers: small crops of the real images, written as pyramids in tmp folders."""

from __future__ import annotations

import json
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
import zarr


def _image(svs_path: Path, name: str) -> Path:
    """A real image next to the shared SVS (the fixtures' images folder), or skip."""
    path = svs_path.parent / name
    if not path.exists():
        pytest.skip(f"fixture image {name!r} not found in {svs_path.parent}")
    return path


@pytest.fixture(scope="session")
def nest_jpg(svs_path) -> Path:
    return _image(svs_path, "hgsc_nest.jpg")


@pytest.fixture(scope="session")
def ihc_path(svs_path) -> Path:
    return _image(svs_path, "ihc.png")


@pytest.fixture(scope="session")
def nest(nest_jpg) -> np.ndarray:
    """A 600 x 500 (H x W) RGB crop of the real H&E image (not square, to catch transposes)."""
    image = imagecodecs.imread(nest_jpg)
    return np.ascontiguousarray(image[300:900, 200:700])


def pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Level k is ``image[::2**k, ::2**k]`` (exact factors are not needed by the reader)."""
    return [np.ascontiguousarray(image[:: 2**k, :: 2**k]) for k in range(levels)]


def write_tiff_pyramid(
    path: Path,
    image: np.ndarray,
    *,
    levels: int = 3,
    subifds: bool = True,
    compression: str | None = "zlib",
    tile: tuple[int, int] = (128, 128),
    **level0_kwargs,
) -> list[np.ndarray]:
    """Write a tiled pyramid (as SubIFDs or reduced pages); return the level arrays."""
    arrays = pyramid(image, levels)
    photometric = "rgb" if image.ndim == 3 and image.shape[-1] in (3, 4) else "minisblack"
    extra = {"extrasamples": ["unassalpha"]} if image.ndim == 3 and image.shape[-1] == 4 else {}
    with tifffile.TiffWriter(path, ome=level0_kwargs.pop("ome", False)) as tw:
        tw.write(
            arrays[0],
            tile=tile,
            compression=compression,
            photometric=photometric,
            subifds=levels - 1 if subifds else None,
            **extra,
            **level0_kwargs,
        )
        for level in arrays[1:]:
            tw.write(
                level,
                tile=tile,
                compression=compression,
                photometric=photometric,
                subfiletype=1,
                **extra,
            )
    return arrays


def write_ome_zarr(
    path: Path,
    image: np.ndarray,
    *,
    levels: int = 3,
    channel_first: bool = True,
    unit: str | None = "micrometer",
    mpp: float = 0.5,
    version: str = "0.5",
) -> list[np.ndarray]:
    """Write an OME-Zarr multiscale (NGFF 0.5 in zarr v3, or 0.4 in zarr v2)."""
    arrays = pyramid(image, levels)
    zarr_format = 3 if version == "0.5" else 2
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    names = ["c", "y", "x"] if channel_first else ["y", "x", "c"]
    axes = [{"name": n, "type": "channel" if n == "c" else "space"} for n in names]
    for axis in axes:
        if axis["type"] == "space" and unit is not None:
            axis["unit"] = unit
    datasets = []
    for k, level in enumerate(arrays):
        data = np.moveaxis(level, -1, 0) if channel_first else level
        chunks = (3, 64, 64) if channel_first else (64, 64, 3)
        group.create_array(str(k), data=data, chunks=chunks)
        scale = [mpp * 2**k] * 2
        scale = [1.0, *scale] if channel_first else [*scale, 1.0]
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    multiscales = [{"version": version, "name": "test", "axes": axes, "datasets": datasets}]
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    else:
        group.attrs["multiscales"] = multiscales
    json.dumps(dict(group.attrs))  # the attributes must stay JSON
    return arrays


@pytest.fixture
def tiff_pyramid():
    """The :func:`write_tiff_pyramid` writer (fixtures are how test modules get helpers)."""
    return write_tiff_pyramid


@pytest.fixture
def ome_zarr():
    """The :func:`write_ome_zarr` writer."""
    return write_ome_zarr


@pytest.fixture
def nest_pyramid(tmp_path, nest) -> tuple[Path, list[np.ndarray]]:
    """A 3-level zlib tiled pyramid (SubIFDs) of the H&E crop at 0.25 um/px (cm resolution)."""
    path = tmp_path / "nest_pyramid.tif"
    res = 1e4 / 0.25
    levels = write_tiff_pyramid(path, nest, resolution=(res, res), resolutionunit="CENTIMETER")
    return path, levels
