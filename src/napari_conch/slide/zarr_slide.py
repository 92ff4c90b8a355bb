"""Zarr slides: OME-Zarr (NGFF ``multiscales``, v0.4 and v0.5) and plain zarr arrays/groups.

- OME-Zarr: levels are the ``datasets`` paths in order; axes come from ``axes`` names; MPP from
  the ``scale`` transformation of the ``y``/``x`` axes (times any multiscale-wide scale) with the
  axes' ``unit``. A scale without a known length unit leaves the MPP unknown.
- Plain zarr group: its arrays whose names are integers, sorted numerically (``0``, ``1``, ...).
- Plain zarr array: one level.
- Without NGFF axes, 2-D arrays are ``YX``; 3-D arrays are ``YXC`` when the last dimension has
  1-4 entries, ``CYX`` when the first has; anything else is a :class:`SlideError`.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import zarr

from napari_conch.errors import SlideError
from napari_conch.slide.base import Slide, refuse_huge
from napari_conch.slide.fingerprint import zarr_fingerprint
from napari_conch.slide.layout import make_layout
from napari_conch.slide.mpp import plausible, unit_to_microns
from napari_conch.slide.readers import ArrayReader


def open_zarr(path: Path) -> Slide:
    """Open a zarr folder as a slide."""
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise SlideError(f"{path}: a folder that is not a zarr array or group") from exc
    mpp = None
    if isinstance(node, zarr.Array):
        paths, arrays, axes = [""], [node], None
    else:
        multiscales = _multiscales(node.attrs.asdict())
        if multiscales is not None:
            paths = [d["path"] for d in multiscales["datasets"]]
            arrays = [_member(node, p, path) for p in paths]
            axes = _ngff_axes(multiscales, path)
            mpp = _ngff_mpp(multiscales)
        else:
            paths = _numbered_arrays(node, path)
            arrays = [node[p] for p in paths]
            axes = None
    levels, readers = [], []
    for i, array in enumerate(arrays):
        where = f"{path} level {i}"
        layout = make_layout(
            axes or _guess_axes(array.shape, where), array.shape, array.dtype, where
        )
        refuse_huge(path, layout.width, layout.height)  # before dask lists its chunks
        levels.append(layout.to_rgb(da.from_zarr(array)[layout.full_index()]))
        readers.append(ArrayReader(array, layout))
    _check_pyramid(levels, path)
    return Slide(
        path,
        levels,
        readers,
        mpp=mpp,
        mpp_source="zarr" if mpp is not None else "unknown",
        fingerprint=zarr_fingerprint(path, [p for p in paths if p], [lv.shape for lv in levels]),
        reader="zarr",
    )


def _multiscales(attrs: dict) -> dict | None:
    entries = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    return entries[0] if entries else None


def _member(group: zarr.Group, key: str, path: Path) -> zarr.Array:
    try:
        array = group[key]
    except KeyError as exc:
        raise SlideError(f"{path}: multiscales names dataset {key!r}, which is missing") from exc
    if not isinstance(array, zarr.Array):
        raise SlideError(f"{path}: multiscales dataset {key!r} is not an array")
    return array


def _ngff_axes(multiscales: dict, path: Path) -> str | None:
    axes = multiscales.get("axes")
    if not axes:
        return None
    names = [a["name"] if isinstance(a, dict) else a for a in axes]
    if any(len(n) != 1 for n in names):
        raise SlideError(f"{path}: unsupported OME-Zarr axis names {names}")
    return "".join(names).upper()


def _ngff_mpp(multiscales: dict) -> float | None:
    axes = multiscales.get("axes") or []
    names = [(a["name"] if isinstance(a, dict) else a).lower() for a in axes]
    if "x" not in names or "y" not in names:
        return None
    scale = _scale(multiscales["datasets"][0].get("coordinateTransformations"), len(names))
    shared = _scale(multiscales.get("coordinateTransformations"), len(names))
    sizes = []
    for axis in ("y", "x"):
        i = names.index(axis)
        unit = axes[i].get("unit") if isinstance(axes[i], dict) else None
        factor = unit_to_microns(unit)
        if factor is None or scale is None:
            return None
        sizes.append(scale[i] * (shared[i] if shared else 1.0) * factor)
    return plausible(sum(sizes) / 2)


def _scale(transforms: list | None, ndim: int) -> list[float] | None:
    for transform in transforms or []:
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
            return [float(s) for s in transform["scale"]]
    return None


def _numbered_arrays(group: zarr.Group, path: Path) -> list[str]:
    keys = [k for k, v in group.members() if isinstance(v, zarr.Array) and k.isdigit()]
    if not keys:
        raise SlideError(
            f"{path}: zarr group has no OME-NGFF multiscales and no arrays named 0, 1, ..."
        )
    return sorted(keys, key=int)


def _guess_axes(shape: tuple[int, ...], where: str) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3 and shape[-1] <= 4:
        return "YXC"
    if len(shape) == 3 and shape[0] <= 4:
        return "CYX"
    raise SlideError(
        f"{where}: cannot tell the axes of an array of shape {tuple(shape)} "
        "(expected (Y, X), (Y, X, C) or (C, Y, X) with C <= 4, or OME-NGFF axes)"
    )


def _check_pyramid(levels: list, path: Path) -> None:
    for i in range(1, len(levels)):
        if (
            levels[i].shape[0] > levels[i - 1].shape[0]
            or levels[i].shape[1] > levels[i - 1].shape[1]
        ):
            raise SlideError(
                f"{path}: level {i} ({levels[i].shape[1]} x {levels[i].shape[0]}) is larger "
                f"than level {i - 1}; levels must go from finest to coarsest"
            )
