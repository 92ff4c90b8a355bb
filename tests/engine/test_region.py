"""Regions as model input: reading, padding, tiling, ranking texts and captioning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_conch.engine.prompts import PromptSet
from napari_conch.engine.region import (
    Region,
    caption_region,
    pad_to_square,
    rank_texts,
    read_region_pixels,
    region_embedding,
    split_into_tiles,
)
from napari_conch.errors import NapariConchError
from napari_conch.model.generation import GenerationConfig
from napari_conch.slide import open_slide

BOX = Region(1200, 800, 1320, 900)  # 120 x 100 px of tissue: one padded image for the tiny model


@pytest.fixture(scope="module")
def slide(svs_path):
    return open_slide(svs_path)


def test_read_pad_and_split():
    pixels = np.zeros((3, 5, 3), dtype=np.uint8)
    square = pad_to_square(pixels)
    assert square.shape == (5, 5, 3)
    assert (square[0] == 255).all() and (square[1:4] == 0).all() and (square[4] == 255).all()
    tiles = split_into_tiles(np.zeros((5, 9, 3), dtype=np.uint8), 4)
    assert tiles.shape == (6, 4, 4, 3)
    assert (tiles[-1][1:] == 255).all() and (tiles[0] == 0).all()


def test_region_pixels_equal_slide_read(slide):
    pixels = read_region_pixels(slide, BOX)
    assert pixels.shape == (100, 120, 3)
    assert np.array_equal(pixels, slide.read_region(0, 1200, 800, 120, 100))


def test_bad_regions(slide):
    with pytest.raises(NapariConchError, match="is empty"):
        Region(10, 10, 5, 20)
    with pytest.raises(NapariConchError, match="outside"):
        read_region_pixels(slide, Region(5000, 5000, 5100, 5100))
    with pytest.raises(NapariConchError, match="outside"):
        read_region_pixels(slide, Region(2220, 0, 2300, 100))  # starts at the right edge
    with pytest.raises(NapariConchError, match="level 3 does not exist"):
        read_region_pixels(slide, Region(0, 0, 10, 10, level=3))


def test_boxes_are_clipped_to_the_slide(slide):
    height, width = slide.shape
    pixels = read_region_pixels(slide, Region(-50, -40, 100, 60))
    np.testing.assert_array_equal(pixels, slide.read_region(0, 0, 0, 100, 60))
    pixels = read_region_pixels(slide, Region(width - 30, height - 20, width + 500, height + 500))
    assert pixels.shape == (20, 30, 3)
    with pytest.raises(NapariConchError, match=r"box \(-100, -100, -1, -1\) lies outside"):
        read_region_pixels(slide, Region(-100, -100, -1, -1))


@pytest.mark.slow
def test_huge_box_is_read_within_the_pixel_bound(slide, caplog):
    """The whole slide as a box, with a 250 kpx bound: shrunk 6 times, never allocated whole."""
    import logging

    huge = Region(-100000, -100000, 100000, 100000)
    with caplog.at_level(logging.WARNING, logger="napari_conch"):
        pixels = read_region_pixels(slide, huge, max_pixels=500 * 500)
    assert pixels.shape == (495, 370, 3)  # 2967 x 2220 / 6, rounded up
    assert "shrunk 6 times" in caplog.text
    full = slide.read_region(0, 0, 0, 2220, 2967)
    block = full[600:606, 900:906].reshape(-1, 3).mean(0)
    assert np.abs(pixels[100, 150] - block).max() <= 0.5 + 1e-6
    # within the default bound (16 Mpx) the whole clipped box is read as it is
    np.testing.assert_array_equal(read_region_pixels(slide, huge), full)


def test_a_box_past_the_decoding_bound_is_refused_before_any_read(slide, monkeypatch):
    """Past the coarsest level every pixel of the box is decoded: a 100k x 100k px TIFF without
    a pyramid took 138 s. With a 10 kpx bound (320 kpx decoded at most) the slide is too big."""

    def no_read(*args, **kwargs):
        raise AssertionError("nothing may be read")

    monkeypatch.setattr(slide, "read_region", no_read)
    monkeypatch.setattr("napari_conch.engine.region.read_region_reduced", no_read)
    with pytest.raises(NapariConchError) as info:
        read_region_pixels(slide, Region(0, 0, 2220, 2967), max_pixels=100 * 100)
    assert str(info.value) == (
        f"box (0, 0, 2220, 2967) of {slide.name} is 2220 x 2967 px at level 0, its coarsest: "
        "reading it would decode 6.59 Mpx (at most 0.32); choose a smaller box, or a slide with a "
        "pyramid"
    )


def test_rank_texts_uses_the_model_temperature(slide, tiny_model):
    texts = ["tumor", "stroma", "glass"]
    ranking = rank_texts(tiny_model, slide, BOX, texts)
    assert sorted(t for t, _, _ in ranking) == sorted(texts)
    probs = [p for _, p, _ in ranking]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    image = tiny_model.embed_images(pad_to_square(read_region_pixels(slide, BOX)))[0]
    cosine = tiny_model.embed_texts(texts) @ image
    expected = (tiny_model.logit_scale * cosine).softmax(-1)
    for text, prob, cos in ranking:
        i = texts.index(text)
        assert prob == pytest.approx(expected[i].item(), abs=1e-5)
        assert cos == pytest.approx(cosine[i].item(), abs=1e-5)


def test_rank_prompt_set_classes(slide, tiny_model):
    prompt_set = PromptSet({"tumor": ("tumor", "carcinoma"), "normal": ("normal tissue",)})
    ranking = rank_texts(tiny_model, slide, BOX, prompt_set)
    assert {name for name, _, _ in ranking} == {"tumor", "normal"}


def test_large_region_is_tiled_and_mean_pooled(tiny_model):
    pixels = np.random.default_rng(0).integers(0, 256, (200, 140, 3), dtype=np.uint8)
    emb = region_embedding(tiny_model, pixels)  # 200 > 2 * 64: tiled
    tiles = split_into_tiles(pixels, tiny_model.image_size)
    expected = torch.nn.functional.normalize(tiny_model.embed_images(tiles).mean(0), dim=-1)
    assert torch.allclose(emb, expected, atol=1e-6)


@pytest.mark.slow
def test_caption_region(slide, tiny_model):
    text = caption_region(tiny_model, slide, BOX, GenerationConfig("greedy", max_length=6))
    assert isinstance(text, str)
