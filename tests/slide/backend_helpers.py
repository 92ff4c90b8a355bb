"""What the tests of the optional slide readers (CZI, DICOM, OpenSlide) share."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest

from napari_conch.slide import open_slide


def svs_crop(svs_path: Path, width: int, height: int) -> np.ndarray:
    """The top-left ``width`` x ``height`` of the shared SVS's level 0 (RGB)."""
    with open_slide(svs_path) as svs:
        return svs.read_region(0, 0, 0, width, height)


def block_import(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` (and its submodules) fail as when the extra is not installed."""
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == module or name.startswith(f"{module}."):
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)


def embed_and_query(
    slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture, mpp: float, *embed_args: str
) -> tuple[int, int]:
    """Embed ``slide`` with the demo model and query one prompt into a map TIFF, from the CLI.

    Checks the store's MPP (``mpp``) and that tiles were embedded; returns the map's
    ``(height, width)`` in map pixels.
    """
    from napari_conch.cli import main
    from napari_conch.engine.export.map_tiff import open_map
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    argv = ["embed", str(slide), "--model", "demo", "--device", "cpu", "--quiet", *embed_args]
    assert main([*argv, "--store", str(tmp_path / "stores")]) == 0
    store = EmbeddingStore.open(capsys.readouterr().out.strip())
    assert store.attrs["slide_mpp"] == pytest.approx(mpp) and store.counts()["done"] > 0
    out = tmp_path / "map.tif"
    query = ["query", str(store.path), "--model", "demo", "--device", "cpu", "--prompt", "tumor"]
    assert main([*query, "--out", str(out)]) == 0
    return tuple(open_map(out).levels[0].shape[1:])


def assert_needs_extra(
    monkeypatch: pytest.MonkeyPatch, slide: Path, module: str, message: str
) -> None:
    """Without ``module`` installed, opening ``slide`` is one line that says ``message``."""
    from napari_conch.errors import SlideError

    block_import(monkeypatch, module)
    with pytest.raises(SlideError, match=message) as info:
        open_slide(slide)
    assert "\n" not in str(info.value)
