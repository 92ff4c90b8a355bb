"""CLIP's byte-level BPE through the HF ``tokenizers`` library, as each model's library runs it.

Two flavours, one per reference library:

- **open_clip** (QuiltNet): open_clip's ``SimpleTokenizer`` with ``clean="lower"``. The text is
  cleaned in Python as open_clip cleans it (``ftfy.fix_text``, HTML entities unescaped twice,
  whitespace runs collapsed, stripped, lower-cased), then split with CLIP's pattern (special
  tokens ``<start_of_text>``/``<end_of_text>``, contractions, letter runs, single digits, runs of
  other symbols), mapped byte by byte to printable characters and merged with the BPE of
  ``bpe_simple_vocab_16e6.txt.gz`` (shipped in ``napari_conch/model/data``; MIT). A text becomes
  ``<start_of_text> ... <end_of_text>`` truncated to 77 ids (the last one made
  ``<end_of_text>``) and padded with 0.
- **transformers** (PLIP): ``CLIPTokenizer``. The model folder's ``tokenizer.json`` is used as it
  is; without one, ``vocab.json`` and ``merges.txt`` are assembled the way transformers'
  ``CLIPTokenizer`` assembles them (NFC, whitespace runs to one space, lower case, CLIP's split
  pattern with ``<|startoftext|>``/``<|endoftext|>``, byte-level). Texts are padded with
  ``<|endoftext|>``, as transformers pads them.

Either way the pooled position of the text tower (the end-of-text token) sees exactly the ids the
reference gives it.
"""

from __future__ import annotations

import gzip
import html
import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from napari_conch.errors import TokenizerNotFoundError
from napari_conch.model.clip_config import OPEN_CLIP, TRANSFORMERS

#: CLIP's vocabulary as open_clip ships it (see ``napari_conch/model/data/README.md``).
BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: Merges CLIP uses from that file (the vocabulary is 256 bytes x 2 + merges + 2 specials).
CLIP_MERGES = 49152 - 256 - 2
#: CLIP's split pattern, after its special tokens (``tokenizers``' Oniguruma syntax).
_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
OPEN_CLIP_SPECIALS = ("<start_of_text>", "<end_of_text>")
HF_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
_WHITESPACE = re.compile(r"\s+")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, in its order: the printable Latin-1 bytes
    (mapped to themselves) first, then the other bytes, mapped to code points from 256 on.

    The order matters: CLIP's vocabulary lists the characters in it.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    table = {byte: chr(byte) for byte in keep}
    others = [byte for byte in range(256) if byte not in table]
    table.update({byte: chr(256 + n) for n, byte in enumerate(others)})
    return table


def clip_vocab(path: str | os.PathLike | None = None) -> tuple[dict[str, int], list[tuple]]:
    """CLIP's vocabulary and merges from ``bpe_simple_vocab_16e6.txt.gz`` (default: the shipped
    copy), with open_clip's special tokens at ids 49406 and 49407."""
    if path is None:
        path = resources.files("napari_conch.model") / "data" / BPE_VOCAB_FILE
    with gzip.open(path) as fh:  # type: ignore[arg-type]
        lines = fh.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : CLIP_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += list(OPEN_CLIP_SPECIALS)
    return {token: i for i, token in enumerate(tokens)}, merges


def _backend(vocab: dict[str, int], merges: list[tuple], specials: Sequence[str], hf: bool):
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token=specials[1] if hf else None,
        )
    )
    if hf:  # transformers' CLIPTokenizer
        backend.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
    pattern = "|".join(re.escape(s) for s in specials) + "|" + _SPLIT
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=hf),
        ]
    )
    backend.add_special_tokens([AddedToken(s, special=True, normalized=not hf) for s in specials])
    return backend


def open_clip_clean(text: str, lower: bool = True) -> str:
    """open_clip's ``clean="lower"``: ftfy, HTML entities unescaped twice, whitespace collapsed,
    stripped, lower-cased (``lower=False``: its ``clean="whitespace"``, the same but the case).

    Raises
    ------
    TokenizerNotFoundError
        When ``ftfy`` is not installed (open_clip's cleaning needs it; without it some texts would
        get other ids than open_clip gives them).
    """
    try:
        import ftfy
    except ImportError:
        raise TokenizerNotFoundError(
            "open_clip's tokenizer cleans texts with ftfy, which is not installed: pip install ftfy"
        ) from None
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = _WHITESPACE.sub(" ", text).strip()
    return text.lower() if lower else text


class ClipTokenizer:
    """Texts -> CLIP token ids ``[N, context_length]``, as open_clip or transformers makes them.

    Parameters
    ----------
    backend : tokenizers.Tokenizer
        The BPE with its normaliser and pre-tokeniser (no post-processor is used).
    flavour : str
        ``"open_clip"`` or ``"transformers"``.
    context_length : int
        Ids per text (77).
    path : Path, optional
        The file it came from (``None``: the shipped vocabulary).
    vocab_size : int, optional
        The model's vocabulary; a tokenizer of another size is refused.
    """

    def __init__(
        self,
        backend,
        flavour: str,
        context_length: int = 77,
        path: Path | None = None,
        vocab_size: int | None = None,
    ) -> None:
        self.backend = backend
        self.flavour = flavour
        self.context_length = context_length
        self.path = path
        specials = OPEN_CLIP_SPECIALS if flavour == OPEN_CLIP else HF_SPECIALS
        ids = [backend.token_to_id(s) for s in specials]
        where = f" {str(path)!r}" if path else ""
        if None in ids:
            raise TokenizerNotFoundError(f"CLIP tokenizer{where} lacks {' or '.join(specials)}")
        self.sot_id, self.eot_id = ids
        self.pad_id = 0 if flavour == OPEN_CLIP else self.eot_id
        if vocab_size is not None and self.vocab_size != vocab_size:
            raise TokenizerNotFoundError(
                f"CLIP tokenizer{where} has {self.vocab_size} ids but the model's vocabulary "
                f"has {vocab_size}: it is not this model's tokenizer"
            )
        backend.no_padding()
        backend.no_truncation()

    @classmethod
    def open_clip(cls, context_length: int = 77, vocab_size: int | None = None) -> ClipTokenizer:
        """open_clip's default tokenizer (QuiltNet's), from the shipped vocabulary."""
        vocab, merges = clip_vocab()
        backend = _backend(vocab, merges, OPEN_CLIP_SPECIALS, hf=False)
        return cls(backend, OPEN_CLIP, context_length, None, vocab_size)

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, context_length: int = 77, vocab_size: int | None = None
    ) -> ClipTokenizer:
        """transformers' ``CLIPTokenizer`` of a model folder: ``tokenizer.json``, else
        ``vocab.json`` + ``merges.txt``.

        Raises
        ------
        TokenizerNotFoundError
            When the folder has neither, or they cannot be read.
        """
        from tokenizers import Tokenizer

        folder = Path(folder)
        single = folder / "tokenizer.json"
        try:
            if single.is_file():
                return cls(
                    Tokenizer.from_file(str(single)), TRANSFORMERS, context_length, single,
                    vocab_size,
                )  # fmt: skip
            vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
            if not (vocab_file.is_file() and merges_file.is_file()):
                raise TokenizerNotFoundError(
                    f"{str(folder)!r} has no tokenizer.json, nor vocab.json and merges.txt "
                    "(the files of the model's Hugging Face repository)"
                )
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
            lines = merges_file.read_text(encoding="utf-8").split("\n")
            merges = [
                tuple(line.split()) for line in lines if line and not line.startswith("#version")
            ]
            backend = _backend(vocab, merges, HF_SPECIALS, hf=True)
            return cls(backend, TRANSFORMERS, context_length, vocab_file, vocab_size)
        except TokenizerNotFoundError:
            raise
        except Exception as exc:  # the Rust side and json raise various errors
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TokenizerNotFoundError(
                f"the tokenizer files of {str(folder)!r} cannot be read ({first})"
            ) from None

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def ids(self, text: str) -> list[int]:
        """One text's ids: start, BPE ids, end; truncated to ``context_length`` keeping the end."""
        if self.flavour == OPEN_CLIP:
            text = open_clip_clean(text)
        body = self.backend.encode(text, add_special_tokens=False).ids
        out = [self.sot_id, *body, self.eot_id]
        if len(out) > self.context_length:
            out = [*out[: self.context_length - 1], self.eot_id]
        return out

    def encode(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids ``LongTensor [N, context_length]`` (a string is one text)."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.ids(text)
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    __call__ = encode

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of one row of ids (special tokens and padding dropped)."""
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        kept = [i for i in rows if i not in (self.sot_id, self.eot_id, 0)]
        text = self.backend.decode(kept, skip_special_tokens=True)
        return " ".join(text.replace("</w>", " ").split())
