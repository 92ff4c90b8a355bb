"""``napari-conch embed`` and ``view`` ask OpenMP for passive waits before torch is imported."""

from __future__ import annotations

from napari_conch.cli.compute_threads import PASSIVE, WAIT_POLICY, passive_thread_waits


def test_passive_waits_are_asked_for_before_torch_is_imported():
    environ: dict[str, str] = {}
    assert passive_thread_waits(environ, modules={}) is True
    assert environ == {WAIT_POLICY: PASSIVE}


def test_the_users_own_wait_policy_is_kept():
    environ = {WAIT_POLICY: "ACTIVE"}
    assert passive_thread_waits(environ, modules={}) is False
    assert environ == {WAIT_POLICY: "ACTIVE"}


def test_nothing_changes_once_torch_is_imported():
    environ: dict[str, str] = {}
    assert passive_thread_waits(environ, modules={"torch": object()}) is False
    assert environ == {}


def test_the_embed_command_sets_it_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from napari_conch.cli import main\n"
        "try:\n"
        "    main(['embed', 'missing.svs', '--model', 'demo', '--quiet'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != WAIT_POLICY}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip().splitlines()[-1] == PASSIVE


def test_the_view_command_sets_it_before_torch_is_imported(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from napari_conch.cli.view import tune_view_process\n"
        "tune_view_process()\n"
        "import torch\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip().splitlines()[-1] == PASSIVE, out.stderr
