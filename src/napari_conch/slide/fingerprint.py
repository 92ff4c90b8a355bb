"""Cheap slide fingerprints: they change when the file changes, without reading all of it.

A file's fingerprint hashes its size, modification time, its first and last 64 KiB, and the
shapes of its levels. A zarr folder's hashes the metadata documents of the group and of each level
array (``zarr.json``, ``.zarray``, ``.zattrs``, ``.zgroup``), their modification times, and the
shapes. The path is not part of it: a moved file keeps its fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Bytes hashed at each end of a file.
EDGE_BYTES = 64 * 1024

_ZARR_METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def _finish(digest: hashlib._Hash, shapes: Iterable[Sequence[int]]) -> str:
    for shape in shapes:
        digest.update(repr(tuple(int(s) for s in shape)).encode())
    return digest.hexdigest()[:32]


def file_fingerprint(path: Path, shapes: Iterable[Sequence[int]]) -> str:
    """Fingerprint a single-file slide from its size, mtime, both ends and level shapes."""
    stat = path.stat()
    digest = hashlib.sha256(f"file:{stat.st_size}:{stat.st_mtime_ns}".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(EDGE_BYTES))
        if stat.st_size > EDGE_BYTES:
            fh.seek(max(stat.st_size - EDGE_BYTES, EDGE_BYTES))
            digest.update(fh.read(EDGE_BYTES))
    return _finish(digest, shapes)


def zarr_fingerprint(
    root: Path, array_paths: Iterable[str], shapes: Iterable[Sequence[int]]
) -> str:
    """Fingerprint a zarr folder from its metadata documents and level shapes."""
    digest = hashlib.sha256(b"zarr")
    for folder in [root, *(root / p for p in array_paths)]:
        for name in _ZARR_METADATA:
            doc = folder / name
            if doc.is_file():
                digest.update(f"{doc.relative_to(root)}:{doc.stat().st_mtime_ns}".encode())
                digest.update(doc.read_bytes())
    return _finish(digest, shapes)
