"""``napari-conch embed`` pauses the garbage collector during its start-up, then freezes."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from napari_conch.cli.collector import collect_after_start_up


@pytest.fixture
def frozen_back():
    """The test process's collector as it was: on, nothing frozen by the test."""
    before = gc.get_freeze_count()
    yield
    gc.enable()
    if gc.get_freeze_count() > before:
        gc.unfreeze()


def test_the_start_up_runs_without_collector_then_what_exists_is_frozen(frozen_back):
    before = gc.get_freeze_count()
    with collect_after_start_up(modules={}) as paused:
        assert paused and not gc.isenabled()
        kept = [object() for _ in range(10)]  # made during the start-up: frozen after it
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(kept)


def test_the_collector_is_on_again_when_the_start_up_fails(frozen_back):
    with pytest.raises(RuntimeError), collect_after_start_up(modules={}):
        raise RuntimeError("the model cannot load")
    assert gc.isenabled()


def test_a_process_with_torch_already_loaded_keeps_its_collector(frozen_back):
    before = gc.get_freeze_count()
    with collect_after_start_up(modules={"torch": object()}) as paused:
        assert not paused and gc.isenabled()
    assert gc.get_freeze_count() == before


def test_a_collector_switched_off_by_the_user_stays_off(frozen_back):
    gc.disable()
    with collect_after_start_up(modules={}) as paused:
        assert not paused
    assert not gc.isenabled()


@pytest.mark.slow
def test_an_embed_process_makes_no_full_collection_once_started(tmp_path, svs_path):
    """In a fresh process: no full collection from the model's load to the end of the run."""
    code = (
        "import gc, sys\n"
        "full = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and info['generation'] == 2"
        " and 'torch' in sys.modules and full.append(1))\n"
        "from napari_conch.cli import main\n"
        f"code = main(['embed', {str(svs_path)!r}, '--model', 'demo', '--tile-size', '224',"
        f" '--device', 'cpu', '--quiet', '--store', {str(tmp_path)!r}])\n"
        "print(code, len(full), gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=os.environ, capture_output=True, text=True
    )
    assert out.stdout.strip().splitlines()[-1] == "0 0 True True", out.stderr[-2000:]
