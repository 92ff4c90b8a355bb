"""The session is the only state: a flow driven through the session alone, no dock open, is what
the docks show when they open; a dock closed and opened again, or a second one, shows it too.

The demo model on the shipped CC0 slide (256 px tiles), as ``test_annotate_dock.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.docks.prompt_dock import PromptDock
from napari_conch._napari.layers import examples as example_layers
from napari_conch._napari.layers import map_layers
from napari_conch._napari.sample_data import CMU_SMALL_REGION
from napari_conch._napari.session_registry import session_for
from napari_conch.engine.learn.export import export_learned

pytestmark = pytest.mark.gui

WAIT_MS = 30_000
PROMPTS = ("tumor cells", "stroma")
PROMPT = "Prompt highlighter"


@pytest.fixture
def flow(make_napari_viewer, tmp_path):
    """A viewer with a slide, and the whole flow run through its session with no dock open:
    slide, embed, prompts, maps, examples, learning, exports, the project saved."""
    viewer = make_napari_viewer()
    [slide_layer] = viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    session = session_for(viewer)
    session.load_model("demo")
    session.set_options(store_root=tmp_path, tile_size=256, stride=256, min_tissue=0.1)
    from napari_conch._napari.layers.slide_source import slide_for_layer

    session.set_slide(slide_for_layer(slide_layer), source=slide_layer)
    session.embed()
    session.set_prompt_text("\n".join(PROMPTS))
    result = session.query(session.request)
    assert result is not None and list(result.names) == list(PROMPTS)
    tiles = [tuple(map(int, t)) for t in np.argwhere(session.index.compacted().valid)]
    session.label_tiles(tiles[:3], "stroma")
    session.label_tiles(tiles[3:5], "necrosis")  # a class of examples alone
    request = session.learning_request()
    session.remember_texts(session.encode_texts(request, session.missing_texts(request)))
    outcome = session.learner().retrain()
    assert outcome.used == 5
    assert session.export(tmp_path / "map.csv").is_file()
    learned = export_learned(tmp_path / "learned.csv", outcome.result, session.grid)
    assert learned.is_file()
    assert session.save_project(outcome.classifier).is_file()
    assert [layer.name for layer in viewer.layers] == [slide_layer.name]  # no dock drew
    return viewer, session


def _shows_the_session(dock, session) -> None:
    assert dock.prompt_panel.text.value == session.prompt_text == "\n".join(PROMPTS)
    assert dock.slide_panel.tile_size.value == session.options.tile_size == 256
    assert dock.slide_panel.min_tissue.value == pytest.approx(session.options.min_tissue)
    assert dock.model_panel.source.value == "demo"
    assert dock.slide_layer is session.slide_source


def test_the_docks_show_a_flow_run_through_the_session_alone(flow, qtbot):
    viewer, session = flow
    _, prompt = viewer.window.add_plugin_dock_widget("napari-conch", PROMPT)
    _shows_the_session(prompt, session)
    qtbot.waitUntil(
        lambda: map_layers.LABELS in viewer.layers and not prompt.drawing, timeout=WAIT_MS
    )
    labels = viewer.layers[map_layers.LABELS]
    shown, _ = map_layers.clip_to_image(
        session.result.cell_labels,
        session.result.geometry,
        map_layers.image_shape(prompt.slide_layer),
    )
    np.testing.assert_array_equal(labels.data, shown)

    _, annotate = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    assert annotate.classes == [*PROMPTS, "necrosis"]
    assert list(annotate.class_panel.klass.choices) == [*PROMPTS, "necrosis"]
    layer = viewer.layers[example_layers.EXAMPLES]
    shown = example_layers.read_examples(layer, annotate.classes)
    assert shown.as_dict() == session.examples.as_dict()
    qtbot.waitUntil(
        lambda: annotate.outcome is not None and annotate.outcome.used == 5, timeout=WAIT_MS
    )
    assert example_layers.LEARNED_LABELS in viewer.layers
    qtbot.waitUntil(lambda: not annotate.busy(), timeout=WAIT_MS)
    assert not prompt.errors and not annotate.errors


def test_a_dock_opened_again_or_a_second_one_shows_the_same_state(flow, qtbot):
    viewer, session = flow
    dock_widget, first = viewer.window.add_plugin_dock_widget("napari-conch", PROMPT)
    qtbot.waitUntil(lambda: not first.drawing, timeout=WAIT_MS)
    viewer.window.remove_dock_widget(dock_widget)  # the close button: napari keeps the widget
    assert first._closed and not first._listening  # it no longer follows the session
    _, again = viewer.window.add_plugin_dock_widget("napari-conch", PROMPT)
    assert again is not first
    _shows_the_session(again, session)

    second = PromptDock(viewer)  # a second Prompt dock beside it
    viewer.window.add_dock_widget(second, name="second prompt dock")
    _shows_the_session(second, session)

    # a user's edit in one box goes to the session once, and the other box shows it
    seen: list = []
    session.events.prompts_changed.connect(seen.append)
    again.prompt_panel.text.value = "stroma\nfat"
    qtbot.waitUntil(lambda: session.prompt_text == "stroma\nfat", timeout=WAIT_MS)
    assert second.prompt_panel.text.value == "stroma\nfat"
    assert [r.prompts for r in seen] == [("stroma", "fat")]  # no echo back from either box
    qtbot.waitUntil(
        lambda: session.result is not None and list(session.result.names) == ["stroma", "fat"],
        timeout=WAIT_MS,
    )
    qtbot.wait(300)  # past both boxes' debounce: still nothing sent back
    assert len(seen) == 1

    # an option edited in one dock is the session's, and the other dock shows it
    options: list = []
    session.events.options_changed.connect(options.append)
    second.slide_panel.min_tissue.value = 0.3
    assert session.options.min_tissue == pytest.approx(0.3)
    assert again.slide_panel.min_tissue.value == pytest.approx(0.3)
    assert len(options) == 1  # shown in the other dock without being sent again
    # and options set through the session show in both
    session.set_options(batch_size=7)
    assert again.slide_panel.batch_size.value == second.slide_panel.batch_size.value == 7
    qtbot.waitUntil(lambda: not again.busy() and not second.busy(), timeout=WAIT_MS)
    assert not again.errors and not second.errors, (again.errors, second.errors)
