"""Microns per pixel from the metadata of each format.

Sources, in the order they are trusted for a TIFF: the Aperio ImageDescription (``MPP = 0.499``),
OME-XML ``PhysicalSizeX/Y`` with their units, the Philips XML (the ``WSI`` image's
``DICOM_PIXEL_SPACING``, in mm, as OpenSlide reads it), then the TIFF resolution tags with their
unit (this also covers NDPI, which stores pixels per centimetre). For OME-Zarr, the ``scale``
of the ``y`` and ``x`` axes with their units. A value that is not positive, or larger than
:data:`MAX_PLAUSIBLE_MPP` (e.g. the 72 dpi default of many writers, 353 um/px), counts as unknown.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

#: Microns per pixel above this are not a microscope image's (TIFF dpi defaults); unknown.
MAX_PLAUSIBLE_MPP = 100.0

_UNIT_TO_MICRONS = {
    "pm": 1e-6,
    "picometer": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "micrometer": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
}

_APERIO_MPP = re.compile(r"\bMPP\s*=\s*([0-9.eE+-]+)")


def plausible(mpp: float | None) -> float | None:
    """Return ``mpp`` when it is a believable microscope pixel size, else ``None``."""
    if mpp is None or not math.isfinite(mpp) or mpp <= 0 or mpp > MAX_PLAUSIBLE_MPP:
        return None
    return float(mpp)


def unit_to_microns(unit: str | None) -> float | None:
    """Microns per one ``unit`` (``"nm"``, ``"micrometer"``, ...), ``None`` if unknown."""
    if not unit:
        return None
    return _UNIT_TO_MICRONS.get(unit.strip().lower())


def aperio_mpp(description: str) -> float | None:
    """MPP from an Aperio ImageDescription (``... |MPP = 0.4990|...``)."""
    match = _APERIO_MPP.search(description or "")
    if match is None:
        return None
    try:
        return plausible(float(match.group(1)))
    except ValueError:
        return None


def philips_mpp(xml: str | None) -> float | None:
    """MPP from a Philips TIFF's XML: the ``DICOM_PIXEL_SPACING`` (``"row mm" "column mm"``) of
    its ``WSI`` scanned image (mean of both)."""
    try:
        root = ET.fromstring(xml or "")
    except ET.ParseError:
        return None
    for image in root.iter("DataObject"):
        if image.get("ObjectType") != "DPScannedImage":
            continue
        attributes = {a.get("Name"): (a.text or "") for a in image.findall("Attribute")}
        if attributes.get("PIM_DP_IMAGE_TYPE", "").strip() != "WSI":
            continue
        try:
            sizes = [
                float(v) * 1000 for v in attributes["DICOM_PIXEL_SPACING"].replace('"', " ").split()
            ]
        except (KeyError, ValueError):
            return None
        return plausible(sum(sizes) / len(sizes)) if len(sizes) == 2 else None
    return None


def ome_mpp(ome_xml: str) -> float | None:
    """MPP from the first image's ``PhysicalSizeX``/``Y`` (mean of both when both are given)."""
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        value = pixels.get(f"PhysicalSize{axis}")
        factor = unit_to_microns(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or factor is None:
            continue
        try:
            sizes.append(float(value) * factor)
        except ValueError:
            continue
    return plausible(sum(sizes) / len(sizes)) if sizes else None


def resolution_mpp(page) -> float | None:
    """MPP from a tifffile page's XResolution/YResolution and ResolutionUnit tags.

    Unit 2 is inch, 3 centimetre; unit 1 (none) or a missing unit gives ``None``.
    """
    unit = page.tags.get("ResolutionUnit")
    unit = int(unit.value) if unit is not None else 2
    microns_per_unit = {2: 25400.0, 3: 10000.0}.get(unit)
    if microns_per_unit is None:
        return None
    sizes = []
    for name in ("XResolution", "YResolution"):
        tag = page.tags.get(name)
        if tag is None:
            continue
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        if num and den:
            sizes.append(microns_per_unit * den / num)
    return plausible(sum(sizes) / len(sizes)) if sizes else None
