"""Reopening a classified slide for the Cohort view, and searching the cohort (tiny model)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_conch.engine.cohort.classify import classify_store
from napari_conch.engine.cohort.view import open_cohort_slide, search_cohort, slide_for_store
from napari_conch.engine.prompts import PromptSet, embed_prompt_sets
from napari_conch.engine.store.embedding_store import EmbeddingStore
from napari_conch.errors import InputError, SlideError
from tests.conftest import require_fixture

PROMPTS = PromptSet({"tumor": ["tumor"], "glass": ["glass", "background"]}, ("CLASSNAME.",))


@pytest.fixture
def embedded(tmp_path, tiny_checkpoint, tokenizer_path):
    """A copy of the JPEG, embedded at 256 px tiles with the tiny model."""
    from napari_conch.engine.embed import embed

    ckpt, config = tiny_checkpoint
    slide = tmp_path / "nest.jpg"
    shutil.copy(require_fixture("images/hgsc_nest.jpg"), slide)
    path = embed(
        slide, ckpt, config=config, tokenizer=tokenizer_path, level=0, tile_size=256,
        device="cpu", store_root=tmp_path / "stores",
    )  # fmt: skip
    return slide, EmbeddingStore.open(path)


def test_open_cohort_slide_gives_the_maps_and_the_slide_result(embedded, tiny_model):
    _, store = embedded
    opened = open_cohort_slide(store.path, PROMPTS, (1, 5), device="cpu")
    assert opened.slide.fingerprint == store.signature["slide_fingerprint"]
    assert opened.store.path == store.path
    names, classes = embed_prompt_sets(tiny_model, PROMPTS)
    expected = classify_store(store, names, classes, tiny_model.logit_scale, (1, 5))
    np.testing.assert_allclose(opened.result.pooled, expected.pooled, atol=1e-6)
    assert opened.predicted == names[int(expected.preds[-1])]
    assert opened.maps.names == names and opened.maps.probs.shape == (2, *store.shape)
    done = store.status() == 1
    assert np.isfinite(opened.maps.probs[0][done]).all()
    assert np.isnan(opened.maps.cosine[0][~done]).all()


@pytest.mark.slow
def test_a_changed_or_missing_slide_file_is_refused(embedded):
    slide_path, store = embedded
    data = bytearray(slide_path.read_bytes())
    data[-10] ^= 0xFF  # same size, other bytes
    slide_path.write_bytes(bytes(data))
    with pytest.raises(SlideError, match="changed since"):
        slide_for_store(store)
    slide_path.unlink()
    with pytest.raises(SlideError, match="is not there"):
        open_cohort_slide(store.path, PROMPTS)


@pytest.mark.slow
def test_search_cohort(embedded):
    _, store = embedded
    hits = search_cohort([store.path], "tumor", k=3, device="cpu")
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    with pytest.raises(InputError, match="type what"):
        search_cohort([store.path], "  ")


def test_open_without_prompts_opens_slide_and_store_only(embedded):
    _, store = embedded
    opened = open_cohort_slide(store.path, None)
    assert opened.maps is None and opened.result is None and opened.predicted is None
    assert opened.slide.fingerprint == store.signature["slide_fingerprint"]
