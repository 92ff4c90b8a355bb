"""What the commands import before they work: pandas only when a table is written."""

from __future__ import annotations

import subprocess
import sys


def test_the_engine_and_the_embed_command_start_without_pandas(tmp_path):
    code = (
        "import sys\n"
        "import napari_conch.cli.embed, napari_conch.cli.query\n"
        "import napari_conch.engine.session.session, napari_conch.engine.export.writers\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr
