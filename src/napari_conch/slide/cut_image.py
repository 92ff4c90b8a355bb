"""Plain image files (JPEG, PNG) cut short: the rows that decoded, and where the rest begins.

A JPEG file cut short decodes without an error: libjpeg-turbo warns ("premature end of data
segment"), imagecodecs silences the warning, and every block past the cut comes out flat grey
(128), which the tissue scan took for glass: half a slide was left out with exit status 0. A
PNG file cut short does not decode at all. :func:`decode_plain` says how many rows from the top
can be trusted; the reader of such an image refuses regions below them
(:class:`~napari_conch.slide.readers.CutImageReader`), so their tiles are FAILED with the reason,
never background.

- **JPEG** (a baseline stream without its end, :func:`~napari_conch.slide.jpeg_check.
  jpeg_problem` says "cut short"): the grey run that ends the decoded image, in raster order,
  starts in the first block row that was not decoded; the rows from :data:`JPEG_MARGIN` rows
  above it are not trusted (the block row the cut went through, and the chroma upsampling that
  blends a row with the one below: measured on the fixture JPEGs, the first wrong row is 17
  rows above the grey run at every cut). A progressive JPEG cut short has every pixel
  approximate: nothing is trusted.
- **PNG** (non-interlaced): the image data that is there is inflated; its whole rows are decoded
  (by rebuilding a PNG of that height) and the rest is not. An interlaced PNG cut short spreads
  every pass over the whole image: nothing is trusted.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np

from napari_conch.slide.jpeg_check import jpeg_problem

#: Rows above the grey run of a cut JPEG that are not trusted (twice the tallest block row).
JPEG_MARGIN = 32
#: The value libjpeg-turbo gives the blocks past the end of the data.
JPEG_FILL = 128
#: JPEG start-of-frame markers of progressive streams.
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of each PNG colour type.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@dataclass
class Decoded:
    """A plain image, and how much of it can be trusted.

    Attributes
    ----------
    image : numpy.ndarray
        The decoded pixels (rows past ``valid_rows`` hold whatever the decoder gave).
    valid_rows : int
        Rows from the top that decoded from the file's own data (all of them when whole).
    reason : str or None
        Why the rest cannot be read (``None`` when the image is whole).
    """

    image: np.ndarray
    valid_rows: int
    reason: str | None = None


def decode_plain(path: Path) -> Decoded:
    """Decode a PNG or JPEG file, saying how many rows are trustworthy when it is cut short.

    Raises
    ------
    ValueError
        When the file cannot be decoded at all (the decoder's message, or why no row of a cut
        file can be trusted).
    """
    data = Path(path).read_bytes()
    if data.startswith(_PNG_SIGNATURE):
        try:
            image = imagecodecs.imread(data)
        except Exception:
            return _cut_png(data)
        return Decoded(image, image.shape[0])
    image = imagecodecs.imread(data)
    problem = jpeg_problem(data)
    if problem is None or "cut short" not in problem:
        return Decoded(image, image.shape[0])
    return _cut_jpeg(data, image, problem)


def _cut_jpeg(data: bytes, image: np.ndarray, problem: str) -> Decoded:
    if _progressive(data):
        raise ValueError(f"{problem}: a progressive JPEG cut short has no row that can be trusted")
    fill = (image == JPEG_FILL) if image.ndim == 2 else (image == JPEG_FILL).all(axis=2)
    flat = fill.ravel()
    if not flat[-1]:  # nothing was filled in: only the end marker is missing
        return Decoded(image, image.shape[0])
    start = len(flat) - int(np.argmin(flat[::-1])) if not flat.all() else 0
    valid = max(0, start // image.shape[1] - JPEG_MARGIN)
    if valid == 0:
        raise ValueError(f"{problem}: no row of the image was decoded")
    return Decoded(image, valid, f"the file is cut short ({problem}): rows from {valid} on lost")


def _progressive(data: bytes) -> bool:
    """Whether the JPEG's frame header (before its first scan) is a progressive one."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in _PROGRESSIVE:
            return True
        if marker == 0xDA:
            return False
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


def _cut_png(data: bytes) -> Decoded:
    """The whole rows of a non-interlaced PNG whose image data is cut short."""
    header, before, idat = None, [], bytearray()
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        elif not idat:
            before.append((kind, body))
        pos += 12 + length
    if header is None or len(header) != 13:
        raise ValueError("PNG cut short before its header")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if interlace:
        raise ValueError("an interlaced PNG cut short has no row that can be trusted")
    if colour not in _PNG_SAMPLES:
        raise ValueError(f"PNG of an unknown colour type {colour}")
    row_bytes = 1 + (width * _PNG_SAMPLES[colour] * depth + 7) // 8
    try:
        raw = zlib.decompressobj().decompress(bytes(idat))
    except zlib.error as exc:
        raise ValueError(f"PNG image data cannot be inflated ({exc})") from exc
    rows = min(height, len(raw) // row_bytes)
    if rows == 0:
        raise ValueError("PNG cut short before its first row of pixels")
    part = _png_of(header[:4] + struct.pack(">I", rows) + header[8:], before, raw, rows * row_bytes)
    top = imagecodecs.imread(part)
    image = np.full((height, *top.shape[1:]), np.iinfo(top.dtype).max, dtype=top.dtype)
    image[:rows] = top
    if rows == height:
        return Decoded(image, height)
    reason = f"the file is cut short (PNG image data ends in row {rows} of {height})"
    return Decoded(image, rows, reason)


def _png_of(header: bytes, before: list[tuple[bytes, bytes]], raw: bytes, size: int) -> bytes:
    """A whole PNG: the header, the chunks that came before the image data, ``raw[:size]``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    parts = [_PNG_SIGNATURE, chunk(b"IHDR", header)]
    parts += [chunk(kind, body) for kind, body in before]
    parts += [chunk(b"IDAT", zlib.compress(raw[:size])), chunk(b"IEND", b"")]
    return b"".join(parts)
