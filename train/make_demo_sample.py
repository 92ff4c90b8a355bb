"""The "held-out H&E" sample: the two HGSC images' held-out stripes, laid out on white glass.

The demo model never saw these pixels in training (``heldout_boxes`` of ``train/data.json``), so
the sample shows what it does on tissue it has not seen, of the kind it was trained on. Each
stripe is cropped to whole demo tiles (``DEMO_TILE_SIZE``, centred in the stripe) and placed on
a white background with a margin of one tile, so that every tile of the plugin's default grid
is either wholly one image's tissue or wholly glass, and the tissue detector has glass to tell
the (pale) stroma from (Otsu's method on an image that is all tissue splits tumour from stroma).

Written as a tiled, JPEG-compressed TIFF without a pixel size (the source images do not state
one). Run from the repository root: ``python -m train.make_demo_sample [--out PATH]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from train.images import REPO_ROOT, fixture_path, read_json, read_rgb

#: The images whose held-out stripes make the sample, top to bottom.
IMAGES = ("hgsc_nest", "hgsc_stromal_he")
#: Where the sample is shipped.
OUT = REPO_ROOT / "src" / "napari_conch" / "_napari" / "data" / "hgsc_heldout.tif"
#: JPEG quality of the TIFF's tiles.
JPEG_QUALITY = 90


def heldout_crop(box: list[int], tile: int) -> tuple[int, int, int, int]:
    """The largest box of whole tiles centred in ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    width, height = (x1 - x0) // tile * tile, (y1 - y0) // tile * tile
    left, top = x0 + (x1 - x0 - width) // 2, y0 + (y1 - y0 - height) // 2
    return left, top, left + width, top + height


def compose(tile: int) -> tuple[np.ndarray, list[dict]]:
    """The sample image ``uint8 [H, W, 3]`` and where each stripe came from and went."""
    entries = {entry["name"]: entry for entry in read_json()["images"]}
    pieces = []
    for name in IMAGES:
        entry = entries[name]
        (box,) = entry["heldout_boxes"]
        x0, y0, x1, y1 = heldout_crop(box, tile)
        image = read_rgb(fixture_path(entry["file"]))
        pieces.append((name, (x0, y0, x1, y1), image[y0:y1, x0:x1]))
    width = max(p[2].shape[1] for p in pieces) + 2 * tile
    height = sum(p[2].shape[0] for p in pieces) + (len(pieces) + 1) * tile
    canvas = np.full((height, width, 3), 255, np.uint8)
    layout, top = [], tile
    for name, source_box, pixels in pieces:
        h, w = pixels.shape[:2]
        canvas[top : top + h, tile : tile + w] = pixels
        at = (tile, top, tile + w, top + h)
        layout.append({"image": name, "source_box": source_box, "at": at})
        top += h + tile
    return canvas, layout


def write_tiff(path: Path, image: np.ndarray) -> None:
    """A tiled JPEG TIFF, written to a temporary file and renamed."""
    import tifffile

    tmp = path.with_name(path.name + ".part")
    tifffile.imwrite(
        tmp, image, photometric="rgb", tile=(256, 256),
        compression="jpeg", compressionargs={"level": JPEG_QUALITY},
    )  # fmt: skip
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Write the sample and print its layout."""
    from napari_conch.demo import DEMO_TILE_SIZE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT}")
    args = parser.parse_args(argv)
    image, layout = compose(DEMO_TILE_SIZE)
    write_tiff(args.out, image)
    print(f"{args.out}: {image.shape[1]} x {image.shape[0]} px, {args.out.stat().st_size} bytes")
    for piece in layout:
        print(f"  {piece['image']} {piece['source_box']} -> {piece['at']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
