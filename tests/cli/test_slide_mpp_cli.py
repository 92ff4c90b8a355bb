"""A slide without microns per pixel: a note, and ``--slide-mpp`` states it (store signature)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_conch.cli import main
from napari_conch.engine.store.embedding_store import EmbeddingStore


@pytest.fixture
def no_mpp_slide(tmp_path) -> Path:
    """A 256 x 320 RGB tiled TIFF whose file says nothing of its pixel size."""
    rng = np.random.default_rng(0)
    image = np.full((256, 320, 3), 240, np.uint8)
    tissue = rng.normal(0, 20, (192, 256, 3)) + np.array([200, 120, 170])
    image[32:224, 32:288] = tissue.clip(0, 255)
    path = tmp_path / "no_mpp.tif"
    tifffile.imwrite(path, image, photometric="rgb", tile=(128, 128))
    return path


def embed(slide: Path, stores: Path, *extra: str) -> list[str]:
    argv = ["embed", str(slide), "--model", "demo", "--device", "cpu", "--quiet"]
    return [*argv, "--store", str(stores), *extra]


@pytest.mark.slow
def test_a_slide_without_mpp_says_so_and_a_stated_mpp_makes_its_own_store(
    no_mpp_slide, tmp_path, capsys
):
    stores = tmp_path / "stores"
    assert main(embed(no_mpp_slide, stores)) == 0
    out, err = capsys.readouterr()
    (note,) = err.strip().splitlines()
    assert note.startswith(f"napari-conch embed: note: {no_mpp_slide}: the file gives no micro")
    assert "--slide-mpp X" in note
    plain = EmbeddingStore.open(out.strip())
    assert plain.attrs["slide_mpp"] is None and "slide_mpp" not in plain.signature

    assert main(embed(no_mpp_slide, stores, "--slide-mpp", "0.5")) == 0
    out, err = capsys.readouterr()
    assert err == ""  # stated: no note
    stated = EmbeddingStore.open(out.strip())
    assert stated.path != plain.path
    assert stated.signature["slide_mpp"] == 0.5 and stated.attrs["slide_mpp"] == 0.5

    assert main(embed(no_mpp_slide, stores, "--slide-mpp", "0.25")) == 0
    other = Path(capsys.readouterr().out.strip())
    assert other not in (plain.path, stated.path)  # another stated MPP: not reused
    assert EmbeddingStore.open(other).signature["slide_mpp"] == 0.25

    assert main(embed(no_mpp_slide, stores, "--slide-mpp", "0.5")) == 0
    assert Path(capsys.readouterr().out.strip()) == stated.path  # the same: found again


def test_info_and_region_take_a_stated_mpp(no_mpp_slide, capsys):
    assert main(["info", str(no_mpp_slide)]) == 0
    assert "microns per pixel: unknown (give it with --slide-mpp)" in capsys.readouterr().out
    assert main(["info", str(no_mpp_slide), "--slide-mpp", "0.25"]) == 0
    assert "microns per pixel: 0.25 um/px (stated)" in capsys.readouterr().out
    assert main(["info", str(no_mpp_slide), "--slide-mpp", "-1"]) == 2
    assert "must be a positive number" in capsys.readouterr().err
