"""Annotate's "Check next" list keeps its tiles when napari resets the docks' choices.

napari calls ``reset_choices()`` on every dock widget when a layer is added or removed. A
magicgui ``Select`` whose choices were assigned as a plain list goes back to the list it was
made with (empty) then: the list emptied as soon as the learned map's layers were added, with
every embedded tile unlabelled, or after an import that added a layer.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.sample_data import HGSC_HELDOUT
from napari_conch.engine.learn.annotations import Examples, write_examples_geojson
from napari_conch.engine.session.prompt_request import PromptRequest

pytestmark = pytest.mark.gui

WAIT_MS = 30_000
PROMPTS = ("tumor cells", "stroma", "inflammatory cells")


def _wait_outcome(dock, qtbot, examples: int):
    qtbot.waitUntil(
        lambda: dock.outcome is not None and dock.outcome.used == examples and not dock.busy(),
        timeout=WAIT_MS,
    )
    assert not dock.errors, dock.errors
    return dock.outcome


def _listed(dock) -> list[tuple[int, int]]:
    return [dock._uncertain[c] for c in dock.learn_panel.check_next.choices]


@pytest.mark.slow
def test_check_next_fills_whenever_unlabelled_tiles_exist(make_napari_viewer, tmp_path, qtbot):
    viewer = make_napari_viewer()
    viewer.open(str(HGSC_HELDOUT), plugin="napari-conch")  # 44 tissue tiles at 128 px
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    session = dock.session
    session.load_model("demo")
    session.set_options(store_root=tmp_path, tile_size=128, stride=128)
    dock.require_slide()
    session.embed()
    qtbot.waitUntil(lambda: not dock.busy(), timeout=WAIT_MS)
    session.set_prompts(PromptRequest(PROMPTS, "none"))
    index = session.live_embeddings()[0]
    embedded = [tuple(int(v) for v in t) for t in np.argwhere(index.valid)]
    assert len(embedded) > 20

    # no example: the 20 least sure tiles (the learned map's layers were added meanwhile)
    outcome = _wait_outcome(dock, qtbot, 0)
    assert len(outcome.uncertain) == 20
    assert _listed(dock) == [(u.row, u.col) for u in outcome.uncertain]

    # examples imported on all but 16 embedded tiles: those 16 are the list
    names = [PROMPTS[i % 2] for i in range(len(embedded) - 16)]
    names[-3:] = ["necrosis"] * 3  # a class from the file alone
    ex = Examples(*np.array(embedded[:-16]).T, names)
    dock.project_panel.geojson.value = write_examples_geojson(
        tmp_path / "examples.geojson", ex, session.store.grid
    )
    dock.import_annotations()
    outcome = _wait_outcome(dock, qtbot, len(names))
    assert sorted(_listed(dock)) == sorted(embedded[-16:])

    # napari resets every dock's choices on a layer change: the list stays
    viewer.add_points(np.zeros((1, 2)))
    assert sorted(_listed(dock)) == sorted(embedded[-16:])
