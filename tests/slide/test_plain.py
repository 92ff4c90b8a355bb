from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from napari_conch.engine.options import DEFAULTS
from napari_conch.errors import SlideError
from napari_conch.slide import open_slide


def test_png_is_one_level(ihc_path):
    source = imagecodecs.imread(ihc_path)
    slide = open_slide(ihc_path)
    assert slide.shape == source.shape[:2]
    assert len(slide.levels) == 1 and slide.downsamples == [1.0]
    assert slide.mpp is None and slide.mpp_source == "unknown"
    np.testing.assert_array_equal(slide.read_region(0, 30, 40, 100, 90), source[40:130, 30:130, :3])
    np.testing.assert_array_equal(slide.levels[0].compute(), source[..., :3])


def test_jpeg_is_one_level(nest_jpg):
    source = imagecodecs.imread(nest_jpg)
    slide = open_slide(nest_jpg, mpp=0.5)
    assert slide.shape == (1500, 1500)
    assert slide.mpp == 0.5 and slide.mpp_source == "caller"
    np.testing.assert_array_equal(slide.read_region(0, 1400, 0, 100, 50), source[:50, 1400:])


def test_grey_and_rgba_png(tmp_path, nest):
    imagecodecs.imwrite(tmp_path / "grey.png", nest[..., 2].copy())
    grey = open_slide(tmp_path / "grey.png").read_region(0, 0, 0, 20, 10)
    np.testing.assert_array_equal(grey, np.stack([nest[:10, :20, 2]] * 3, -1))
    alpha = np.zeros((*nest.shape[:2], 1), np.uint8)
    alpha[:, 250:] = 255  # left half transparent, right half opaque
    imagecodecs.imwrite(tmp_path / "rgba.png", np.concatenate([nest, alpha], -1))
    level = open_slide(tmp_path / "rgba.png").levels[0].compute()
    assert (level[:, :250] == 255).all()  # composited over white, as empty glass
    np.testing.assert_array_equal(level[:, 250:], nest[:, 250:])


def test_16_bit_png_refused(tmp_path):
    imagecodecs.imwrite(tmp_path / "deep.png", np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(SlideError, match=r"deep\.png: pixel type is uint16"):
        open_slide(tmp_path / "deep.png")


def test_truncated_png_refused(tmp_path, ihc_path):
    (tmp_path / "cut.png").write_bytes(ihc_path.read_bytes()[:2000])
    with pytest.raises(SlideError, match=r"cut\.png: cannot decode the image") as info:
        open_slide(tmp_path / "cut.png")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- files cut short
def cut(source, out, fraction):
    data = source.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("name", ["nest_jpg", "ihc_path"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_a_file_cut_short_keeps_its_decoded_rows_and_refuses_the_rest(
    request, tmp_path, name, fraction
):
    """A JPEG cut in half decoded to grey past the cut (read as glass, without a word); a PNG
    cut short did not open."""
    from napari_conch.slide import make_grid, scan_tissue

    source = request.getfixturevalue(name)
    whole = open_slide(source)
    slide = open_slide(cut(source, tmp_path / f"cut{source.suffix}", fraction))
    height, width = slide.shape
    assert slide.shape == whole.shape
    valid = slide._readers[0]._valid_rows
    assert 0 < valid < height
    np.testing.assert_array_equal(  # the rows kept are the whole file's, to the last one
        slide.read_region(0, 0, 0, width, valid), whole.read_region(0, 0, 0, width, valid)
    )
    with pytest.raises(SlideError, match=r"cut\.(jpg|png): cannot read .*the file is cut short"):
        slide.read_region(0, 0, valid - 1, width, 2)
    grid = make_grid(slide, tile_size=128)
    scan = scan_tissue(slide, grid, DEFAULTS.min_tissue)
    boxes = grid.boxes()
    lost = boxes[..., 3] > valid  # tiles that reach the lost rows
    assert scan.damaged[lost].all() and not scan.mask[lost].any()
    assert not scan.damaged[boxes[..., 3] <= valid - 16].any()  # damage to 16 rows at most
    assert all("cut short" in scan.reasons[t] for t in zip(*np.nonzero(lost), strict=True))


def test_jpeg_missing_only_its_end_marker_is_whole(tmp_path, nest_jpg):
    data = nest_jpg.read_bytes()
    assert data.endswith(b"\xff\xd9")
    (tmp_path / "no_eoi.jpg").write_bytes(data[:-2])
    slide = open_slide(tmp_path / "no_eoi.jpg")
    np.testing.assert_array_equal(slide.levels[0].compute(), open_slide(nest_jpg).levels[0])


def test_a_cut_file_with_no_row_to_trust_is_one_line(tmp_path, nest_jpg, ihc_path, nest):
    from PIL import Image

    Image.fromarray(nest).save(tmp_path / "progressive.jpg", progressive=True, quality=90)
    cases = {
        cut(nest_jpg, tmp_path / "head.jpg", 0.001): "no row of the image was decoded",
        cut(ihc_path, tmp_path / "head.png", 0.001): "PNG cut short before its first row",
        cut(tmp_path / "progressive.jpg", tmp_path / "p.jpg", 0.6): "progressive JPEG cut short",
    }
    for path, message in cases.items():
        with pytest.raises(SlideError) as caught:
            open_slide(path)
        text = str(caught.value)
        assert text.startswith(f"{path}: cannot decode the image (") and message in text
        assert "\n" not in text and "DECODE" not in text  # not imagecodecs' list of codecs
