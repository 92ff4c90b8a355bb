"""The structural JPEG check finds what libjpeg only warns about (and imagecodecs hides)."""

from __future__ import annotations

import imagecodecs
import pytest

from napari_conch.slide.jpeg_check import jpeg_problem


@pytest.fixture(scope="module")
def stream(nest) -> bytes:
    return imagecodecs.jpeg8_encode(nest[:128, :128].copy(), level=90)


def test_valid_streams_pass(stream, svs_path):
    import tifffile

    assert jpeg_problem(stream) is None
    assert jpeg_problem(stream + bytes(7)) is None  # zero padding after the end marker
    with tifffile.TiffFile(svs_path) as tif:  # every tile of the real SVS (JPEG tables apart)
        page = tif.pages[0]
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            tif.filehandle.seek(offset)
            assert jpeg_problem(tif.filehandle.read(count)) is None


def test_damage_the_decoder_ignores_is_found(stream):
    cut = stream[: len(stream) // 2]
    decoded = imagecodecs.jpeg8_decode(cut)  # no error, no warning: grey garbage
    assert decoded.shape == (128, 128, 3)
    assert "cut short" in jpeg_problem(cut)
    stray_end = bytearray(stream)
    stray_end[len(stream) // 3 : len(stream) // 3 + 2] = b"\xff\xd9"
    assert "end-of-image marker at byte" in jpeg_problem(bytes(stray_end))
    bad_marker = bytearray(stream)
    bad_marker[len(stream) // 2 : len(stream) // 2 + 2] = b"\xff\x3a"
    assert "unexpected marker 0x3A" in jpeg_problem(bytes(bad_marker))
    assert "no start-of-image" in jpeg_problem(bytes(8) + stream[8:])
    assert "no image scan" in jpeg_problem(b"\xff\xd8\xff\xd9")
