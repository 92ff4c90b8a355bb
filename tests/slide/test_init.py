from __future__ import annotations

import subprocess
import sys

import pytest

import napari_conch.slide as slide_api


def test_public_names():
    assert set(slide_api.__all__) == {
        "Slide",
        "TileGrid",
        "TissueScan",
        "make_grid",
        "open_slide",
        "scan_tissue",
        "scan_tissue_steps",
        "tissue_mask",
    }


@pytest.mark.slow
def test_slide_imports_no_torch_or_qt():
    code = (
        "import sys, napari_conch.slide; "
        "heavy = {'torch', 'napari', 'qtpy', 'PyQt5', 'PyQt6'} & set(sys.modules); "
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
