"""The npe2 manifest, the reader, the sample data and the prompt maps (no viewer needed)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from napari_conch._napari.reader import get_reader
from napari_conch._napari.sample_data import CMU_SMALL_REGION, cmu_small_region, synthetic_slide
from napari_conch._napari.synthetic import SyntheticSlide, SyntheticSpec
from napari_conch.errors import SlideError

MANIFEST = Path(__file__).resolve().parents[2] / "napari.yaml"


def _python_names() -> list[str]:
    manifest = yaml.safe_load(MANIFEST.read_text())
    return [c["python_name"] for c in manifest["contributions"]["commands"]]


@pytest.mark.parametrize("python_name", _python_names())
def test_every_python_name_imports(python_name):
    module, _, attr = python_name.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_manifest_is_valid_and_shipped():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-conch"
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Prompt highlighter", "Caption and retrieval", "Annotate", "Cohort"}
    shipped = Path(importlib.import_module("napari_conch").__file__).parent / "napari.yaml"
    assert shipped.resolve() == MANIFEST


def test_reader_reads_the_real_svs(svs_path):
    reader = get_reader(str(svs_path))
    [(data, kwargs, kind)] = reader(str(svs_path))
    assert kind == "image" and kwargs["rgb"]
    assert kwargs["scale"] == pytest.approx((0.499, 0.499), abs=1e-3)
    meta = kwargs["metadata"]["napari_conch"]
    assert meta["path"] == str(svs_path.resolve()) and meta["levels"] == 1
    assert tuple(data.shape) == (2967, 2220, 3) and data.dtype == np.uint8


def test_reader_declines_what_is_not_ours(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    fake = tmp_path / "fake.tif"
    fake.write_text("plain text with a tiff name")
    floats = tmp_path / "floats.tif"
    tifffile.imwrite(floats, np.zeros((32, 32), np.float32))
    folder = tmp_path / "folder.zarr"
    folder.mkdir()
    for path in (text, fake, floats, folder, tmp_path / "missing.svs"):
        assert get_reader(str(path)) is None, path


def test_reader_lays_an_exported_map_over_the_slide(tmp_path):
    from napari_conch._napari.reader import read_map
    from napari_conch.engine.export.map_tiff import SlideFrame
    from napari_conch.engine.export.writers import export_result
    from napari_conch.engine.query import QueryIndex, run_query
    from napari_conch.slide import TileGrid

    grid = TileGrid(0, 1.0, 1.0, 64, 64, 20, 30, (1280, 1920))
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 8))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    index = QueryIndex(rng.normal(size=(20, 30, 8)).astype(np.float32))
    res = run_query(index, ["tumor", "stroma"], q, grid, logit_scale=20.0)
    frame = SlideFrame((1280, 1920), (1.0, 4.0, 16.0), mpp=0.25)
    path = export_result(tmp_path / "map.tif", res, grid, frame=frame)  # auto: 16 px per pixel
    assert get_reader(str(path)) is read_map
    layers = read_map(str(path))
    assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
        ("map prob_tumor", "image"), ("map prob_stroma", "image"), ("map label", "labels")
    ]  # fmt: skip
    for data, kwargs, _ in layers:
        # map pixel i spans level-0 pixels 16 i .. 16 i + 16; the slide layer (scale 0.25 um)
        # centres level-0 pixel p at 0.25 p: the map pixel's centre, 16 i + 7.5, at 4 i + 1.875
        assert kwargs["scale"] == (4.0, 4.0) and kwargs["translate"] == (1.875, 1.875)
        assert kwargs["units"] == ("um", "um") and not kwargs["multiscale"]
        assert tuple(data.shape) == (80, 120)
    labels = np.asarray(layers[2][0])
    np.testing.assert_array_equal(labels[::4, ::4], res.cell_labels)  # 4 map pixels per tile


def test_reader_claims_a_broken_slide(svs_path, tmp_path):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(svs_path.read_bytes()[:20_000])
    reader = get_reader(str(broken))
    assert reader is not None
    with pytest.raises(SlideError, match=r"broken\.svs") as info:
        reader(str(broken))
    assert "\n" not in str(info.value)


def test_cmu_sample_is_the_shipped_slide(svs_path):
    assert CMU_SMALL_REGION.read_bytes() == svs_path.read_bytes()
    assert (CMU_SMALL_REGION.parent / "LICENSE-CC0.txt").is_file()
    [(data, kwargs, _)] = cmu_small_region()
    assert kwargs["metadata"]["napari_conch"]["mpp"] == pytest.approx(0.499, abs=1e-3)
    assert data.shape == (2967, 2220, 3)


def test_synthetic_sample_is_large_lazy_and_deterministic():
    [(levels, kwargs, _)] = synthetic_slide()
    assert kwargs["multiscale"] and levels[0].shape == (50_000, 50_000, 3)
    assert [lv.shape[0] for lv in levels] == [50_000, 12_500, 3125, 782, 196]
    again = SyntheticSlide().levels()
    crop = (slice(20_000, 20_300), slice(14_000, 14_300))
    first = np.asarray(levels[0][crop])
    np.testing.assert_array_equal(first, np.asarray(again[0][crop]))
    coarse = np.asarray(levels[-1])
    assert (coarse.min(axis=2) < 200).mean() > 0.1  # tissue
    assert (coarse.min(axis=2) > 230).mean() > 0.1  # glass
    assert SyntheticSpec().fingerprint() != SyntheticSpec(seed=8).fingerprint()


def test_view_command_opens_the_sample_by_default(tmp_path):
    from napari_conch.cli import build_parser
    from napari_conch.cli.view import slide_path

    args = build_parser().parse_args(["view", "--model", "m.bin"])
    assert args.slide is None and args.model == "m.bin"
    assert slide_path(None) == CMU_SMALL_REGION
    with pytest.raises(SlideError, match="no such file"):
        slide_path(str(tmp_path / "missing.svs"))


def test_reader_refuses_a_fifo_without_opening_it(tmp_path):
    """napari's open of a FIFO named .tif waited for a writer for ever."""
    from tests.slide.forged import FifoUnblocker

    fifo = FifoUnblocker(tmp_path / "pipe.tif")
    try:
        reader = get_reader(str(fifo.path))
    finally:
        fifo.close()
    assert reader is not None  # claimed: the user is told why, not "no reader"
    with pytest.raises(SlideError, match=r"pipe\.tif: not a regular file \(a FIFO\)"):
        reader(str(fifo.path))


@pytest.mark.slow
def test_reader_refuses_a_header_claiming_4e9_by_3e9_px(tmp_path):
    """The reader grew to 16.8 GB resident on it."""
    from tests.slide.forged import tiff_claiming

    huge = tiff_claiming(tmp_path / "huge.tif", 4_000_000_000, 3_000_000_000)
    reader = get_reader(str(huge))
    assert reader is not None
    with pytest.raises(SlideError, match="4000000000 x 3000000000 px, more than any"):
        reader(str(huge))
