"""Caption generation with CoCa's multimodal decoder: greedy, beam search and sampling.

The loop follows CONCH's reference generation (open_clip's CoCa ``generate``): the image is encoded
once; at each step the whole prefix runs through the text tower (every id used, CLS appended) and
the decoder; the end token is forbidden until ``min_length`` ids exist and forced at
``max_length``; finished rows are padded. Logit processing is applied in the reference's order:
minimum length, repetition penalty, then top-k / top-p filtering, then temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_conch.errors import InputError, NoDecoderError
from napari_conch.model.coca import CoCa
from napari_conch.model.config import GenerationConfig
from napari_conch.model.tokenizer import END_ID, PAD_ID, START_ID

__all__ = ["GenerationConfig", "filter_logits", "generate", "process_logits"]


def process_logits(
    logits: torch.Tensor, prefix: torch.Tensor, cfg: GenerationConfig
) -> torch.Tensor:
    """Minimum length and repetition penalty (the processors every strategy uses)."""
    logits = logits.clone()
    if prefix.shape[1] < cfg.min_length:
        logits[:, END_ID] = float("-inf")
    if cfg.repetition_penalty != 1.0:
        seen = torch.gather(logits, 1, prefix)
        seen = torch.where(seen < 0, seen * cfg.repetition_penalty, seen / cfg.repetition_penalty)
        logits.scatter_(1, prefix, seen)
    return logits


def filter_logits(logits: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """Top-k or top-p filtering: removed candidates get ``-inf``."""
    if cfg.strategy == "top_k":
        k = min(cfg.top_k, logits.shape[-1])
        threshold = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < threshold, float("-inf"))
    if cfg.strategy == "top_p":
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative > cfg.top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses top_p
        remove[..., 0] = False
        return logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return logits


@torch.inference_mode()
def generate(
    model: CoCa,
    images: torch.Tensor,
    cfg: GenerationConfig | None = None,
    *,
    allow_untrained_decoder: bool = False,
) -> torch.Tensor:
    """Caption ids ``[B, L]`` (``L <= max_length``; finished rows padded with ``<pad>``).

    Raises
    ------
    NoDecoderError
        When the model's decoder weights were never loaded (the public CONCH checkpoint), unless
        ``allow_untrained_decoder`` (tests of the mechanics only).
    """
    cfg = cfg or GenerationConfig()
    if not model.decoder_trained and not allow_untrained_decoder:
        raise NoDecoderError(
            "this checkpoint has no captioning decoder weights (the public CONCH release ships "
            "none), so it cannot caption; image-text retrieval still works"
        )
    _, caption_tokens = model.image_tokens(images)
    if cfg.strategy == "beam" and cfg.num_beams > 1:
        return _beam_search(model, caption_tokens, cfg)
    return _sample(model, caption_tokens, cfg)


def _context(model: CoCa) -> int:
    return model.config.text.context_length - 1  # the CLS token takes one position


def _sample(model: CoCa, caption_tokens: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    batch, device = caption_tokens.shape[0], caption_tokens.device
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    out = torch.full((batch, 1), START_ID, dtype=torch.long, device=device)
    while out.shape[1] < cfg.max_length:
        finished = (out[:, -1] == END_ID) | (out[:, -1] == PAD_ID)
        if finished.all():
            break
        nxt = torch.full((batch,), PAD_ID, dtype=torch.long, device=device)
        active = ~finished
        if out.shape[1] + 1 == cfg.max_length:
            nxt[active] = END_ID
        else:
            prefix = out[active][:, -_context(model) :]
            logits = model.decode(caption_tokens[active], prefix)[:, -1].float()
            logits = filter_logits(process_logits(logits, prefix, cfg), cfg)
            if cfg.strategy in ("greedy", "beam"):
                nxt[active] = logits.argmax(-1)
            else:
                # the best candidate at 0, in float64: any temperature > 0 gives -inf or 0,
                # never inf - inf (a tiny one is greedy decoding, as it should be)
                best = logits.max(dim=-1, keepdim=True).values
                probs = F.softmax((logits - best).double() / cfg.temperature, dim=-1)
                nxt[active] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        out = torch.cat([out, nxt[:, None]], dim=1)
    return out


def _beam_search(model: CoCa, caption_tokens: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """Beam search per image; hypotheses scored by summed log-probability / length."""
    results = []
    for i in range(caption_tokens.shape[0]):
        results.append(_beam_one(model, caption_tokens[i : i + 1], cfg))
    width = max(r.numel() for r in results)
    out = torch.full((len(results), width), PAD_ID, dtype=torch.long, device=caption_tokens.device)
    for i, r in enumerate(results):
        out[i, : r.numel()] = r
    return out


def _beam_one(model: CoCa, caption_tokens: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    device = caption_tokens.device
    beams = torch.full((1, 1), START_ID, dtype=torch.long, device=device)
    scores = torch.zeros(1, device=device)
    done: list[tuple[float, torch.Tensor]] = []
    while beams.shape[1] < cfg.max_length and beams.numel():
        if beams.shape[1] + 1 == cfg.max_length:
            for seq, score in zip(beams, scores, strict=True):
                ended = torch.cat([seq, seq.new_tensor([END_ID])])
                done.append((score.item() / ended.numel(), ended))
            break
        prefix = beams[:, -_context(model) :]
        logits = model.decode(caption_tokens.expand(beams.shape[0], -1, -1), prefix)[:, -1]
        logp = F.log_softmax(process_logits(logits.float(), prefix, cfg), dim=-1)
        total = (scores[:, None] + logp).flatten()
        top = torch.topk(total, min(2 * cfg.num_beams, total.numel()))
        vocab = logp.shape[-1]
        next_beams, next_scores = [], []
        for score, flat in zip(top.values, top.indices, strict=True):
            if not torch.isfinite(score):
                continue
            seq = torch.cat([beams[flat // vocab], (flat % vocab).view(1)])
            if seq[-1].item() == END_ID:
                done.append((score.item() / seq.numel(), seq))
            else:
                next_beams.append(seq)
                next_scores.append(score)
            if len(next_beams) == cfg.num_beams:
                break
        if len(done) >= cfg.num_beams or not next_beams:
            break
        beams, scores = torch.stack(next_beams), torch.stack(next_scores)
    if not done:  # every continuation had a non-finite score (extreme settings)
        raise InputError(
            f"beam search found no caption with a finite score (repetition_penalty="
            f"{cfg.repetition_penalty:g}); try values nearer the defaults"
        )
    return max(done, key=lambda item: item[0])[1]
