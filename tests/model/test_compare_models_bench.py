"""``bench/compare_models.py``: two QuiltNet-layout folders of random weights on the shipped
sample; the maps of each model (always), the side-by-side PNG (when matplotlib is installed)."""

from __future__ import annotations

import numpy as np
import pytest
from bench.compare_models import main, model_maps, parse_model

from napari_conch.errors import InputError
from napari_conch.model import clear_model_cache
from napari_conch.samples import CMU_SMALL_REGION
from tests.model.clip_folders import write_open_clip_folder, write_transformers_folder

PROMPTS = ["tumor", "stroma"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    clear_model_cache()
    yield {
        "QuiltNet-B-32": write_open_clip_folder(root / "QuiltNet-B-32", seed=3),
        "PLIP": write_transformers_folder(root / "plip", seed=4),
    }
    clear_model_cache()


@pytest.mark.slow
def test_each_model_maps_the_prompts_with_its_own_templates(folders, tmp_path):
    quilt = model_maps("QuiltNet-B-32", str(folders["QuiltNet-B-32"]), CMU_SMALL_REGION, PROMPTS,
                       tmp_path / "q", device="cpu")  # fmt: skip
    plip = model_maps("PLIP", str(folders["PLIP"]), CMU_SMALL_REGION, PROMPTS, tmp_path / "p",
                      device="cpu")  # fmt: skip
    assert (quilt.templates, quilt.tile_size) == ("quiltnet", 224)
    assert plip.templates == "plip"  # a folder named as the model is that model
    for res in (quilt, plip):
        assert res.maps.shape[0] == 2
        both = res.maps[0] + res.maps[1]
        assert np.allclose(both[np.isfinite(both)], 1, atol=1e-5)  # probabilities
    assert not np.allclose(np.nan_to_num(quilt.maps), np.nan_to_num(plip.maps))


def test_bad_model_argument_is_one_line(capsys, tmp_path):
    with pytest.raises(InputError, match="NAME=SOURCE"):
        parse_model("just-a-folder")
    argv = ["--model", "x=/no/such/folder", "--prompt", "tumor", "--png", str(tmp_path / "f.png"),
            "--stores", str(tmp_path / "s")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/no/such/folder" in err
    assert not (tmp_path / "f.png").exists()


@pytest.mark.slow
def test_writes_the_figure(folders, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "compare.png"
    argv = [arg for name, folder in folders.items() for arg in ("--model", f"{name}={folder}")]
    argv += ["--prompt", "tumor", "--prompt", "stroma", "--png", str(png)]
    argv += ["--stores", str(tmp_path / "stores"), "--device", "cpu"]
    assert main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "QuiltNet-B-32 (quiltnet templates, 224 px)" in printed and "PLIP (" in printed
