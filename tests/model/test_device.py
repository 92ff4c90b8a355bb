"""Choosing the device: only devices that compute are accepted, in one line."""

from __future__ import annotations

import pytest
import torch

from napari_conch.errors import NapariConchError
from napari_conch.model.device import resolve_device


@pytest.mark.parametrize(
    ("device", "words"),
    [
        ("meta", "'meta' is not a device that computes"),
        ("meta:0", "'meta:0' is not a device that computes"),
        ("hpu", "'hpu' is not one napari-conch computes on"),
        ("gpu", "unknown device 'gpu'"),
    ],
)
def test_devices_that_do_not_compute_are_refused(device, words):
    """``--device meta`` ended in a traceback from the first forward pass."""
    with pytest.raises(NapariConchError, match=words) as info:
        resolve_device(device)
    assert "\n" not in str(info.value)


def test_the_cpu_is_accepted():
    assert resolve_device("cpu") == torch.device("cpu")
