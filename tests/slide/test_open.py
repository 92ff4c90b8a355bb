from __future__ import annotations

import math

import pytest

from napari_conch.errors import SlideError
from napari_conch.slide import open_slide


def test_missing_file(tmp_path):
    with pytest.raises(SlideError, match=r"nope\.svs: no such file or folder"):
        open_slide(tmp_path / "nope.svs")


def test_unknown_format(tmp_path):
    path = tmp_path / "slide.xyz"
    path.write_text("not an image")
    with pytest.raises(SlideError, match=r"slide\.xyz: not a slide format we read"):
        open_slide(path)


def test_an_mrxs_goes_to_openslide_and_says_what_is_wrong_in_one_line(tmp_path):
    from napari_conch.slide.openslide_slide import openslide_available

    path = tmp_path / "slide.mrxs"
    path.write_text("not an image")
    expected = "OpenSlide cannot read it" if openslide_available() else "needs the openslide extra"
    with pytest.raises(SlideError, match=rf"slide\.mrxs: .*{expected}") as info:
        open_slide(path)
    assert "\n" not in str(info.value)


def test_empty_file_is_said_to_be_empty(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(SlideError, match=r"empty\.tif: the file is empty \(0 bytes\)$"):
        open_slide(tmp_path / "empty.tif")


def test_caller_mpp_overrides_file(svs_path):
    with open_slide(svs_path, mpp=0.25) as slide:
        assert slide.mpp == 0.25 and slide.mpp_source == "caller"


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "0.5", True])
def test_caller_mpp_must_be_positive(svs_path, bad):
    with pytest.raises(SlideError, match=r"microns per pixel .* must be a positive number"):
        open_slide(svs_path, mpp=bad)


def test_path_as_string(svs_path):
    with open_slide(str(svs_path)) as slide:
        assert slide.path == svs_path


@pytest.mark.parametrize("path", ["", "   "])
def test_an_empty_path_is_named_as_such_not_taken_for_the_current_folder(path):
    with pytest.raises(SlideError, match="no slide path given"):
        open_slide(path)


def test_a_fifo_named_tif_is_refused_before_it_is_opened(tmp_path):
    """Opening it waited for a writer for ever (CLI embed and the napari reader hung)."""
    from napari_conch.errors import SlideRefusedError
    from tests.slide.forged import FifoUnblocker

    fifo = FifoUnblocker(tmp_path / "slide.tif")
    try:
        with pytest.raises(SlideRefusedError) as info:
            open_slide(fifo.path)
    finally:
        fifo.close()
    assert str(info.value) == (
        f"{fifo.path}: not a regular file (a FIFO); give a slide file or zarr folder"
    )


def test_a_character_device_is_refused():
    from napari_conch.errors import SlideRefusedError

    with pytest.raises(SlideRefusedError, match="/dev/zero: not a regular file"):
        open_slide("/dev/zero")
