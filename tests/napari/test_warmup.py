"""The warm-up: torch's core library loaded ahead, the collector paused while importing."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from napari_conch._napari import warmup


def test_torch_core_library_is_found_without_importing_torch():
    path = warmup.torch_core_library()

    assert path is not None and path.is_file()
    assert path.name.startswith(warmup.TORCH_CORE_LIBRARY)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps (Linux)")
def test_torch_imports_and_computes_after_its_core_was_preloaded():
    # A fresh interpreter: in this one torch is imported already.
    script = textwrap.dedent(
        """
        import sys
        from napari_conch._napari import warmup

        assert warmup.preload_torch_core()
        assert "torch" not in sys.modules
        maps = open("/proc/self/maps").read()
        assert warmup.TORCH_CORE_LIBRARY in maps, "the library is not mapped"
        warmup.import_torch()
        import torch
        assert torch.ones(3).sum().item() == 3.0
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("tuned", [True, False], ids=["napari-conch view", "another napari"])
def test_warm_up_pauses_the_collector_only_in_a_tuned_process(monkeypatch, tuned):
    from napari_conch._napari.fastpaths import process

    monkeypatch.setattr(process, "_TUNED", tuned)
    seen: list[bool] = []
    monkeypatch.setattr(warmup, "MODULES", ("json", "not_a_module_napari_conch"))
    monkeypatch.setattr(warmup, "private_modules", lambda: ())
    monkeypatch.setattr(warmup, "DOCK_MODULES", ())
    real_import = warmup.importlib.import_module

    def recording_import(name):
        seen.append(gc.isenabled())
        return real_import(name)

    monkeypatch.setattr(warmup.importlib, "import_module", recording_import)
    assert gc.isenabled()

    warmup.warm_up_imports()

    assert len(seen) >= 2  # our two modules, and what they import
    assert not any(seen) if tuned else all(seen)  # paused only in our own process
    assert gc.isenabled()


def test_warm_up_has_vispy_compute_its_dash_patterns(monkeypatch):
    from vispy.visuals.line import dash_atlas

    monkeypatch.setattr(warmup, "MODULES", ())
    monkeypatch.setattr(warmup, "DOCK_MODULES", ())
    dash_atlas._make_pattern.cache_clear()

    warmup.warm_up_imports()

    assert dash_atlas._make_pattern.cache_info().currsize == 13  # vispy's 13 named patterns


def test_warm_up_leaves_a_paused_collector_paused(monkeypatch):
    monkeypatch.setattr(warmup, "MODULES", ())
    monkeypatch.setattr(warmup, "DOCK_MODULES", ())
    gc.disable()
    try:
        warmup.warm_up_imports()
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.slow
def test_reading_a_slide_imports_the_docks_modules_without_torch_and_freezes_nothing():
    script = textwrap.dedent(
        """
        import sys
        from napari_conch._napari import warmup
        from napari_conch._napari.reader import read_slide
        from napari_conch.samples import CMU_SMALL_REGION

        import gc

        assert not any(name in sys.modules for name in warmup.DOCK_MODULES)
        frozen = gc.get_freeze_count()
        read_slide(str(CMU_SMALL_REGION))
        warmup._PREFETCH.join(60)
        print(all(name in sys.modules for name in warmup.DOCK_MODULES), "torch" in sys.modules)
        print(gc.get_freeze_count() == frozen)  # napari's process is not ours to change
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "True"]


def test_a_core_library_dlopen_refuses_is_left_to_the_import(monkeypatch, tmp_path):
    broken = tmp_path / "libtorch_cpu.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(warmup, "torch_core_library", lambda: broken)

    assert warmup.preload_torch_core() is False  # refused: nothing loaded, nothing raised
    warmup.import_torch()  # torch (imported here already) is still there
    assert "torch" in sys.modules


def test_a_dock_module_that_fails_to_import_is_one_warning(caplog):
    with caplog.at_level("WARNING", logger="napari_conch"):
        warmup._import_all(("napari_conch._napari.not_a_dock",))

    [record] = caplog.records
    assert "could not import napari_conch._napari.not_a_dock ahead" in record.getMessage()
