"""Held-out evaluation of the demo model: tile-level AUC of each concept's prompt.

Tiles of each image's held-out boxes (``tile`` pixels, ``eval_stride`` apart) are labelled as
in training and embedded through :meth:`LoadedModel.embed_images` (the plugin's preprocessing).
For every concept of an image group (H&E nuclei, IHC, whole slide) the cosine of each tile with
the concept's prompt is scored against "this tile has the concept" among the group's labelled
tiles, as a rank-based ROC AUC; the same with the average embedding of all the concept's
captions ("ensemble"), zero-shot accuracy (argmax over the group's prompts) and the share of
greedy captions that name the right concept are reported too.

Run from the repository root: ``python -m train.evaluate_demo [--out metrics.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from train.captions import concept_captions, prompts
from train.images import fixture_path, fixtures_root, read_json, read_rgb
from train.labels import label_map_for
from train.metrics import roc_auc

CAPTION_MAX_LENGTH = 20


def tile_boxes(regions: list[list[int]], tile: int, stride: int) -> np.ndarray:
    """Boxes ``[N, 4]`` of a tile grid laid inside each region (only whole tiles)."""
    out = [
        (x, y, x + tile, y + tile)
        for x0, y0, x1, y1 in regions
        for y in range(y0, y1 - tile + 1, stride)
        for x in range(x0, x1 - tile + 1, stride)
    ]
    return np.asarray(out, np.int64).reshape(-1, 4)


def heldout_tiles(entry: dict, root: Path | None = None):
    """Held-out tiles of one data-list image that have a label of its evaluation group.

    Returns
    -------
    tiles : numpy.ndarray
        ``uint8 [N, tile, tile, 3]``.
    labels : numpy.ndarray
        Concept name of each tile.
    boxes : numpy.ndarray
        ``[N, 4]`` (x0, y0, x1, y1).
    """
    root = root or fixtures_root()
    rgb = read_rgb(fixture_path(entry["file"], root))
    boxes = tile_boxes(entry["heldout_boxes"], entry["tile"], entry["eval_stride"])
    labels = label_map_for(entry, rgb, root).labels(boxes)
    keep = labels != ""
    boxes, labels = boxes[keep], labels[keep]
    tiles = np.stack([rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes])
    return tiles, labels, boxes


def text_embeddings(model, data_list: dict) -> tuple[dict, dict]:
    """Per concept: the prompt's embedding and the re-normalised mean of all its captions."""
    names = prompts(data_list)
    single = dict(zip(names, model.embed_texts(list(names.values())), strict=True))
    ensemble = {}
    for name, texts in concept_captions(data_list).items():
        mean = model.embed_texts(texts).mean(dim=0)
        ensemble[name] = mean / mean.norm()
    return single, ensemble


def embed_tiles(model, tiles: np.ndarray, batch: int = 128) -> torch.Tensor:
    """Normalised image embeddings of tiles, in batches."""
    return torch.cat(
        [model.embed_images(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    )


def caption_concept(text: str, data_list: dict) -> str:
    """The concept whose longest synonym occurs in ``text`` (``""``: none)."""
    best, length = "", 0
    for name, concept in data_list["concepts"].items():
        for word in concept["synonyms"]:
            if word in text and len(word) > length:
                best, length = name, len(word)
    return best


def evaluate_group(model, data_list, concepts, parts, texts, captions: bool) -> dict:
    """Metrics of one image group; ``parts`` are ``(tiles, labels)`` of its images."""
    single, ensemble = texts
    kept = [(t[np.isin(lab, concepts)], lab[np.isin(lab, concepts)]) for t, lab in parts]
    image = torch.cat([embed_tiles(model, t) for t, _ in kept if len(t)])
    labels = np.concatenate([lab for _, lab in kept])
    result: dict = {"tiles": {c: int((labels == c).sum()) for c in concepts}, "concepts": {}}
    for concept in concepts:
        entry = {"prompt": data_list["concepts"][concept]["prompt"]}
        for key, table in (("auc_prompt", single), ("auc_ensemble", ensemble)):
            scores = (image @ table[concept]).numpy()
            entry[key] = round(roc_auc(scores, labels == concept), 4)
        target = data_list["evaluation"]["targets"].get(concept)
        if target is not None:
            entry["target"] = target
            entry["met"] = entry["auc_prompt"] >= target
        result["concepts"][concept] = entry
    prompt_matrix = torch.stack([single[c] for c in concepts])
    predicted = np.asarray(concepts)[(image @ prompt_matrix.T).argmax(dim=1).numpy()]
    result["zero_shot_accuracy"] = round(float((predicted == labels).mean()), 4)
    if captions:
        texts_out = [text for t, _ in kept if len(t) for text in caption_tiles(model, t)]
        named = np.asarray([caption_concept(t, data_list) for t in texts_out])
        result["caption_accuracy"] = round(float((named == labels).mean()), 4)
        result["caption_examples"] = {
            c: texts_out[int(np.flatnonzero(labels == c)[0])]
            for c in concepts
            if (labels == c).any()
        }
    return result


def caption_tiles(model, tiles: np.ndarray, batch: int = 128) -> list[str]:
    """Greedy captions of tiles."""
    from napari_conch.model.generation import GenerationConfig

    cfg = GenerationConfig(strategy="greedy", max_length=CAPTION_MAX_LENGTH, min_length=2)
    return [
        text
        for i in range(0, len(tiles), batch)
        for text in model.caption(tiles[i : i + batch], cfg)
    ]


def evaluate(model, data_list: dict | None = None, root: Path | None = None, captions=True) -> dict:
    """Held-out metrics of ``model`` (a :class:`~napari_conch.model.LoadedModel`) per group."""
    data_list = data_list or read_json()
    texts = text_embeddings(model, data_list)
    groups: dict[str, list] = {}
    for entry in data_list["images"]:
        tiles, labels, _ = heldout_tiles(entry, root)
        groups.setdefault(entry["labels"]["kind"], []).append((entry["name"], tiles, labels))
    out = {}
    for kind, concepts in data_list["evaluation"]["groups"].items():
        parts = [(t, lab) for _, t, lab in groups[kind]]
        result = evaluate_group(model, data_list, concepts, parts, texts, captions)
        result["images"] = [name for name, _, _ in groups[kind]]
        out[kind] = result
    return out


def summary_table(metrics: dict) -> str:
    """A Markdown table of the AUCs (for the log and the model card)."""
    rows = [
        "| group | concept | prompt | tiles +/- | AUC (prompt) | AUC (ensemble) | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, group in metrics.items():
        total = sum(group["tiles"].values())
        for concept, m in group["concepts"].items():
            n_pos = group["tiles"][concept]
            target = (
                f">= {m['target']} ({'met' if m['met'] else 'missed'})" if "target" in m else "-"
            )
            rows.append(
                f'| {kind} | {concept} | "{m["prompt"]}" | {n_pos}/{total - n_pos} | '
                f"{m['auc_prompt']:.3f} | {m['auc_ensemble']:.3f} | {target} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Evaluate the shipped demo model (or given files) and print/write the metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the metrics JSON here")
    parser.add_argument("--no-captions", action="store_true", help="skip caption generation")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    from napari_conch.demo import load_demo_model

    metrics = evaluate(load_demo_model(device="cpu"), captions=not args.no_captions)
    print(summary_table(metrics))
    if args.out:
        args.out.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
