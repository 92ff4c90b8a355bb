"""The session holds the prompts as typed, the classes and the examples (no Qt, no dock).

The tiny reference model on the real CC0 slide (512 px tiles), as ``test_session.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.engine.learn.annotations import Examples
from napari_conch.engine.learn.export import export_learned
from napari_conch.engine.learn.project import project_path
from napari_conch.engine.options import RunOptions
from napari_conch.engine.session.prompt_request import PromptRequest
from napari_conch.engine.session.session import Session
from napari_conch.errors import InputError


@pytest.fixture
def session(svs_path, tiny_model, tmp_path):
    """A session on the real slide with the tiny model, 512 px tiles, stores under tmp."""
    s = Session(RunOptions(tile_size=512, min_tissue=0.1, store_root=str(tmp_path)))
    s.set_model(tiny_model)
    s.open_slide(svs_path)
    return s


def _signals(session: Session, *names: str) -> dict[str, list]:
    seen: dict[str, list] = {name: [] for name in names}
    for name in names:
        getattr(session.events, name).connect(seen[name].append)
    return seen


def _embedded_tiles(session: Session) -> list[tuple[int, int]]:
    return [tuple(map(int, t)) for t in np.argwhere(session.index.compacted().valid)]


def test_prompt_text_is_parsed_and_kept_as_typed():
    s = Session()
    seen = _signals(s, "prompts_changed", "result_changed")
    request = s.set_prompt_text("tumor\n\n  stroma \n")
    assert request.prompts == ("tumor", "stroma") and request.templates == "conch"
    assert s.request is request and s.prompt_text == "tumor\n\n  stroma \n"  # as typed
    assert seen["prompts_changed"] == [request]
    # a list, no templates, a background and a threshold
    request = s.set_prompt_text(["fat", "necrosis"], templates=False, background="glass")
    assert request.classes == ["fat", "necrosis", "glass"] and request.templates == "none"
    assert s.prompt_text == "fat\nnecrosis"
    # a request set without text shows its prompts one per line
    s.set_prompts(PromptRequest(("a", "b"), "none"))
    assert s.prompt_text == "a\nb"
    # nothing typed: no prompt, the text kept (a box shows what was typed)
    assert s.set_prompt_text("  \n ") is None
    assert s.request is None and s.prompt_text == "  \n " and seen["prompts_changed"][-1] is None


def test_prompts_that_cannot_make_a_map_change_nothing():
    s = Session()
    s.set_prompt_text("tumor")
    with pytest.raises(InputError, match="tumor"):
        s.set_prompt_text("tumor\ntumor")
    assert s.request.prompts == ("tumor",) and s.prompt_text == "tumor"


def test_the_prompts_templates_are_the_models_own(tiny_model):
    s = Session()
    s.set_model(tiny_model)
    assert s.set_prompt_text("tumor").templates == "conch"
    assert s.set_prompt_text("tumor", templates="none").templates == "none"


def test_examples_need_embeddings_and_stay_in_the_grid(session):
    with pytest.raises(InputError, match="embed the slide first"):
        session.label_tiles([(0, 0)], "tumor")
    session.embed()
    rows, cols = session.grid.shape
    seen = _signals(session, "examples_changed")
    with pytest.raises(InputError, match=f"tile \\({rows}, 0\\) is outside the {rows} x {cols}"):
        session.label_tiles([(rows, 0)], "tumor")
    assert len(session.examples) == 0 and seen["examples_changed"] == []


def test_classes_follow_the_prompts_and_examples_keep_theirs(session):
    session.embed()
    seen = _signals(session, "classes_changed", "examples_changed")
    session.set_prompts(PromptRequest(("tumor", "stroma"), "none"))
    assert session.classes == ["tumor", "stroma"] and seen["classes_changed"] == [
        ["tumor", "stroma"]
    ]
    colors = dict(session.class_colors)
    tiles = _embedded_tiles(session)
    session.label_tiles(tiles[:2], "Stroma")  # a known class whatever its case
    assert session.examples.counts() == {"stroma": 2}
    assert session.add_class("necrosis") == "necrosis"
    session.label_tiles(tiles[2:3], "necrosis")
    # the stroma prompt goes: its examples stay, as a class learned from them, same colour
    session.set_prompts(PromptRequest(("tumor",), "none"))
    assert session.classes == ["tumor", "necrosis", "stroma"]
    assert session.class_colors["stroma"] == colors["stroma"]
    assert seen["classes_changed"][-1] == ["tumor", "necrosis", "stroma"]
    # painting adds, erasing takes away (a stroke's tiles as one action)
    session.add_examples(Examples([tiles[3][0]], [tiles[3][1]], ["tumor"]))
    session.label_tiles(tiles[:1], None)
    assert session.examples.as_dict() == {
        tiles[1]: "stroma", tiles[2]: "necrosis", tiles[3]: "tumor",
    }  # fmt: skip
    assert seen["examples_changed"][-1] is session.examples


def test_examples_are_saved_in_the_store_and_come_back_with_it(session):
    session.embed()
    session.set_prompts(PromptRequest(("tumor", "stroma"), "none"))
    tiles = _embedded_tiles(session)
    session.label_tiles(tiles[:2], "stroma")
    session.label_tiles(tiles[2:3], "glass")  # a class of examples alone
    before = session.examples.as_dict()
    path = session.save_project()
    assert path == project_path(session.store.path) and session.has_project()
    seen = _signals(session, "examples_changed")
    session.close_store()  # another store: the examples of this grid go
    assert len(session.examples) == 0 and seen["examples_changed"] == [session.examples]
    with pytest.raises(InputError, match="embed the slide first"):
        session.load_project()
    session.open_store(create=False)
    project = session.load_project()
    assert session.examples.as_dict() == before and "glass" in project.classes
    assert session.classes == ["tumor", "stroma", "glass"]


def test_a_store_without_a_project_says_so(session):
    session.embed()
    assert not session.has_project()
    with pytest.raises(InputError, match="holds no saved annotation project"):
        session.load_project()


def test_the_learner_waits_for_the_texts_then_learns_the_examples(session, tmp_path):
    session.embed()
    session.set_prompt_text("tumor\nstroma")
    tiles = _embedded_tiles(session)
    session.label_tiles(tiles[:3], "stroma")
    assert session.learner() is None  # the prompts are not encoded yet
    request = session.learning_request()
    session.remember_texts(session.encode_texts(request, session.missing_texts(request)))
    learner = session.learner()
    outcome = learner.retrain()
    assert outcome.used == 3 and outcome.result.names == ["tumor", "stroma"]
    out = export_learned(
        tmp_path / "learned.csv", outcome.result, session.grid, colors=session.class_colors
    )
    assert "prob_stroma" in out.read_text().splitlines()[0]
