from __future__ import annotations

import pytest

from napari_conch.slide.mpp import aperio_mpp, ome_mpp, plausible, unit_to_microns


def test_aperio_description():
    description = (
        "Aperio Image Library v11\n46000x32914 (240x240) JPEG/RGB Q=30|AppMag = 20|"
        "MPP = 0.4990|Left = 25.6"
    )
    assert aperio_mpp(description) == pytest.approx(0.499)
    assert aperio_mpp("Aperio Image Library|AppMag = 20") is None


def test_ome_units():
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels PhysicalSizeX="{x}" PhysicalSizeXUnit="{u}" PhysicalSizeY="{x}" '
        'PhysicalSizeYUnit="{u}" SizeX="4" SizeY="4"/></Image></OME>'
    )
    assert ome_mpp(xml.format(x=0.5, u="µm")) == pytest.approx(0.5)
    assert ome_mpp(xml.format(x=500, u="nm")) == pytest.approx(0.5)
    assert ome_mpp(xml.format(x=0.0005, u="mm")) == pytest.approx(0.5)
    assert ome_mpp(xml.format(x=1, u="parsec")) is None
    assert ome_mpp(xml.replace('PhysicalSizeX="{x}" ', "").format(x=0.25, u="um")) == pytest.approx(
        0.25
    )
    assert ome_mpp("<OME/>") is None and ome_mpp("not xml") is None


def test_units_and_plausibility():
    assert unit_to_microns("Micrometer") == 1.0 and unit_to_microns("nanometer") == 1e-3
    assert unit_to_microns(None) is None
    assert (
        plausible(25400 / 72) is None and plausible(0.0) is None and plausible(float("nan")) is None
    )
    assert plausible(0.25) == 0.25


def test_philips_mpp_is_the_wsi_images_pixel_spacing_in_mm():
    from napari_conch.slide.mpp import philips_mpp

    def xml(kind, spacing):
        return (
            '<DataObject ObjectType="DPUfsImport"><Attribute Name="PIM_DP_SCANNED_IMAGES"><Array>'
            '<DataObject ObjectType="DPScannedImage"><Attribute Name="PIM_DP_IMAGE_TYPE">'
            f'{kind}</Attribute><Attribute Name="DICOM_PIXEL_SPACING">{spacing}</Attribute>'
            "</DataObject></Array></Attribute></DataObject>"
        )

    assert philips_mpp(xml("WSI", '"0.00025" "0.00025"')) == pytest.approx(0.25)
    assert philips_mpp(xml("WSI", '"0.0002" "0.0003"')) == pytest.approx(0.25)  # the mean
    assert philips_mpp(xml("MACROIMAGE", '"0.00025" "0.00025"')) is None  # not the slide
    assert philips_mpp(xml("WSI", "nonsense")) is None
    assert philips_mpp("<not xml") is None and philips_mpp(None) is None
