"""A fast model's batches go several at once on the CPU, one torch thread each, in order."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch

from napari_conch.engine.model_workers import compute_workers, embedded_in_order, in_workers


class Recorder:
    """``work``: records the thread, torch's thread count and the overlap of the calls."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = self.most_at_once = 0
        self.threads: list[int] = []

    def __call__(self, item: int) -> tuple[int, int]:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.threads.append(torch.get_num_threads())
        return item, torch.get_num_threads()


def test_results_come_in_order_on_one_torch_thread_each_and_the_count_comes_back():
    before = torch.get_num_threads()
    work = Recorder(seconds=0.02)
    out = list(in_workers(work, range(12), workers=2))
    assert [item for item, _ in out] == list(range(12))
    assert {threads for _, threads in out} == {1}
    assert work.most_at_once == 2
    assert torch.get_num_threads() == before
    fresh = []
    thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert fresh == [before]  # a new thread takes the process's count again


def test_a_quick_first_batch_sends_the_rest_at_once():
    work = Recorder(seconds=0.02)
    out = list(embedded_in_order(work, range(8), workers=2, quick_s=1.0))
    assert [item for item, _ in out] == list(range(8))
    assert out[0][1] == torch.get_num_threads()  # the first alone, on all threads
    assert work.most_at_once == 2


def test_no_items_no_work():
    work = Recorder()
    assert list(embedded_in_order(work, [], workers=2)) == []
    assert work.threads == []


def test_a_slow_first_batch_keeps_one_at_a_time():
    work = Recorder(seconds=0.02)
    out = list(embedded_in_order(work, range(5), workers=2, quick_s=0.001))
    assert [item for item, _ in out] == list(range(5))
    assert work.most_at_once == 1
    assert {threads for _, threads in out} == {torch.get_num_threads()}


def test_an_error_is_raised_in_its_place_and_the_rest_stop():
    started = []

    def work(item: int) -> int:
        started.append(item)
        if item == 3:
            raise ValueError("tile 3")
        time.sleep(0.01)
        return item

    got = []
    with pytest.raises(ValueError, match="tile 3"):
        for value in in_workers(work, range(100), workers=2):
            got.append(value)
    assert got == [0, 1, 2]
    assert len(started) < 10  # bounded: at most workers + 1 ahead of the one yielded


def test_closing_early_waits_for_the_running_and_starts_no_more():
    work = Recorder(seconds=0.02)
    out = embedded_in_order(work, range(100), workers=2)
    assert [next(out)[0] for _ in range(3)] == [0, 1, 2]
    out.close()
    assert work.running == 0 and len(work.threads) <= 3 + 3


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (SimpleNamespace(device=torch.device("cpu"), image_engine=None), "threads"),
        (SimpleNamespace(device=torch.device("cuda")), 1),
        (SimpleNamespace(device=torch.device("cpu"), image_engine=object()), 1),  # int8
        (object(), 1),  # says nothing of its device
    ],
)
def test_how_many_at_once(model, expected):
    wanted = torch.get_num_threads() if expected == "threads" else expected
    assert compute_workers(model) == wanted


def test_the_model_gives_the_same_embeddings_several_batches_at_once(tiny_model):
    import numpy as np

    rng = np.random.default_rng(5)
    size = tiny_model.image_size
    batches = [rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8) for _ in range(6)]
    alone = [tiny_model.embed_images(b) for b in batches]
    at_once = list(in_workers(tiny_model.embed_images, batches, workers=2))
    for a, b in zip(alone, at_once, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
