"""Long-lived objects frozen out of full garbage collections (they pause napari)."""

from __future__ import annotations

import subprocess
import sys


def test_napari_side_freezes_what_exists_when_napari_first_uses_it():
    script = (
        "import gc\n"
        "before = gc.get_freeze_count()\n"
        "import napari_conch._napari\n"
        "print(before, gc.get_freeze_count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    before, after = map(int, out.stdout.split())

    assert before == 0
    assert after > 1000  # the interpreter's own objects at least
