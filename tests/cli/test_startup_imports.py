"""What the commands import before they work: pandas only when a table is written."""

from __future__ import annotations

from tests.conftest import loaded_after


def test_the_engine_and_the_embed_command_start_without_pandas():
    code = (
        "import napari_conch.cli.embed, napari_conch.cli.query\n"
        "import napari_conch.engine.session.session, napari_conch.engine.export.writers\n"
    )
    assert loaded_after(code, ("pandas",)) == []
