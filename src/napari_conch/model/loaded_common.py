"""What a loaded CONCH model and a loaded CLIP model do alike.

:class:`EncoderUse` holds the parts of :class:`~napari_conch.model.loaded.LoadedModel` and
:class:`~napari_conch.model.clip_loaded.LoadedClip` that are the same for both: the embedding
size, the temperature, the preprocessing record, autocast at the model's precision, running a
tower under the model's lock, and ranking texts for tiles. :func:`text_list` checks the texts
both take.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from napari_conch.errors import InputError
from napari_conch.model.device import PRECISIONS


def text_list(texts: Any) -> list[str]:
    """``texts`` as a list of strings (a string is one text); an :class:`InputError` else."""
    if isinstance(texts, str):
        return [texts]
    if not hasattr(texts, "__iter__"):
        raise InputError(f"texts must be a string or a list of strings, not {type(texts).__name__}")
    items = list(texts)
    if not items:
        raise InputError("no text given: give a string or a non-empty list of strings")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(f"text {i} is not a string ({type(item).__name__})")
    return items


class EncoderUse:
    """The shared part of a loaded model (a mixin of the two loaded-model dataclasses).

    The class using it has the fields ``model`` (with ``logit_scale``), ``config`` (with
    ``embed_dim``), ``device``, ``precision``, ``preprocess`` and ``_lock``, and the methods
    ``embed_images`` and ``embed_texts``.
    """

    model: Any
    config: Any
    device: torch.device
    precision: str
    preprocess: Any
    _lock: Any

    @property
    def embed_dim(self) -> int:
        """Size of the shared (contrastive) embedding."""
        return self.config.embed_dim

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale)``: the model's own temperature, by which cosines are multiplied
        before a softmax."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def preprocess_info(self) -> dict[str, Any]:
        """The preprocessing, as recorded with embeddings."""
        return self.preprocess.info()

    def autocast(self) -> Any:
        """The autocast context for this model's precision (a no-op for fp32 and int8)."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def normalised(
        self, encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, locked=True
    ):
        """``encode(x)`` under autocast, L2-normalised, as float32 on CPU.

        ``locked``: under the model's lock, one call at a time (on a GPU, so that two threads'
        batches never hold its memory at once).
        """
        with self._lock if locked else contextlib.nullcontext(), self.autocast():
            out = encode(x)
        return F.normalize(out.float(), dim=-1).cpu()

    def image_embeddings(self, encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
        """The image tower's embeddings of the model input ``x``: through the int8 engine when
        the model runs in int8 (ONNX Runtime), else ``encode(x)`` as :meth:`normalised` does.

        On the CPU without the lock: the embedding runs several batches at once there, one per
        thread (:mod:`napari_conch.engine.model_workers`); a forward pass in inference mode
        changes nothing in the model, and autocast's state is each thread's own.
        """
        engine = getattr(self, "image_engine", None)
        if engine is None:
            return self.normalised(encode, x, locked=self.device.type != "cpu")
        return F.normalize(engine(x).float(), dim=-1).cpu()

    @torch.inference_mode()
    def rank_texts(self, tiles: Any, texts: str | Sequence[str]) -> torch.Tensor:
        """Probabilities ``[B, N]`` of each text for each tile: softmax of scaled cosines.

        The scale is the model's own temperature (:attr:`logit_scale`), as CONCH's zero-shot
        classification uses it; without it the probabilities would be nearly flat.
        """
        cosine = self.embed_images(tiles) @ self.embed_texts(texts).T
        return (self.logit_scale * cosine).softmax(dim=-1)
