"""Train the napari-conch demo CoCa on the real fixture images, then evaluate it.

1. Train a byte-level BPE tokenizer on the captions and a general histology word list.
2. Draw labelled random crops of every image's training boxes (``train/data.json``; held-out
   boxes are never read for training).
3. Train a small CoCa (``train/config.json``) with CoCa's loss: symmetric InfoNCE over the batch
   with the learned temperature (clamped at 100) plus captioning cross-entropy of the decoder
   (padding ignored). fp32 on the CPU, seeds fixed.
4. Write the weights (float16), config and tokenizer to ``src/napari_conch/demo/data/``, evaluate
   on the held-out boxes (:mod:`train.evaluate_demo`) and write ``demo_metrics.json`` there.

Run from the repository root: ``python -m train.train_demo`` (about 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train.captions import concept_captions, sample_captions
from train.images import CONFIG, REPO_ROOT, fixture_path, fixtures_root, read_json, read_rgb
from train.labels import label_map_for
from train.sampling import augmented_input, draw_candidates, sample_batch
from train.tokenizer_training import train_tokenizer, word_list

OUT_DIR = REPO_ROOT / "src" / "napari_conch" / "demo" / "data"


def coca_loss(out: dict, weights: dict) -> tuple[torch.Tensor, float, float]:
    """CoCa's loss: weighted symmetric InfoNCE plus captioning cross-entropy (pad ignored)."""
    logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T
    target = torch.arange(logits.shape[0])
    contrastive = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    caption = F.cross_entropy(out["logits"].permute(0, 2, 1), out["labels"], ignore_index=0)
    total = weights["contrastive_weight"] * contrastive + weights["caption_weight"] * caption
    return total, float(contrastive.detach()), float(caption.detach())


def learning_rate(step: int, opt: dict) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    if step < opt["warmup_steps"]:
        return opt["lr"] * (step + 1) / opt["warmup_steps"]
    progress = (step - opt["warmup_steps"]) / max(1, opt["steps"] - opt["warmup_steps"])
    floor = opt["min_lr_ratio"]
    return opt["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer_for(model: torch.nn.Module, opt: dict) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms, biases, embeddings, queries and the temperature."""
    no_decay = ("embed", "query", "cls", "logit_scale")
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not any(k in name for k in no_decay) else rest).append(p)
    groups = [
        {"params": decay, "weight_decay": opt["weight_decay"]},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=opt["lr"], betas=(0.9, 0.98), eps=1e-6)


def build_tokenizer(data_list: dict, vocab_size: int, out_dir: Path) -> Path:
    """Train and save the tokenizer; return its path."""
    captions = concept_captions(data_list)
    texts = [c for texts in captions.values() for c in texts] + word_list()
    path = out_dir / "demo_tokenizer.json"
    train_tokenizer(texts, vocab_size).save(str(path))
    return path


def model_config(config: dict, vocab_size: int) -> dict:
    """The architecture with the tokenizer's vocabulary size filled in."""
    model = json.loads(json.dumps(config["model"]))
    model["text_cfg"]["vocab_size"] = vocab_size
    model["multimodal_cfg"]["vocab_size"] = vocab_size
    return model


def train(args: argparse.Namespace) -> dict:
    """The whole run; returns the training record (also written into the metrics)."""
    from napari_conch.model import Tokenizer, build_model

    data_list, config = read_json(), read_json(CONFIG)
    opt = dict(config["optimisation"], **({"steps": args.steps} if args.steps else {}))
    torch.set_num_threads(opt["threads"])
    seeds = data_list["seeds"]
    torch.manual_seed(seeds["training"])
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    tok_path = build_tokenizer(data_list, config["tokenizer"]["vocab_size"], out_dir)
    arch = model_config(config, Tokenizer.from_file(tok_path).vocab_size)
    tokenizer = Tokenizer.from_file(tok_path, arch["text_cfg"]["context_length"])
    (out_dir / "demo_coca.json").write_text(json.dumps(arch, indent=2) + "\n", encoding="utf-8")

    root = fixtures_root()
    entries = data_list["images"]
    images = [read_rgb(fixture_path(e["file"], root)) for e in entries]
    label_maps = [label_map_for(e, rgb, root) for e, rgb in zip(entries, images, strict=True)]
    augment = data_list["augmentation"]
    rng = np.random.default_rng(seeds["candidates"])
    candidates = draw_candidates(entries, label_maps, augment["scale_range"], rng)
    print("candidate crops per concept:", candidates.counts(), flush=True)
    concepts = list(data_list["concepts"])
    missing = [c for c in concepts if not candidates.by_concept.get(c)]
    if missing:
        raise RuntimeError(f"no training crops for {missing}: check the data list")
    captions = concept_captions(data_list)

    model = build_model(arch).train()
    optimizer = optimizer_for(model, opt)
    rng = np.random.default_rng(seeds["training"])
    size = arch["vision_cfg"]["image_size"]
    log = []
    for step in range(opt["steps"]):
        chosen, picks = sample_batch(candidates, concepts, opt["batch_size"], rng)
        x = augmented_input(images, picks, size, augment, rng)
        tokens = tokenizer.encode(sample_captions(chosen, captions, rng))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, opt)
        loss, contrastive, caption = coca_loss(model(x, tokens), opt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt["grad_clip"])
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(opt["max_logit_scale"]))
        if step % 25 == 0 or step == opt["steps"] - 1:
            entry = {
                "step": step,
                "loss": round(float(loss.detach()), 4),
                "contrastive": round(contrastive, 4),
                "caption": round(caption, 4),
                "logit_scale": round(float(model.logit_scale.exp()), 2),
                "seconds": round(time.perf_counter() - started, 1),
            }
            log.append(entry)
            print(entry, flush=True)

    state = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
    torch.save(state, out_dir / "demo_coca.pt")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "steps": opt["steps"],
        "optimisation": opt,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": tokenizer.vocab_size,
        "candidate_crops": candidates.counts(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}",
        "log": log,
    }


def main(argv: list[str] | None = None) -> int:
    """Train, save, evaluate and write ``demo_metrics.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="override the number of steps (trials)")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where to write the model")
    parser.add_argument("--no-captions", action="store_true", help="skip caption evaluation")
    args = parser.parse_args(argv)
    record = train(args)
    print(f"trained in {record['seconds']:.0f} s; evaluating on the held-out boxes", flush=True)

    from napari_conch.demo import DEMO_MODEL_NAME
    from napari_conch.model import clear_model_cache, load_model
    from train.evaluate_demo import evaluate, summary_table

    out_dir = Path(args.out_dir)
    clear_model_cache()
    model = load_model(
        out_dir / "demo_coca.pt",
        config=out_dir / "demo_coca.json",
        tokenizer=out_dir / "demo_tokenizer.json",
        device="cpu",
    )
    model.model.float()  # the weights are stored as float16
    metrics = evaluate(model, captions=not args.no_captions)
    print(summary_table(metrics))
    result = {"model": DEMO_MODEL_NAME, "heldout": metrics, "training": record}
    path = out_dir / "demo_metrics.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
