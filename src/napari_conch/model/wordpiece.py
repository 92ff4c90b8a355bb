"""BERT's WordPiece tokenizer through the HF ``tokenizers`` library, as transformers runs it.

KEEP and BiomedCLIP tokenise with transformers' ``BertTokenizer(Fast)``: the text is normalised
(control characters dropped, whitespace to spaces, CJK characters spaced, lower-cased and accents
stripped for an uncased vocabulary), split on whitespace and punctuation, each word cut into the
longest vocabulary pieces (``##`` marks a continuation; a word of more than 100 characters or with
no piece is ``[UNK]``), wrapped as ``[CLS] ... [SEP]``, truncated to the context length and padded
with ``[PAD]`` (``padding="max_length"``). ``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]`` and
``[MASK]`` written in a text are those special tokens, as in transformers.

The vocabulary is the model folder's ``vocab.txt`` (one token per line, the line number is the
id) with the options of its ``tokenizer_config.json`` (``do_lower_case``, ``strip_accents``,
``tokenize_chinese_chars``); without ``vocab.txt``, its ``tokenizer.json`` (what transformers 5
saves), lower-casing forced on or off where the model's code asks (KEEP: ``do_lower_case=True``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from napari_conch.errors import TokenizerNotFoundError

VOCAB_FILE = "vocab.txt"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def read_vocab(path: Path) -> dict[str, int]:
    """``vocab.txt``: token -> id (its line number), as transformers reads it."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerNotFoundError(f"cannot read the vocabulary {str(path)!r}: {exc}") from None
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for index, token in enumerate(lines):
        vocab[token.rstrip("\r")] = index
    return vocab


def _options(folder: Path) -> dict:
    path = folder / TOKENIZER_CONFIG
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerNotFoundError(f"cannot read {str(path)!r}: {exc}") from None
    return data if isinstance(data, dict) else {}


def wordpiece_backend(
    vocab: dict[str, int],
    lowercase: bool = True,
    strip_accents: bool | None = None,
    chinese_chars: bool = True,
):
    """A ``tokenizers.Tokenizer`` equal to transformers' conversion of a BERT vocabulary."""
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    missing = [s for s in SPECIALS[:4] if s not in vocab]
    if missing:
        raise TokenizerNotFoundError(f"the BERT vocabulary lacks {', '.join(missing)}")
    backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=chinese_chars,
        strip_accents=strip_accents,
        lowercase=lowercase,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    backend.add_special_tokens(
        [AddedToken(s, special=True, normalized=False) for s in SPECIALS if s in vocab]
    )
    return backend


def _force_lowercase(backend, lowercase: bool) -> None:
    """Rebuild a ``tokenizer.json``'s BERT normaliser with ``lowercase`` (as transformers does
    for ``do_lower_case=...`` given at loading)."""
    from tokenizers import normalizers

    if backend.normalizer is None:
        return
    state = json.loads(backend.normalizer.__getstate__())
    if state.get("type") == "BertNormalizer" and state.get("lowercase") != lowercase:
        state.pop("type")
        state["lowercase"] = lowercase
        backend.normalizer = normalizers.BertNormalizer(**state)


class WordPieceTokenizer:
    """Texts -> BERT token ids ``[N, context_length]`` and their attention mask.

    Parameters
    ----------
    backend : tokenizers.Tokenizer
        The WordPiece pipeline (:func:`wordpiece_backend`, or a ``tokenizer.json``).
    context_length : int
        Ids per text (KEEP and BiomedCLIP: 256).
    path : Path, optional
        The file it came from.
    vocab_size : int, optional
        The model's vocabulary; a tokenizer with ids beyond it is refused.
    clean : callable, optional
        Applied to each text first (BiomedCLIP: open_clip's whitespace cleaning).
    """

    def __init__(
        self,
        backend,
        context_length: int,
        path: Path | None = None,
        vocab_size: int | None = None,
        clean=None,
    ) -> None:
        self.backend = backend
        self.context_length = context_length
        self.path = path
        self.clean = clean
        where = f" {str(path)!r}" if path else ""
        self.pad_id = backend.token_to_id("[PAD]")
        if self.pad_id is None:
            raise TokenizerNotFoundError(f"BERT tokenizer{where} lacks [PAD]")
        if vocab_size is not None and backend.get_vocab_size() > vocab_size:
            raise TokenizerNotFoundError(
                f"BERT tokenizer{where} has {backend.get_vocab_size()} ids but the model's "
                f"vocabulary has {vocab_size}: it is not this model's tokenizer"
            )
        backend.enable_truncation(context_length)
        backend.enable_padding(length=context_length, pad_id=self.pad_id, pad_token="[PAD]")

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike,
        context_length: int,
        vocab_size: int | None = None,
        lowercase: bool | None = None,
        clean=None,
    ) -> WordPieceTokenizer:
        """The tokenizer of a model folder (``vocab.txt``, else ``tokenizer.json``);
        ``lowercase`` overrides ``do_lower_case`` (KEEP's code passes ``do_lower_case=True``).

        Raises
        ------
        TokenizerNotFoundError
            When the folder has neither file, or one is unreadable.
        """
        folder = Path(folder)
        vocab_path = folder / VOCAB_FILE
        if vocab_path.is_file():
            options = _options(folder)
            lower = bool(options.get("do_lower_case", True)) if lowercase is None else lowercase
            backend = wordpiece_backend(
                read_vocab(vocab_path),
                lowercase=lower,
                strip_accents=options.get("strip_accents"),
                chinese_chars=bool(options.get("tokenize_chinese_chars", True)),
            )
            return cls(backend, context_length, vocab_path, vocab_size, clean)
        json_path = folder / TOKENIZER_JSON
        if json_path.is_file():
            from tokenizers import Tokenizer

            try:
                backend = Tokenizer.from_file(str(json_path))
            except Exception as exc:  # tokenizers raises plain Exceptions for bad files
                raise TokenizerNotFoundError(f"cannot read {str(json_path)!r}: {exc}") from None
            if lowercase is not None:
                _force_lowercase(backend, lowercase)
            return cls(backend, context_length, json_path, vocab_size, clean)
        raise TokenizerNotFoundError(
            f"{str(folder)!r} has no BERT tokenizer ({VOCAB_FILE} or {TOKENIZER_JSON})"
        )

    @property
    def vocab_size(self) -> int:
        """Ids in the vocabulary (special tokens included)."""
        return self.backend.get_vocab_size()

    def encode_with_mask(self, texts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids ``[N, context_length]`` (int64) and the attention mask (1: a token, 0: padding)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self.clean is not None:
            texts = [self.clean(t) for t in texts]
        out = self.backend.encode_batch(texts)
        ids = torch.tensor([e.ids for e in out], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in out], dtype=torch.long)
        return ids.reshape(len(texts), -1), mask.reshape(len(texts), -1)

    def encode(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Ids ``[N, context_length]`` (int64)."""
        return self.encode_with_mask(texts)[0]
