"""Damaged slide files for fault tests: each helper writes a real file and breaks it on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile
import zarr

#: The SVS tile overwritten by :func:`svs_with_bad_tile`: level-0 rows 960:1200, cols 1200:1440.
BAD_SVS_TILE = 45


def svs_with_bad_tile(svs_path: Path, out: Path, how: str = "start", tile: int = BAD_SVS_TILE):
    """Copy the SVS and damage one JPEG tile in place.

    ``how``: ``"start"`` overwrites the tile's first 64 bytes with zeros (the decoder raises);
    ``"eoi"`` writes an end-of-image marker and zeros a third of the way in (libjpeg would
    decode the rest as grey and only warn).
    """
    shutil.copyfile(svs_path, out)
    out.chmod(0o644)
    with tifffile.TiffFile(out) as tif:
        offset = tif.pages[0].dataoffsets[tile]
        count = tif.pages[0].databytecounts[tile]
    with open(out, "r+b") as fh:
        if how == "start":
            fh.seek(offset)
            fh.write(bytes(64))
        elif how == "eoi":
            fh.seek(offset + count // 3)
            fh.write(b"\xff\xd9" + bytes(100))
        else:
            raise ValueError(how)
    return out


def truncated_pyramid(
    image: np.ndarray, out: Path, fraction: float, compression: str = "jpeg"
) -> Path:
    """A 3-level tiled pyramid (128 px tiles, SubIFDs) cut to ``fraction`` of its bytes."""
    full = out.with_name(out.stem + "_full.tif")
    levels = [image, image[::2, ::2].copy(), image[::4, ::4].copy()]
    with tifffile.TiffWriter(full) as tw:
        tw.write(levels[0], tile=(128, 128), compression=compression, photometric="rgb", subifds=2)
        for level in levels[1:]:
            tw.write(
                level, tile=(128, 128), compression=compression, photometric="rgb", subfiletype=1
            )
    data = full.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def zarr_with_corrupt_chunk(image: np.ndarray, out: Path, chunk: tuple[int, int] = (1, 1)) -> Path:
    """A zarr 3 slide (128 px chunks, zstd) whose chunk ``(row, col)`` holds random bytes."""
    zarr.create_array(str(out), data=image, chunks=(128, 128, 3))
    victim = out / "c" / str(chunk[0]) / str(chunk[1]) / "0"
    assert victim.is_file(), victim
    victim.write_bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes())
    return out
