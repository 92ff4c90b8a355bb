"""The package as installed: light import, the npe2 manifest, the console command."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import napari_conch
from tests.conftest import REPO_ROOT, loaded_after


def test_import_is_light():
    heavy = loaded_after(
        "import napari_conch, napari_conch.errors, napari_conch.cli",
        ("torch", "napari", "PyQt6", "PyQt5", "qtpy", "dask", "zarr"),
    )
    assert heavy == [], f"importing napari_conch imported {','.join(heavy)}"


def test_manifest_is_the_repository_file_and_valid():
    from npe2 import PluginManifest

    packaged = Path(napari_conch.__file__).parent / "napari.yaml"
    assert packaged.resolve() == (REPO_ROOT / "napari.yaml").resolve()
    manifest = PluginManifest.from_file(REPO_ROOT / "napari.yaml")
    assert manifest.name == "napari-conch"


def test_npe2_discovers_the_installed_plugin():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover()
    assert pm.get_manifest("napari-conch").name == "napari-conch"


def test_npe2_validate_command_passes():
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-conch"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_wheel_ships_the_manifest_and_entry_point(tmp_path):
    pytest.importorskip("hatchling", reason="building a wheel needs hatchling")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("napari_conch-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        manifest = yaml.safe_load(zf.read("napari_conch/napari.yaml"))
        assert manifest["name"] == "napari-conch"
        assert manifest == yaml.safe_load((REPO_ROOT / "napari.yaml").read_text())
        (entry_points,) = [n for n in zf.namelist() if n.endswith("entry_points.txt")]
        text = zf.read(entry_points).decode()
        assert "napari-conch = napari_conch:napari.yaml" in text
        assert "napari-conch = napari_conch.cli:main" in text
        names = zf.namelist()
        assert not any("conch_byte_level_bpe" in n for n in names)
        assert "napari_conch/demo/data/demo_coca.pt" in names
        assert "napari_conch/_napari/data/cmu_small_region.svs" in names
    # the installed wheel (not the editable checkout) is a valid npe2 plugin
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import napari_conch; print(napari_conch.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(target))
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-conch"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
