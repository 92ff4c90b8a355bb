"""Train the demo model's own byte-level BPE tokenizer (CONCH's tokenizer is not shipped).

The JSON has the form of CONCH's ``conch_byte_level_bpe_uncased.json`` so that
:class:`napari_conch.model.Tokenizer` loads it: NFD + StripAccents + Lowercase normaliser,
ByteLevel pre-tokenizer (with a prefix space) and decoder, ``<pad>``, ``<start_of_text>`` and
``<end_of_text>`` as ids 0, 1, 2, and a ``<start_of_text> $A <end_of_text>`` post-processor.
"""

from __future__ import annotations

from pathlib import Path

from napari_conch.model.tokenizer import SPECIAL_TOKENS

WORD_LIST = Path(__file__).resolve().parent / "histology_words.txt"


def word_list(path: Path = WORD_LIST) -> list[str]:
    """The general histology terms (comments and blank lines dropped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE trained on ``texts`` (deterministic for the same texts).

    Returns
    -------
    tokenizers.Tokenizer
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    start, end = SPECIAL_TOKENS[1], SPECIAL_TOKENS[2]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}",
        special_tokens=[(start, tok.token_to_id(start)), (end, tok.token_to_id(end))],
    )
    return tok
