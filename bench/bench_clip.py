"""Per-tile speed of the full-size CLIP-family models (QuiltNet, PLIP, KEEP, BiomedCLIP) with
random weights, on CPU.

Usage: ``python bench/bench_clip.py [--tiles 16] [--batch 8] [--only KEEP --only BiomedCLIP]``.
Builds each architecture at full size with random weights (no download), embeds 224 px tiles
through ``LoadedClip.embed_images``'s path (preprocessing + image tower) and prints seconds per
tile (median of the batches after one warm-up batch). QuiltNet-B-16 is the B/16 tower (about 4.4x
the patches); KEEP is a ViT-L/16 (about 3.5x BiomedCLIP's ViT-B/16).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from napari_conch.model.clip_config import ClipConfig, ClipVisionConfig
from napari_conch.model.clip_weights import build_clip
from napari_conch.model.preprocess import Preprocess
from napari_conch.model.towers import build_towers
from napari_conch.model.towers_config import KNOWN_BERTS, from_keep, from_open_clip_towers

ARCHS = {
    "QuiltNet-B-32": ClipConfig(quick_gelu=False),
    "QuiltNet-B-16": ClipConfig(vision=ClipVisionConfig(patch_size=16)),
    "PLIP": ClipConfig(quick_gelu=True),
    "KEEP": from_keep({"model_type": "keep", "projection_dim": 768, "text_config": {}}),
    "BiomedCLIP": from_open_clip_towers(
        {
            "embed_dim": 512,
            "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_pool": ""},
            "text_cfg": {
                "hf_model_name": next(iter(KNOWN_BERTS)),
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": 256,
            },
        }
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--only", action="append", choices=list(ARCHS), help="repeatable")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, config in ARCHS.items():
        if args.only and name not in args.only:
            continue
        build = build_clip if isinstance(config, ClipConfig) else build_towers
        model = build(config, device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
        pre = Preprocess(224, config.mean, config.std)
        tiles = torch.randint(0, 256, (args.batch, 224, 224, 3), dtype=torch.uint8)
        times = []
        with torch.inference_mode():
            model.encode_image(pre(tiles))
            for _ in range(max(1, args.tiles // args.batch)):
                start = time.perf_counter()
                model.encode_image(pre(tiles))
                times.append((time.perf_counter() - start) / args.batch)
        print(f"{name}: {1000 * statistics.median(times):.1f} ms per tile (224 px, fp32)")


if __name__ == "__main__":
    main()
