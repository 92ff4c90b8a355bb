"""Tile labels from real annotations and physics, looked up for many boxes at once.

Each image gets per-pixel channels (fractions in ``[0, 1]``); a box's mean of a channel comes
from an integral image in O(1), so a rule can label tens of thousands of candidate boxes fast.

- H&E with nucleus polygons: one mask per nucleus class; a box is labelled with the class whose
  nuclei cover most of its nuclear area, when they cover at least ``dominance`` of it.
- IHC: Ruifrok & Johnston colour deconvolution (H-DAB); a tissue box is DAB-positive when enough
  of its tissue pixels carry DAB, negative when almost none do.
- Whole-slide H&E: a saturation + Otsu tissue mask, as the plugin's; tissue versus glass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_conch.slide.tissue import otsu_threshold, saturation_of

#: Nucleus classes of the HGSC polygons and the concept each is captioned as.
NUCLEUS_CONCEPTS = {"neoplastic": "tumor", "inflammatory": "inflammatory", "connective": "stroma"}

#: Ruifrok & Johnston (2001) optical-density vectors of haematoxylin and DAB (RGB).
HEMATOXYLIN_OD = (0.650, 0.704, 0.286)
DAB_OD = (0.268, 0.570, 0.776)


@dataclass
class LabelMap:
    """Integral images of per-pixel channels and the rule turning box means into a concept.

    Attributes
    ----------
    integrals : dict of str to numpy.ndarray
        ``float64 [H + 1, W + 1]`` summed-area tables, one per channel.
    rule : callable
        ``rule(means: dict[str, ndarray]) -> ndarray`` of concept names (``""``: no label).
    """

    integrals: dict[str, np.ndarray]
    rule: Callable[[dict[str, np.ndarray]], np.ndarray]

    def means(self, boxes: np.ndarray) -> dict[str, np.ndarray]:
        """Mean of every channel over ``boxes`` (``int [N, 4]`` as x0, y0, x1, y1)."""
        x0, y0, x1, y1 = (np.asarray(boxes, np.int64)[:, i] for i in range(4))
        area = np.maximum((x1 - x0) * (y1 - y0), 1)
        out = {}
        for name, s in self.integrals.items():
            out[name] = (s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]) / area
        return out

    def labels(self, boxes: np.ndarray) -> np.ndarray:
        """Concept of each box (``""`` where the rule gives none)."""
        return self.rule(self.means(boxes))


def integral(channel: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column."""
    out = np.zeros((channel.shape[0] + 1, channel.shape[1] + 1), np.float64)
    out[1:, 1:] = np.cumsum(np.cumsum(channel, axis=0, dtype=np.float64), axis=1)
    return out


def nucleus_masks(parquet: Path, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Rasterise the nucleus polygons of a parquet file into one bool mask per concept."""
    import pyarrow.parquet as pq
    import shapely
    from PIL import Image, ImageDraw

    table = pq.read_table(parquet, columns=["geometry", "class_name"]).to_pydict()
    canvases = {c: Image.new("1", (shape[1], shape[0]), 0) for c in NUCLEUS_CONCEPTS.values()}
    for geom, name in zip(shapely.from_wkb(table["geometry"]), table["class_name"], strict=True):
        concept = NUCLEUS_CONCEPTS.get(name)
        if concept is None or geom is None or geom.is_empty:
            continue
        parts = geom.geoms if hasattr(geom, "geoms") else [geom]
        for part in parts:
            if part.geom_type == "Polygon":
                ImageDraw.Draw(canvases[concept]).polygon(list(part.exterior.coords), fill=1)
    return {c: np.asarray(img, dtype=bool) for c, img in canvases.items()}


def nucleus_label_map(parquet: Path, shape: tuple[int, int], rules: dict) -> LabelMap:
    """Labels of H&E boxes by their dominant nucleus class (see module docstring)."""
    masks = nucleus_masks(parquet, shape)
    names = list(masks)

    def rule(means: dict[str, np.ndarray]) -> np.ndarray:
        stack = np.stack([means[n] for n in names])
        total = stack.sum(axis=0)
        best = stack.argmax(axis=0)
        share = stack.max(axis=0) / np.maximum(total, 1e-9)
        ok = (total >= rules["min_nuclear_fraction"]) & (share >= rules["dominance"])
        return np.where(ok, np.asarray(names)[best], "")

    return LabelMap({n: integral(m) for n, m in masks.items()}, rule)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """``-log10(I / 255)`` per channel, with ``I`` floored at 1 (float32 ``[H, W, 3]``)."""
    return -np.log10(np.maximum(rgb.astype(np.float32), 1.0) / 255.0)


def hdab_concentrations(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and DAB amounts per pixel by H-DAB colour deconvolution.

    The stain matrix has the haematoxylin and DAB optical-density vectors as rows and their
    normalised cross product as the third (the residual), as Ruifrok & Johnston describe for
    two-stain images; optical densities are unmixed with its inverse.
    """
    h = np.asarray(HEMATOXYLIN_OD) / np.linalg.norm(HEMATOXYLIN_OD)
    d = np.asarray(DAB_OD) / np.linalg.norm(DAB_OD)
    r = np.cross(h, d)
    stains = np.stack([h, d, r / np.linalg.norm(r)])
    amounts = optical_density(rgb) @ np.linalg.inv(stains).astype(np.float32)
    return amounts[..., 0], amounts[..., 1]


def ihc_label_map(rgb: np.ndarray, rules: dict) -> LabelMap:
    """Labels of IHC boxes: ``dab_positive``, ``dab_negative``, ``glass`` (or none)."""
    _, dab = hdab_concentrations(rgb)
    tissue = optical_density(rgb).sum(axis=-1) >= rules["tissue_od"]
    positive = tissue & (dab >= rules["dab_od"])

    def rule(means: dict[str, np.ndarray]) -> np.ndarray:
        t, p = means["tissue"], means["dab"]
        share = p / np.maximum(t, 1e-9)
        out = np.full(t.shape, "", dtype=object)
        out[t <= rules["glass_max_tissue"]] = "glass"
        has_tissue = t >= rules["min_tissue"]
        out[has_tissue & (share >= rules["positive_min_share"])] = "dab_positive"
        out[has_tissue & (share <= rules["negative_max_share"])] = "dab_negative"
        return out.astype(str)

    return LabelMap({"tissue": integral(tissue), "dab": integral(positive)}, rule)


def tissue_label_map(rgb: np.ndarray, rules: dict) -> LabelMap:
    """Labels of whole-slide boxes: ``tissue`` or ``glass`` (or none, in between).

    Tissue pixels as the plugin's tissue mask finds them: HSV saturation of a block-averaged
    image (``rules["downsample"]``) above Otsu's threshold (never below ``min_saturation``).
    """
    step = int(rules["downsample"])
    h, w = (rgb.shape[0] // step) * step, (rgb.shape[1] // step) * step
    small = rgb[:h, :w].reshape(h // step, step, w // step, step, 3).mean(axis=(1, 3))
    saturation = saturation_of(small)
    mask = saturation > max(otsu_threshold(saturation), rules["min_saturation"])
    full = np.zeros(rgb.shape[:2], bool)
    full[:h, :w] = np.repeat(np.repeat(mask, step, axis=0), step, axis=1)

    def rule(means: dict[str, np.ndarray]) -> np.ndarray:
        t = means["tissue"]
        out = np.full(t.shape, "", dtype=object)
        out[t >= rules["min_tissue"]] = "tissue"
        out[t <= rules["glass_max_tissue"]] = "glass"
        return out.astype(str)

    return LabelMap({"tissue": integral(full)}, rule)


def label_map_for(entry: dict, rgb: np.ndarray, root: Path) -> LabelMap:
    """The label map of one data-list image entry."""
    kind, rules = entry["labels"]["kind"], entry["labels"]["rules"]
    if kind == "nuclei":
        return nucleus_label_map(root / entry["labels"]["file"], rgb.shape[:2], rules)
    if kind == "ihc":
        return ihc_label_map(rgb, rules)
    if kind == "tissue":
        return tissue_label_map(rgb, rules)
    raise ValueError(f"unknown label kind {kind!r} in the data list")
