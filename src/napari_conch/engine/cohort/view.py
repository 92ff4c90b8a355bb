"""What the napari Cohort view shows, without Qt: a classified slide reopened, and a search.

The Cohort dock lists the slides of a ``classify-slides`` CSV. Opening one
(:func:`open_cohort_slide`) finds the slide file its store records, checks it is the file that
was embedded (the fingerprint), loads the model the store records, and computes what the dock
draws: the slide's class probability maps and labels (the same maps as ``napari-conch query``),
and its slide-level result with the evidence tiles of each class. :func:`search_cohort` is
``napari-conch search`` over the cohort's stores. Both are slow (a model, a store read) and run
in a worker; the dock only draws what they return.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_conch.engine.cohort.classify import DEFAULT_TOPK, SlideResult, classify_store
from napari_conch.engine.cohort.search import (
    SearchHit,
    check_same_model,
    open_stores,
    read_store,
    search_stores,
)
from napari_conch.engine.prompts import PromptSet, embed_prompt_sets, text_queries
from napari_conch.engine.query import QueryIndex, QueryResult, run_query
from napari_conch.engine.store.embedding_store import EmbeddingStore
from napari_conch.engine.store.lookup import model_for_store
from napari_conch.errors import InputError, SlideError


def slide_for_store(store: EmbeddingStore) -> Any:
    """Open the slide file a store records; refuse a file that changed since it was embedded."""
    from napari_conch.slide import open_slide

    recorded = store.attrs.get("slide_path")
    if not recorded or not Path(recorded).exists():
        raise SlideError(f"{store.path}: the slide it was made from ({recorded}) is not there")
    mpp = store.attrs.get("slide_mpp")
    slide = open_slide(recorded)
    if slide.mpp is None and mpp is not None:
        slide = open_slide(recorded, mpp=float(mpp))  # the MPP it was embedded with
    if slide.fingerprint != store.signature.get("slide_fingerprint"):
        raise SlideError(f"{recorded}: the file changed since {store.path.name} was made")
    return slide


@dataclass
class CohortSlide:
    """A classified slide, reopened: slide, store, and (with prompts) maps and slide result."""

    slide: Any
    store: EmbeddingStore
    maps: QueryResult | None = None
    result: SlideResult | None = None
    model: Any = None

    @property
    def predicted(self) -> str | None:
        """The class predicted at the largest pooling size (None without prompts)."""
        if self.result is None:
            return None
        return self.result.names[int(self.result.preds[-1])]


def open_cohort_slide(
    store_path: str | os.PathLike,
    prompt_set: PromptSet | None,
    topk: Sequence[int] = DEFAULT_TOPK,
    *,
    device: str | None = None,
) -> CohortSlide:
    """Reopen a slide of a cohort from its store, with its class maps and slide-level result.

    Without ``prompt_set`` only the slide and the store are opened (no model is loaded).
    """
    if prompt_set is not None and len(prompt_set.names) < 2:
        raise InputError("the prompt file needs two or more classes")
    store = read_store(store_path)
    slide = slide_for_store(store)
    if prompt_set is None:
        return CohortSlide(slide, store)
    model = model_for_store(store, device=device)
    names, classes = embed_prompt_sets(model, prompt_set)
    scale = float(model.logit_scale)
    result = classify_store(store, names, classes, scale, topk)
    index = QueryIndex.from_store(store)
    maps = run_query(index, names, classes, store.grid, logit_scale=scale)
    return CohortSlide(slide, store, maps, result, model)


def search_cohort(
    store_paths: Sequence[str | os.PathLike],
    prompt: str,
    k: int = 20,
    templates: str = "conch",
    *,
    device: str | None = None,
) -> list[SearchHit]:
    """``napari-conch search --prompt`` over the stores (the model the first one records)."""
    if not prompt.strip():
        raise InputError("type what to look for")
    stores = open_stores(store_paths)
    check_same_model(stores)
    model = model_for_store(stores[0], device=device)
    _, queries = text_queries(model, [prompt], templates)
    return search_stores(stores, queries[0], k)
