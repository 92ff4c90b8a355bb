"""Writing a DICOM whole-slide image in a test, with wsidicom's own writer.

:func:`write_dicom_wsi` saves levels held as arrays (uncompressed, Explicit VR Little Endian:
lossless) as the files of one series, one file per level.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from wsidicom import WsiDicom, WsiInstance
from wsidicom.codec import Encoder
from wsidicom.geometry import Size, SizeMm
from wsidicom.instance import ImageData, WsiDataset
from wsidicom.metadata import (
    Equipment,
    Image,
    ImageType,
    Label,
    Patient,
    Pyramid,
    Series,
    Slide,
    SlideSample,
    Study,
    WsiMetadata,
)
from wsidicom.metadata.schema.dicom.wsi import WsiMetadataDicomSchema
from wsidicom.source import Source


class ArrayImageData(ImageData):
    """One level held as an ``(H, W, 3)`` uint8 array, cut into square tiles."""

    def __init__(self, array: np.ndarray, tile: int, mpp: float) -> None:
        self._array, self._tile, self._mpp = array, tile, mpp
        super().__init__(Encoder.create(ExplicitVRLittleEndian, 8, "RGB"))

    transfer_syntax = property(lambda self: ExplicitVRLittleEndian)
    image_size = property(lambda self: Size(self._array.shape[1], self._array.shape[0]))
    tile_size = property(lambda self: Size(self._tile, self._tile))
    pixel_spacing = property(lambda self: SizeMm(self._mpp / 1000, self._mpp / 1000))
    imaged_size = property(lambda self: None)
    samples_per_pixel = property(lambda self: 3)
    photometric_interpretation = property(lambda self: "RGB")
    bits = property(lambda self: 8)
    image_coordinate_system = property(lambda self: None)
    thread_safe = property(lambda self: True)
    lossy_compression = property(lambda self: None)
    transcoder = property(lambda self: None)

    def get_decoded_tile(self, tile_point, z, path, cache=True) -> np.ndarray:
        t = self._tile
        out = np.full((t, t, 3), 255, np.uint8)
        part = self._array[tile_point.y * t : (tile_point.y + 1) * t,
                           tile_point.x * t : (tile_point.x + 1) * t]  # fmt: skip
        out[: part.shape[0], : part.shape[1]] = part
        return out

    def get_encoded_tile(self, tile, z, path) -> bytes:
        return self.encoder.encode(self.get_decoded_tile(tile, z, path))


class ArraySource(Source):
    """A wsidicom source of pyramid levels held as arrays."""

    def __init__(self, levels: list[np.ndarray], tile: int, mpp: float) -> None:
        super().__init__()
        metadata = WsiMetadata(
            study=Study(uid=generate_uid()),
            series=Series(uid=generate_uid(), number=1),
            patient=Patient(),
            equipment=Equipment(),
            slide=Slide(identifier="slide", samples=[SlideSample("sample", uid=generate_uid())]),
            pyramid=Pyramid(image=Image(), optical_paths=[], uid=generate_uid()),
            label=Label(),
            frame_of_reference_uid=generate_uid(),
            dimension_organization_uids=[generate_uid()],
        )
        self._base = WsiMetadataDicomSchema().dump(metadata, ImageType.VOLUME)
        self._levels = []
        for array in levels:
            data = ArrayImageData(array, tile, mpp * levels[0].shape[1] / array.shape[1])
            dataset = WsiDataset.create_instance_dataset(
                copy.deepcopy(self._base), ImageType.VOLUME, data, 0
            )
            self._levels.append(WsiInstance(dataset, data))

    base_dataset = property(lambda self: self._base)
    level_instances = property(lambda self: self._levels)
    label_instances = property(lambda self: [])
    overview_instances = property(lambda self: [])
    thumbnail_instances = property(lambda self: [])
    annotation_instances = property(lambda self: [])

    def close(self) -> None:
        pass


def write_dicom_wsi(folder: Path, levels: list[np.ndarray], mpp: float, tile: int = 256) -> Path:
    """Save ``levels`` (finest first) as a DICOM WSI series in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with WsiDicom(ArraySource(levels, tile, mpp)) as wsi:
        wsi.save(folder)
    return folder
