"""The prompts-and-maps part of a :class:`~napari_conch.engine.session.session.Session`.

:class:`SessionMaps` holds what a session shows: the prompts (a :class:`PromptRequest`), the text
embeddings of their classes (cached per model and sentences, so a class typed again is not
encoded twice), and the map on show (a :class:`~napari_conch.engine.query.QueryResult`: of the
prompts, or the similarity to one tile). It makes the maps over the session's live index,
finds the tile under a point (:func:`tile_at`) and writes the map on show to a file.

It is a base class of ``Session`` and is not used alone: its methods read what the session
holds (``model``, ``slide``, ``store``, ``index``, ``grid``, ``events``) and call its
``require_model`` and ``open_store``. The session's model, slide, options, grid and runs are in
:mod:`napari_conch.engine.session.session`, the store it has open in
:mod:`napari_conch.engine.session.open_store`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.session.prompt_request import PromptRequest
from napari_conch.errors import InputError


class SessionMaps:
    """What a session shows: prompts, their text embeddings, the map on show; its export.

    :class:`~napari_conch.engine.session.session.Session` inherits these methods: they are part of
    its interface, and this class is not used alone.

    Attributes
    ----------
    request : PromptRequest or None
        The prompts on show.
    prompt_text : str
        Those prompts as typed (a prompt box's text; "" without prompts).
    result : QueryResult or None
        The map on show (prompts, or the similarity to one tile: see :attr:`showing_example`).
    showing_example : bool
        Whether the map on show is the similarity to one tile (:meth:`show_example`).
    """

    # what the Session provides (with ``require_model`` and ``open_store``)
    events: Any
    model: Any
    slide: Any
    store: Any
    index: Any
    grid: Any

    def __init__(self) -> None:
        self.request: PromptRequest | None = None
        self.prompt_text = ""
        self.result: Any = None
        self.showing_example = False
        self._texts: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    def set_prompts(self, request: PromptRequest | None, *, text: str | None = None) -> None:
        """The prompts to show (checked; None or no prompt: none, and the maps go).

        ``text``: the prompts as the user typed them (a prompt box's text, kept as it is in
        :attr:`prompt_text` so that every box shows it); default the request's prompts, one
        per line. New prompts leave the maps of the old ones until theirs are made
        (:meth:`update_maps`). ``prompts_changed`` is emitted with the request (None: none).
        """
        if request is not None and not request.prompts:
            request = None
        if request is not None:
            request.check()
        if text is None:
            text = "\n".join(request.prompts) if request is not None else ""
        self.request = request
        self.prompt_text = text
        self.showing_example = False
        self.events.prompts_changed.emit(request)
        if request is None:
            self.set_result(None)  # no prompt: no map of prompts that are gone

    def set_prompt_text(
        self,
        text: str | Sequence[str],
        *,
        templates: bool | str = True,
        background: str = "",
        threshold: float = 0.0,
    ) -> PromptRequest | None:
        """Parse prompts (a prompt box's text, one per line, or a list) and show them.

        ``templates``: a name of :data:`~napari_conch.engine.prompts.TEMPLATE_SETS`, True for
        the model's own (CONCH's without a model) or False for none. Returns the request set
        (None when there is no prompt); see :meth:`set_prompts`.

        Raises
        ------
        InputError
            For prompts that cannot make a map (a repeated class, a blank background).
        """
        from napari_conch.engine.prompts import model_templates

        if not isinstance(text, str):
            text = "\n".join(str(t) for t in text)
        if templates is True:
            templates = model_templates(self.model)
        request = PromptRequest.from_text(
            text, templates=templates, background=background, threshold=threshold
        )
        self.set_prompts(request, text=text)
        return self.request

    def missing_texts(self, request: PromptRequest | None = None) -> list[str]:
        """Classes of ``request`` (default: the current one) not encoded with this model yet."""
        request = request if request is not None else self.request
        if request is None:
            return []
        fingerprint = self.require_model().fingerprint
        cached = self._texts
        return [c for c in request.classes if (fingerprint, request.sentences(c)) not in cached]

    def encode_texts(
        self, request: PromptRequest, classes: list[str] | None = None
    ) -> dict[tuple, np.ndarray]:
        """Text embeddings of ``classes`` of ``request`` (default: all) with the current model.

        Slow (the text tower); no state change: safe to run in a worker thread. Pass the result
        to :meth:`remember_texts`. Embeddings are cached per (model, sentences), so a class
        typed again, or the same class in another request, is not encoded twice.
        """
        from napari_conch.engine.prompts import embed_prompt_sets

        model = self.require_model()
        out = {}
        for name in request.classes if classes is None else classes:
            _, vectors = embed_prompt_sets(model, request.class_set(name))
            out[(model.fingerprint, request.sentences(name))] = vectors[0]
        return out

    def remember_texts(self, encoded: dict[tuple, np.ndarray]) -> None:
        """Cache text embeddings from :meth:`encode_texts`."""
        self._texts.update(encoded)

    def text_vectors(self, request: PromptRequest) -> dict[str, np.ndarray]:
        """The cached text embedding of every class of ``request``, by class name.

        Raises KeyError for a class not encoded yet (see :meth:`missing_texts`).
        """
        fingerprint = self.require_model().fingerprint
        return {n: self._texts[(fingerprint, request.sentences(n))] for n in request.classes}

    def update_maps(self) -> Any:
        """The maps of the current prompts over the embedded tiles, set as the result.

        Returns None (and changes nothing) when there are no prompts, no open store, or a
        prompt is not encoded yet (see :meth:`missing_texts`).
        """
        request = self.request
        if request is None or self.index is None or self.missing_texts(request):
            return None
        from napari_conch.engine.query import run_query

        names = request.classes
        vectors = self.text_vectors(request)
        queries = np.stack([vectors[n] for n in names])
        result = run_query(
            self.index,
            names,
            queries,
            self.grid,
            logit_scale=float(self.model.logit_scale),
            background=request.background,
            threshold=request.threshold,
        )
        self.showing_example = False
        self.set_result(result)
        return result

    def query(self, request: PromptRequest) -> Any:
        """Blocking (scripts, CLI): set the prompts, encode what is missing, return the maps."""
        self.set_prompts(request)
        self.open_store(create=False)
        if self.index is None:
            raise InputError("embed the slide first: no tile embeddings to query")
        missing = self.missing_texts(request)
        if missing:
            self.remember_texts(self.encode_texts(request, missing))
        return self.update_maps()

    def set_result(self, result: Any) -> None:
        """Show ``result`` (a QueryResult, or None)."""
        if result is None and self.result is None:
            return
        self.result = result
        self.events.result_changed.emit(result)

    def tile_at(self, y: float, x: float) -> tuple[int, int] | None:
        """The grid tile under level-0 pixel ``(y, x)`` (see :func:`tile_at`)."""
        return tile_at(self.grid, y, x)

    def show_example(self, row: int, col: int, threshold: float | None = None) -> Any:
        """Show the similarity to tile ``(row, col)`` (query by example); returns the result."""
        from napari_conch.engine.query import example_query, run_query

        if self.index is None:
            raise InputError("embed the slide first: no tile embeddings to compare with")
        vector = example_query(self.index.compacted(), [(row, col)])
        name = f"like tile ({row}, {col})"
        result = run_query(self.index, [name], vector[None], self.grid, threshold=threshold)
        self.showing_example = True
        self.set_result(result)
        return result

    def export(
        self,
        path: str | os.PathLike | None,
        *,
        metadata: dict[str, Any] | None = None,
        map_scale: Any = "auto",
        map_render: str = "float",
    ) -> Path:
        """Write the map on show (format by the file's extension); returns the file written."""
        return self.export_job(path, metadata=metadata, map_scale=map_scale,
                               map_render=map_render)()  # fmt: skip

    def export_job(
        self,
        path: str | os.PathLike | None,
        *,
        metadata: dict[str, Any] | None = None,
        map_scale: Any = "auto",
        map_render: str = "float",
    ) -> Callable[[], Path]:
        """Check ``path`` and what there is to export now; returns the writing, to run later.

        The returned call holds the map on show and writes it (safe in a worker thread);
        :meth:`export` runs it at once. ``metadata``: entries added to what the file records
        (the store, the model source, the slide). ``map_scale``: how a ``.tif`` map is placed
        on the slide (:mod:`napari_conch.engine.export.map_tiff`; ``"tile"``: one pixel per cell);
        ``map_render``: ``"float"`` values or ``"rgb"`` colours
        (:mod:`~napari_conch.engine.export.map_rgb`).
        """
        from functools import partial

        from napari_conch.engine.export.map_tiff import parse_map_scale
        from napari_conch.engine.export.writers import export_result

        choose = "choose a file to export to (.tif, .geojson, .csv or .npy)"
        if path is None or str(path).strip() in ("", "."):
            raise InputError(choose)
        if Path(path).expanduser().is_dir():
            raise InputError(f"{choose}: {path} is a folder")
        if self.result is None or self.store is None:
            raise InputError("nothing to export yet: type a prompt first")
        from napari_conch.engine.export.map_rgb import parse_map_render

        map_scale, map_render = parse_map_scale(map_scale), parse_map_render(map_render)
        slide, mpp = self._slide_facts()
        recorded = {"store": str(self.store.path)}
        if self.model is not None:
            recorded["model_source"] = str(self.model.source)
        if slide:
            recorded["slide"] = str(slide)
        recorded.update(metadata or {})
        frame = self._slide_frame() if Path(path).suffix.lower() in (".tif", ".tiff") else None
        return partial(
            export_result,
            path,
            self.result,
            self.store.grid,
            mpp=mpp,
            metadata=recorded,
            map_scale=map_scale,
            frame=frame,
            map_render=map_render,
        )

    def _slide_frame(self) -> Any:
        """The slide's level-0 size, levels and MPP for a map TIFF (the slide's, else the
        store's: :func:`~napari_conch.engine.export.map_tiff.frame_for_store`)."""
        from napari_conch.engine.export.map_tiff import SlideFrame, frame_for_store

        if self.slide is not None:
            return SlideFrame.from_slide(self.slide)
        return frame_for_store(self.store)

    def _slide_facts(self) -> tuple[Any, float | None]:
        """The slide's path and level-0 MPP: the slide's, else what the store records."""
        if self.slide is not None:
            return self.slide.path, self.slide.mpp
        attrs = self.store.attrs
        return attrs.get("slide_path"), attrs.get("slide_mpp")


def tile_at(grid: Any, y: float, x: float) -> tuple[int, int] | None:
    """The tile under level-0 pixel ``(y, x)``: among those covering it, the nearest centre.

    Returns None outside the grid's tiles (or for a non-finite point).
    """
    if not math.isfinite(x + y):
        return None
    step, size = grid.cell_size_level0, grid.tile_size_level0
    row = min(max(round((y - size / 2) / step), 0), grid.rows - 1)
    col = min(max(round((x - size / 2) / step), 0), grid.cols - 1)
    x0, y0, x1, y1 = grid.tile_box(row, col)
    inside = x0 <= x + 0.5 < x1 and y0 <= y + 0.5 < y1
    return (int(row), int(col)) if inside else None
