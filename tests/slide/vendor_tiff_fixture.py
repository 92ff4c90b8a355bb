"""Writing Leica SCN and Ventana BIF slides in a test, with tifffile, from given pixels.

What OpenSlide needs of each (facts from its ``openslide-vendor-leica.c`` and
``openslide-vendor-ventana.c``):

- **Leica SCN**: a tiled (Big)TIFF whose first directory's ImageDescription is XML in the
  ``http://www.leica-microsystems.com/scn/2010/10/01`` namespace: ``scn/collection`` (sizes in
  nm) holding ``image`` elements, each with ``view`` (size and offset in the collection, nm),
  ``scanSettings`` (objective, illumination source: only ``brightfield`` images are read) and
  ``pixels/dimension`` (``ifd``, ``sizeX``, ``sizeY`` of each resolution). An image covering the
  whole collection at offset 0 is the macro; the others are the main image, placed in the
  collection at its offset (OpenSlide's level 0 is the whole collection). The MPP comes from the
  level-0 directory's resolution tags.
- **Ventana BIF**: a TIFF whose first directory's XMP (tag 700) holds an ``iScan`` element
  (``ScanRes`` = MPP, ``Magnification``); levels are the directories whose ImageDescription
  is ``level=N mag=M ...``; level 0's XMP holds ``EncodeInfo``: the area's tiles (numbered from
  the bottom row up, every other row right to left) and the overlap of each pair of neighbours
  (``TileJointInfo``). Tiles are placed ``tile size - mean overlap`` apart, so a BIF's stored
  tiles overlap and a reader that lays them side by side (tifffile) shows seams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

SCN_NS = "http://www.leica-microsystems.com/scn/2010/10/01"
TILE = 256


def _cm_resolution(mpp: float) -> dict:
    return {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}


def write_scn(
    path: Path,
    image: np.ndarray,
    mpp: float,
    margin: int = 64,
    z_planes: int = 1,
    illumination: str = "brightfield",
) -> Path:
    """Save ``image`` ((H, W, 3) uint8, H and W multiples of 4) as a Leica SCN.

    The collection is the image with ``margin`` px of glass around it; a macro image (the
    collection at 1/16, first in the XML, as Leica writes it) comes first, then the main image
    (levels 1 and 1/4). Lossless (zlib). ``z_planes`` above 1 only says so in the XML (the
    image's ``sizeZ``; its planes are not written): OpenSlide reads plane 0, tifffile refuses
    Z-stacks. OpenSlide reads only ``brightfield`` images (``illumination``). Returns ``path``.
    """
    h, w, _ = image.shape
    nm = round(mpp * 1000)
    coll_w, coll_h = (w + 2 * margin) * nm, (h + 2 * margin) * nm
    macro = np.full(((h + 2 * margin) // 16, (w + 2 * margin) // 16, 3), 200, np.uint8)
    small = np.ascontiguousarray(image[::4, ::4])
    scan = (
        "<scanSettings><objectiveSettings><objective>20</objective></objectiveSettings>"
        "<illuminationSettings><numericalAperture>0.7</numericalAperture>"
        f"<illuminationSource>{illumination}</illuminationSource></illuminationSettings>"
        "</scanSettings>"
    )
    xml = (
        f'<?xml version="1.0" encoding="utf-8"?>\n<scn xmlns="{SCN_NS}">'
        f'<collection name="test" sizeX="{coll_w}" sizeY="{coll_h}">'
        '<image name="macro"><creationDate>2026-12-07T00:00:00Z</creationDate>'
        '<device model="Leica SCN400;Leica SCN" version="1.5"/>'
        f'{scan}<view sizeX="{coll_w}" sizeY="{coll_h}" offsetX="0" offsetY="0"/>'
        f'<pixels sizeX="{macro.shape[1]}" sizeY="{macro.shape[0]}">'
        f'<dimension sizeX="{macro.shape[1]}" sizeY="{macro.shape[0]}" r="0" ifd="0"/>'
        "</pixels></image>"
        f'<image name="main" sizeZ="{z_planes}"><creationDate>2026-12-07T00:00:00Z</creationDate>'
        '<device model="Leica SCN400;Leica SCN" version="1.5"/>'
        f'{scan}<view sizeX="{w * nm}" sizeY="{h * nm}" offsetX="{margin * nm}" '
        f'offsetY="{margin * nm}"/><pixels sizeX="{w}" sizeY="{h}">'
        f'<dimension sizeX="{w}" sizeY="{h}" r="0" ifd="1"/>'
        f'<dimension sizeX="{w // 4}" sizeY="{h // 4}" r="1" ifd="2"/>'
        "</pixels></image></collection></scn>"
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(macro, tile=(16, 16), compression="zlib", photometric="rgb",
                  description=xml, metadata=None, **_cm_resolution(mpp * 16))  # fmt: skip
        for level, scale in ((image, 1), (small, 4)):
            tif.write(level, tile=(TILE, TILE), compression="zlib", photometric="rgb",
                      metadata=None, **_cm_resolution(mpp * scale))  # fmt: skip
    return path


def _tile_number(col: int, row: int, cols: int, rows: int) -> int:
    """Ventana's 1-based tile number of the tile at ``col`` and ``row`` (counted from the top)."""
    from_bottom = rows - 1 - row
    across = col if from_bottom % 2 == 0 else cols - 1 - col
    return from_bottom * cols + across + 1


def bif_size(cols: int, rows: int, overlap: int) -> tuple[int, int]:
    """``(height, width)`` of the stitched level 0 of :func:`write_bif`'s slide."""
    advance = TILE - overlap
    return (rows - 1) * advance + TILE, (cols - 1) * advance + TILE


def write_bif(
    path: Path, image: np.ndarray, mpp: float, cols: int, rows: int, overlap: int = 16
) -> Path:
    """Save ``image`` (of :func:`bif_size`) as a Ventana BIF of ``cols`` x ``rows`` tiles of
    256 px overlapping by ``overlap`` px (each tile holds the image's own pixels, so the
    stitched slide is ``image``), with level 1 (1/4) made of the tiles shrunk by 4, as a
    scanner writes it. Lossless (zlib). Returns ``path``."""
    advance = TILE - overlap
    assert image.shape[:2] == bif_size(cols, rows, overlap)
    mosaic = np.empty((rows * TILE, cols * TILE, 3), np.uint8)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = image[
                r * advance:r * advance + TILE, c * advance:c * advance + TILE
            ]  # fmt: skip
    joints = []
    for r in range(rows):
        for c in range(cols):
            here = _tile_number(c, r, cols, rows)
            if c + 1 < cols:
                joints.append((here, _tile_number(c + 1, r, cols, rows), "RIGHT", overlap, 0))
            if r > 0:  # the tile above
                joints.append((here, _tile_number(c, r - 1, cols, rows), "UP", 0, overlap))
    joint_xml = "".join(
        f'<TileJointInfo FlagJoined="1" Confidence="90" Direction="{d}" Tile1="{t1}" '
        f'Tile2="{t2}" OverlapX="{ox}" OverlapY="{oy}"/>'
        for t1, t2, d, ox, oy in joints
    )
    encode = (
        '<?xml version="1.0" encoding="UTF-8"?><EncodeInfo Ver="2">'
        '<SlideStitchInfo><ImageInfo AOIScanned="1" AOIIndex="0" Width="256" Height="256" '
        f'NumRows="{rows}" NumCols="{cols}" Pos-X="0" Pos-Y="0">{joint_xml}</ImageInfo>'
        '</SlideStitchInfo><AoiOrigin><AOI0 OriginX="0" OriginY="0"/></AoiOrigin></EncodeInfo>'
    )
    iscan = (
        '<?xml version="1.0" encoding="UTF-8"?><iScan Magnification="20" '
        f'ScanRes="{mpp}" UnitNumber="test" BuildVersion="test"/>'
    )
    label = np.full((64, 64, 3), 255, np.uint8)
    common = {"photometric": "rgb", "metadata": None, "software": "ScanOutputManager 1.0"}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(label, description="Label Image", extratags=[(700, 1, None, iscan.encode())],
                  **common)  # fmt: skip
        tif.write(mosaic, tile=(TILE, TILE), compression="zlib",
                  description="level=0 mag=20 quality=95",
                  extratags=[(700, 1, None, encode.encode())], **common)  # fmt: skip
        tif.write(np.ascontiguousarray(mosaic[::4, ::4]), tile=(TILE, TILE), compression="zlib",
                  description="level=1 mag=5 quality=95", **common)  # fmt: skip
    return path


def _philips_spacing(mm: float) -> str:
    return f"&quot;{mm:.9g}&quot; &quot;{mm:.9g}&quot;"


def write_philips_tiff(path: Path, image: np.ndarray, mpp: float, levels: int = 3) -> Path:
    """Save ``image`` as a Philips TIFF: software ``Philips DP``, the ``DPUfsImport`` XML in the
    first directory's ImageDescription (one ``WSI`` scanned image with its pixel spacing in mm
    and one ``PixelDataRepresentation`` per level), then the levels (each 2 times coarser,
    reduced-resolution directories) padded to whole 256 px tiles as Philips writes them: OpenSlide
    (and tifffile's Philips reader) take the true sizes from level 0 and the spacings. Lossless
    (zlib); level ``i`` holds every ``2 ** i``-th pixel. Returns ``path``."""
    mm = mpp / 1000
    representations = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        '<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" '
        f'PMSVR="IDoubleArray">{_philips_spacing(mm * 2**i)}</Attribute>'
        '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_NUMBER" Group="0x101D" '
        f'Element="0x2001" PMSVR="IUInt16">{i}</Attribute></DataObject>'
        for i in range(levels)
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<DataObject ObjectType="DPUfsImport">'
        '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" '
        'PMSVR="IDataObjectArray"><Array><DataObject ObjectType="DPScannedImage">'
        '<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" '
        f'PMSVR="IDoubleArray">{_philips_spacing(mm)}</Attribute>'
        '<Attribute Name="PIM_DP_IMAGE_TYPE" Group="0x301D" Element="0x1004" '
        'PMSVR="IString">WSI</Attribute>'
        '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" Group="0x1001" '
        f'Element="0x8B01" PMSVR="IDataObjectArray"><Array>{representations}</Array>'
        "</Attribute></DataObject></Array></Attribute></DataObject>"
    )
    common = {"photometric": "rgb", "metadata": None, "software": "Philips DP v1.0",
              "tile": (TILE, TILE), "compression": "zlib"}  # fmt: skip
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        for i in range(levels):
            level = image[:: 2**i, :: 2**i]
            if i:  # padded to whole tiles (white), as the scanner writes it
                h, w, _ = level.shape
                padded = np.full((-(-h // TILE) * TILE, -(-w // TILE) * TILE, 3), 255, np.uint8)
                padded[:h, :w] = level
                level = padded
            tif.write(np.ascontiguousarray(level), description=xml if i == 0 else None,
                      subfiletype=1 if i else 0, **common)  # fmt: skip
    return path
