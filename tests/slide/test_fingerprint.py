from __future__ import annotations

import os
import shutil

import zarr

from napari_conch.slide import open_slide


def test_fingerprint_stable_and_path_independent(tmp_path, nest_pyramid):
    path, _ = nest_pyramid
    first = open_slide(path).fingerprint
    assert len(first) == 32 and int(first, 16) >= 0
    assert open_slide(path).fingerprint == first
    copy = tmp_path / "elsewhere.tif"
    shutil.copy2(path, copy)
    assert open_slide(copy).fingerprint == first


def test_fingerprint_changes_with_content_or_mtime(nest_pyramid, tiff_pyramid, nest):
    path, _ = nest_pyramid
    before = open_slide(path).fingerprint
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = open_slide(path).fingerprint
    assert touched != before
    tiff_pyramid(path, nest[::-1].copy())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert open_slide(path).fingerprint not in (before, touched)


def test_svs_fingerprint_reads_little(svs_path):
    assert open_slide(svs_path).fingerprint == open_slide(svs_path).fingerprint


def test_zarr_fingerprint(tmp_path, nest, ome_zarr):
    path = tmp_path / "n.zarr"
    ome_zarr(path, nest, levels=2)
    before = open_slide(path).fingerprint
    assert open_slide(path).fingerprint == before
    zarr.open_group(str(path), mode="r+").attrs["note"] = "changed"
    assert open_slide(path).fingerprint != before
