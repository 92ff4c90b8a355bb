"""CONCH's byte-level BPE tokenizer, through the HF ``tokenizers`` library.

A text becomes ``<start_of_text> ... <end_of_text>``, truncated (keeping the end token) or padded
with ``<pad>`` to ``context_length - 1`` ids, plus one trailing ``<pad>``: the position the text
encoder gives to its CLS token. CONCH's tokenizer file is licensed CC-BY-NC-ND 4.0 by the Mahmood
Lab: this package does not ship it, :func:`find_tokenizer` finds the user's copy.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from napari_conch.errors import TokenizerNotFoundError

TOKENIZER_FILENAME = "conch_byte_level_bpe_uncased.json"
TOKENIZER_ENV = "NAPARI_CONCH_TOKENIZER"
PAD_ID, START_ID, END_ID = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<start_of_text>", "<end_of_text>")


class Tokenizer:
    """Texts <-> token ids the way CONCH's ``tokenize`` makes them.

    Parameters
    ----------
    backend : tokenizers.Tokenizer
        The loaded byte-level BPE.
    context_length : int
        Ids per text, the trailing CLS placeholder included (128 for CONCH).
    path : Path, optional
        Where it was loaded from.
    vocab_size : int, optional
        The model's vocabulary (its token embedding's rows). A tokenizer of another size is
        refused: ids past the model's end fail, and ids of another vocabulary that happen to
        fit give scores of the wrong words without a word of warning.

    Raises
    ------
    TokenizerNotFoundError
        When the special tokens are not CONCH's, at CONCH's ids, or the vocabulary is not the
        model's.
    """

    def __init__(
        self,
        backend,
        context_length: int = 128,
        path: Path | None = None,
        vocab_size: int | None = None,
    ) -> None:
        self.backend = backend
        self.context_length = context_length
        self.path = path
        where = f" {str(path)!r}" if path else ""
        added = backend.get_added_tokens_decoder()
        for expected_id, content in enumerate(SPECIAL_TOKENS):
            if expected_id not in added or added[expected_id].content != content:
                raise TokenizerNotFoundError(
                    f"tokenizer{where} does not have {content} at id {expected_id}, as CONCH's has"
                )
        if vocab_size is not None and self.vocab_size != vocab_size:
            raise TokenizerNotFoundError(
                f"tokenizer{where} has {self.vocab_size} ids but the model's vocabulary has "
                f"{vocab_size}: it is not this model's tokenizer (give the one it was trained "
                "with: CONCH's for CONCH, none for the demo model, which brings its own)"
            )
        self.special_ids = frozenset(i for i, token in added.items() if token.special)
        backend.no_padding()
        backend.enable_truncation(max_length=context_length - 1)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, context_length: int = 128, vocab_size: int | None = None
    ) -> Tokenizer:
        """Load a tokenizer JSON (``conch_byte_level_bpe_uncased.json`` or one of its format),
        checked against a model's ``vocab_size`` when given."""
        from tokenizers import Tokenizer as Backend

        path = Path(path)
        if not path.is_file():
            raise TokenizerNotFoundError(f"tokenizer file {str(path)!r} does not exist")
        try:
            backend = Backend.from_file(str(path))
        except Exception as exc:  # the Rust side raises bare Exceptions
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TokenizerNotFoundError(
                f"{str(path)!r} is not a tokenizer JSON file ({first})"
            ) from None
        return cls(backend, context_length=context_length, path=path, vocab_size=vocab_size)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids ``LongTensor [N, context_length]`` for ``texts`` (a string is one text)."""
        if isinstance(texts, str):
            texts = [texts]
        width = self.context_length - 1
        ids = torch.full((len(texts), self.context_length), PAD_ID, dtype=torch.long)
        for row, encoding in enumerate(self.backend.encode_batch(list(texts))):
            tokens = encoding.ids[:width]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids

    __call__ = encode

    def decode(
        self, ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]]
    ) -> list[str] | str:
        """Text of ids: special tokens removed, stops at ``<end_of_text>``, spacing cleaned.

        A 1-d input gives one string, a 2-d input a list of strings.
        """
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        single = not rows or not isinstance(rows[0], list | tuple)
        texts = [self._decode_one(r) for r in ([rows] if single else rows)]
        return texts[0] if single else texts

    def _decode_one(self, ids: Sequence[int]) -> str:
        kept = []
        for i in ids:
            if i == END_ID:
                break
            if i not in self.special_ids:
                kept.append(int(i))
        text = self.backend.decode(kept, skip_special_tokens=True)
        return " ".join(text.split())


def find_tokenizer(
    explicit: str | os.PathLike | None = None, checkpoint: str | None = None
) -> Path:
    """Locate CONCH's tokenizer JSON.

    Looks, in order, at: ``explicit``; the environment variable ``NAPARI_CONCH_TOKENIZER``; an
    installed ``conch`` package (CONCH's code release); the checkpoint's folder.

    Raises
    ------
    TokenizerNotFoundError
        Saying where it looked and how to get the file.
    """
    looked = []
    candidates: list[tuple[str, Path]] = []
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise TokenizerNotFoundError(f"tokenizer file {str(path)!r} does not exist")
        return path
    env = os.environ.get(TOKENIZER_ENV)
    if env:
        candidates.append((f"${TOKENIZER_ENV}", Path(env)))
    spec = importlib.util.find_spec("conch")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        candidates.append(
            ("the conch package", root / "open_clip_custom" / "tokenizers" / TOKENIZER_FILENAME)
        )
    if checkpoint and not str(checkpoint).startswith("hf_hub:"):
        candidates.append(("the checkpoint folder", Path(checkpoint).parent / TOKENIZER_FILENAME))
    for where, path in candidates:
        if path.is_file():
            return path
        looked.append(f"{where} ({path})")
    where = "; ".join(looked) if looked else "no candidate location was set"
    raise TokenizerNotFoundError(
        f"CONCH's tokenizer {TOKENIZER_FILENAME} was not found (looked at: {where}); install "
        f"CONCH's code (pip install git+https://github.com/Mahmoodlab/CONCH) or pass its path "
        f"with --tokenizer / set {TOKENIZER_ENV}"
    )
