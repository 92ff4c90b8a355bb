"""``--scheduler`` on the command line against real processes: a ``dask scheduler`` with a
``dask worker``, and services that are not dask (an HTTP server, a service sending its own
banner), all on 127.0.0.1.

The real cluster runs as separate processes, as a user starts one by hand; every process and
server the tests start is stopped when they end, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import csv
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.engine.store.embedding_store import EmbeddingStore
from tests.cli.test_classify_slides_cli import PROMPTS
from tests.cli.test_region_cli import model_args
from tests.conftest import require_fixture

SRC = Path(__file__).resolve().parents[2] / "src"
#: The longest any process of these tests may take to start or to answer.
START_S = 90


def _pythonpath() -> str:
    return os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(20)


@pytest.fixture
def real_cluster(tmp_path) -> Iterator[str]:
    """A ``dask scheduler`` and one ``dask worker`` (separate processes); yields the address."""
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is an optional extra (napari-conch[distributed])"
    )
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    info = tmp_path / "scheduler.json"
    logs = [open(tmp_path / f"{name}.log", "wb") for name in ("scheduler", "worker")]
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(info)],
        env=env, stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    processes = [scheduler]
    try:
        deadline = time.monotonic() + START_S
        while not info.is_file() and scheduler.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not info.is_file():
            pytest.fail(f"dask scheduler did not start: {(tmp_path / 'scheduler.log').read_text()}")
        time.sleep(0.2)  # the file is written whole by then
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", address, "--nworkers", "1",
             "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
            env=env, stdout=logs[1], stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        processes.append(worker)
        with distributed.Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(1, timeout=START_S)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)
        for log in logs:
            log.close()


def _rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows, the store column resolved as the CSV names it (from the CSV's folder)."""
    from napari_conch.engine.cohort.csv_paths import resolve_store_reference

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["store"] = str(resolve_store_reference(row["store"], path.parent))
    return rows


@pytest.mark.slow
def test_classify_slides_with_a_real_scheduler_equals_the_local_run(
    real_cluster, tmp_path, tiny_checkpoint, tokenizer_path, capsys
):
    """Whole slides as tasks (the default for as many slides as workers): it failed at once
    with ``ValueError: No clients found`` (``as_completed`` looked for a default client)."""
    slides = [require_fixture(f"images/{n}") for n in ("hgsc_nest.jpg", "ihc.png")]
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    results = {}
    for where in ("local", "cluster"):
        argv = ["classify-slides", *map(str, slides), "--prompts", str(prompts)]
        argv += ["--out", str(tmp_path / f"{where}.csv"), "--level", "0", "--tile-size", "256"]
        argv += ["--store", str(tmp_path / where), "--quiet", "--device", "cpu"]
        argv += model_args(tiny_checkpoint, tokenizer_path)
        if where == "cluster":
            argv += ["--scheduler", real_cluster, "--cluster-timeout", "60"]
        assert main(argv) == 0, capsys.readouterr().err
        results[where] = _rows(tmp_path / f"{where}.csv")
    err = capsys.readouterr().err
    assert "embedded hgsc_nest.jpg" in err and "embedded ihc.png" in err  # the tasks reported
    local, cluster = results["local"], results["cluster"]
    assert [r["slide"] for r in cluster] == [r["slide"] for r in local] == ["hgsc_nest", "ihc"]
    for a, b in zip(local, cluster, strict=True):
        assert Path(b["store"]).parent == tmp_path / "cluster"  # written by the worker there
        sa, sb = EmbeddingStore.open(a["store"]), EmbeddingStore.open(b["store"])
        assert sa.signature == sb.signature and sb.attrs["last_run"]["computed"] > 0
        np.testing.assert_array_equal(sa.status(), sb.status())
        np.testing.assert_allclose(sa.embeddings(), sb.embeddings(), atol=2e-3, equal_nan=True)
        for key in a:
            if key.startswith(("score_", "prob_")):
                assert float(b[key]) == pytest.approx(float(a[key]), abs=2e-3)
            elif key != "store":
                assert b[key] == a[key]


class _Silent(http.server.BaseHTTPRequestHandler):
    """An HTTP server like the dashboard: it waits for a request line dask never sends."""

    timeout = 300  # a handler never waits for ever, even if the test is stopped

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def banner_server() -> Iterator[str]:
    """A service that greets every connection with its own bytes (here, an SSH banner)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            with contextlib.suppress(OSError):
                conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


SERVICES = {"http": http_server, "banner": banner_server}


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize("command", ["embed", "classify-slides"])
def test_a_scheduler_address_that_does_not_speak_dask_is_one_line(
    service, command, tmp_path, svs_path, tiny_checkpoint, tokenizer_path
):
    """The dashboard-port mistake waited for ever (``--cluster-timeout`` did not apply); a
    service sending its own bytes gave ``struct.error``, then 40 s in ``Client.__del__``."""
    pytest.importorskip("distributed", reason="dask.distributed is an optional extra")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    with SERVICES[service]() as address:
        argv = [sys.executable, "-m", "napari_conch", command, str(svs_path)]
        argv += ["--store", str(tmp_path / "stores"), "--level", "0", "--quiet"]
        argv += ["--scheduler", address, "--cluster-timeout", "2"]
        argv += model_args(tiny_checkpoint, tokenizer_path)
        if command == "classify-slides":
            argv += ["--prompts", str(prompts), "--out", str(tmp_path / "slides.csv")]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=START_S,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"napari-conch {command}: error: scheduler {address}: ")
    assert "dask" in lines[0] and "8786" in lines[0]
    assert not (tmp_path / "stores").exists() and not (tmp_path / "slides.csv").exists()


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_get_client_refuses_a_service_that_is_not_dask_and_leaves_no_client(service):
    import gc

    distributed = pytest.importorskip("distributed", reason="an optional extra")
    from napari_conch.engine.distributed import get_client
    from napari_conch.errors import ClusterError

    gc.collect()
    with SERVICES[service]() as address, pytest.raises(ClusterError) as caught:
        get_client(address, timeout=1)
    text = str(caught.value)
    assert text.startswith(f"scheduler {address}: ") and "\n" not in text
    if service == "http":
        assert "gave no dask answer in 1 s" in text
    else:
        assert "does not speak dask's protocol" in text
    assert [o for o in gc.get_objects() if type(o) is distributed.Client] == []
