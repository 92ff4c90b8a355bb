from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_conch.errors import SlideError
from napari_conch.slide import open_slide


@pytest.mark.parametrize(
    ("version", "channel_first"), [("0.5", True), ("0.4", False)], ids=["ngff05-cyx", "ngff04-yxc"]
)
def test_ome_zarr_levels_mpp_and_regions(tmp_path, nest, ome_zarr, version, channel_first):
    path = tmp_path / "nest.ome.zarr"
    arrays = ome_zarr(path, nest, levels=3, channel_first=channel_first, version=version)
    slide = open_slide(path)
    assert slide.name == "nest"
    assert [lv.shape for lv in slide.levels] == [a.shape for a in arrays]
    assert slide.mpp == pytest.approx(0.5)
    assert slide.mpp_source == "zarr"
    assert slide.downsamples[1] == pytest.approx(2.0)
    for k, array in enumerate(arrays):
        np.testing.assert_array_equal(slide.read_region(k, 4, 9, 100, 60), array[9:69, 4:104])
    np.testing.assert_array_equal(slide.levels[2].compute(), arrays[2])


def test_ome_zarr_in_nanometres(tmp_path, nest, ome_zarr):
    path = tmp_path / "nm.zarr"
    ome_zarr(path, nest, levels=2, unit="nanometer", mpp=250.0)
    assert open_slide(path).mpp == pytest.approx(0.25)


def test_ome_zarr_without_unit_has_unknown_mpp(tmp_path, nest, ome_zarr):
    path = tmp_path / "nounit.zarr"
    ome_zarr(path, nest, levels=2, unit=None)
    slide = open_slide(path)
    assert slide.mpp is None and slide.mpp_source == "unknown"


def test_plain_group_levels_sorted_numerically(tmp_path):
    path = tmp_path / "plain.zarr"
    group = zarr.open_group(str(path), mode="w")
    sizes = [2 ** (11 - k) + 1 for k in range(11)]  # "10" must come after "9", not after "1"
    for k in reversed(range(11)):
        group.create_array(str(k), data=np.full((sizes[k], sizes[k], 3), k, np.uint8))
    group.create_array("labels", data=np.zeros((4, 4), np.uint8))
    slide = open_slide(path)
    assert [lv.shape[0] for lv in slide.levels] == sizes
    assert slide.read_region(10, 0, 0, 2, 2).tolist() == np.full((2, 2, 3), 10).tolist()
    assert slide.mpp is None


def test_plain_array_channel_first_greyscale(tmp_path, nest):
    grey = nest[..., 0]
    zarr.create_array(str(tmp_path / "grey.zarr"), data=grey[None], chunks=(1, 100, 100))
    slide = open_slide(tmp_path / "grey.zarr")
    assert len(slide.levels) == 1
    np.testing.assert_array_equal(
        slide.read_region(0, 0, 0, 30, 20), np.stack([grey[:20, :30]] * 3, -1)
    )


def test_folder_that_is_not_zarr(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SlideError, match="a folder that is not a zarr array or group"):
        open_slide(tmp_path)


def test_group_without_levels(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("image", data=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SlideError, match=r"g\.zarr: zarr group has no OME-NGFF multiscales"):
        open_slide(tmp_path / "g.zarr")


def test_float_zarr_refused(tmp_path):
    zarr.create_array(str(tmp_path / "f.zarr"), data=np.zeros((8, 8, 3), np.float32))
    with pytest.raises(SlideError, match=r"f\.zarr level 0: pixel type is float32"):
        open_slide(tmp_path / "f.zarr")


def test_unknown_axes_refused(tmp_path):
    zarr.create_array(str(tmp_path / "cube.zarr"), data=np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(SlideError, match=r"cannot tell the axes of an array of shape \(8, 8, 8\)"):
        open_slide(tmp_path / "cube.zarr")


def test_levels_growing_refused(tmp_path):
    group = zarr.open_group(str(tmp_path / "up.zarr"), mode="w")
    group.create_array("0", data=np.zeros((8, 8, 3), np.uint8))
    group.create_array("1", data=np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(SlideError, match=r"level 1 .* is larger than level 0"):
        open_slide(tmp_path / "up.zarr")


def test_missing_multiscales_dataset(tmp_path, nest, ome_zarr):
    path = tmp_path / "broken.zarr"
    ome_zarr(path, nest, levels=2)
    group = zarr.open_group(str(path), mode="r+")
    attrs = group.attrs["ome"]
    attrs["multiscales"][0]["datasets"].append({"path": "7", "coordinateTransformations": []})
    group.attrs["ome"] = attrs
    with pytest.raises(SlideError, match="multiscales names dataset '7', which is missing"):
        open_slide(path)


def test_zarr_regions_from_threads(tmp_path, nest, ome_zarr):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "t.zarr"
    ome_zarr(path, nest, levels=1)
    slide = open_slide(path)
    boxes = [(x, y) for x in range(0, 400, 37) for y in range(0, 500, 61)]
    with ThreadPoolExecutor(4) as pool:
        regions = list(pool.map(lambda b: slide.read_region(0, *b, 100, 100), boxes))
    for (x, y), region in zip(boxes, regions, strict=True):
        np.testing.assert_array_equal(region, nest[y : y + 100, x : x + 100])
