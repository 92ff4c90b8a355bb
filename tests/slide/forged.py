"""TIFFs whose header claims a size they do not hold, made by patching header bytes.

A real small TIFF is written with tifffile, then its ImageWidth / ImageLength entries are
overwritten in place: nothing of the claimed size is ever allocated or written.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import tifffile

WIDTH, LENGTH = 256, 257


def tiff_claiming(
    out: Path, width: int, height: int, *, tiled: bool = True, tile: int = 128
) -> Path:
    """A 256 x 256 RGB TIFF (tiled ``tile`` px, or one strip) whose header says
    ``width x height``."""
    pixels = np.full((256, 256, 3), 200, np.uint8)
    tifffile.imwrite(out, pixels, photometric="rgb", tile=(tile, tile) if tiled else None)
    data = bytearray(out.read_bytes())
    with tifffile.TiffFile(out) as tif:
        for tag in tif.pages[0].tags.values():
            if tag.code in (WIDTH, LENGTH):
                assert tag.dtype == 4, "the size entries must be LONG to hold any size"
                value = width if tag.code == WIDTH else height
                struct.pack_into("<I", data, tag.valueoffset, value)
    out.write_bytes(bytes(data))
    return out


class FifoUnblocker:
    """A FIFO, and a thread that unblocks whoever opened it for reading.

    Opening a FIFO for reading waits for a writer. Code that does so would hang a test for ever;
    with this, such a reader gets end-of-file instead (and fails some other way), so a test of the
    refusal fails on code that opens the FIFO rather than hanging.
    """

    def __init__(self, path: Path) -> None:
        import os
        import threading

        self.path = path
        os.mkfifo(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._unblock, daemon=True)
        self._thread.start()

    def _unblock(self) -> None:
        import errno
        import os

        while not self._stop.wait(0.05):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno in (errno.ENXIO, errno.ENOENT):  # nobody reads (yet), or gone
                    continue
                raise
            os.close(fd)  # the reader sees end-of-file

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
