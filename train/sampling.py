"""Training samples: labelled random crops of the training boxes, augmented, as model input.

Candidates are drawn once (random square boxes of ``tile x scale`` inside a training box, so
never touching a held-out box) and labelled with the image's :class:`~train.labels.LabelMap`;
batches then pick concepts uniformly, a candidate of that concept, and augment it: a random
flip and right-angle rotation, then brightness, per-channel gain and saturation jitter. Crops are
resized to the model's input size by the plugin's own preprocessing resize, so training and use
see the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_conch.model.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, resize_center_crop
from train.labels import LabelMap


@dataclass
class Candidates:
    """Labelled boxes of every image, grouped by concept: ``{concept: [(image, box), ...]}``."""

    by_concept: dict[str, list[tuple[int, np.ndarray]]]

    def counts(self) -> dict[str, int]:
        """Number of candidate boxes per concept."""
        return {c: len(v) for c, v in self.by_concept.items()}


def random_boxes(
    boxes: list[list[int]], tile: int, scale_range: tuple[float, float], n: int, rng
) -> np.ndarray:
    """``n`` random square boxes ``[n, 4]`` of side ``tile * scale``, each inside one of ``boxes``.

    A region is drawn with probability proportional to the area where a box can be placed.
    """
    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    sides = np.rint(tile * np.exp(rng.uniform(lo, hi, n))).astype(np.int64)
    regions = np.asarray(boxes, np.int64)
    room = np.maximum(regions[:, 2:] - regions[:, :2] - tile * scale_range[1], 1).prod(axis=1)
    which = rng.choice(len(regions), size=n, p=room / room.sum())
    x0, y0, x1, y1 = regions[which].T
    sides = np.minimum(sides, np.minimum(x1 - x0, y1 - y0))
    x = x0 + (rng.random(n) * (x1 - x0 - sides + 1)).astype(np.int64)
    y = y0 + (rng.random(n) * (y1 - y0 - sides + 1)).astype(np.int64)
    return np.stack([x, y, x + sides, y + sides], axis=1)


def draw_candidates(
    entries: list[dict], label_maps: list[LabelMap], scale_range, rng
) -> Candidates:
    """Label random training boxes of every image and group them by concept."""
    by_concept: dict[str, list[tuple[int, np.ndarray]]] = {}
    for index, (entry, labels) in enumerate(zip(entries, label_maps, strict=True)):
        boxes = random_boxes(
            entry["train_boxes"], entry["tile"], scale_range, entry["candidates"], rng
        )
        for box, concept in zip(boxes, labels.labels(boxes), strict=True):
            if concept:
                by_concept.setdefault(str(concept), []).append((index, box))
    return Candidates(by_concept)


def sample_batch(
    candidates: Candidates, concepts: list[str], batch: int, rng
) -> tuple[list[str], list[tuple[int, np.ndarray]]]:
    """``batch`` concepts drawn uniformly from ``concepts`` and one candidate box of each."""
    chosen = [concepts[i] for i in rng.integers(len(concepts), size=batch)]
    picks = []
    for concept in chosen:
        pool = candidates.by_concept[concept]
        picks.append(pool[rng.integers(len(pool))])
    return chosen, picks


def augmented_input(
    images: list[np.ndarray], picks, image_size: int, augment: dict, rng
) -> torch.Tensor:
    """Crop, augment, resize and normalise: the model input ``[B, 3, S, S]``."""
    out = []
    for index, (x0, y0, x1, y1) in picks:
        crop = images[index][y0:y1, x0:x1]
        if augment["flips_and_right_angle_rotations"]:
            crop = np.rot90(crop, k=int(rng.integers(4)))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
        out.append(resize_center_crop(x, image_size)[0])
    x = torch.stack(out)
    x = colour_jitter(x, augment, rng)
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def colour_jitter(x: torch.Tensor, augment: dict, rng) -> torch.Tensor:
    """Small stain and scanner variation on ``[B, 3, H, W]`` values in 0..255."""
    b = x.shape[0]

    def uniform(spread: float, shape) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(1 - spread, 1 + spread, shape)).float()

    grey = x.mean(dim=1, keepdim=True)
    sat = uniform(augment["saturation"], (b, 1, 1, 1))
    x = grey + (x - grey) * sat
    x = x * uniform(augment["brightness"], (b, 1, 1, 1))
    x = x * uniform(augment["channel_gain"], (b, 3, 1, 1))
    return x.clamp_(0, 255).round_()
