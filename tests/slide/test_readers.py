from __future__ import annotations

import numpy as np
import pytest

from napari_conch.slide import open_slide
from napari_conch.slide.readers import ChunkCache


def count_decodes(reader):
    calls = []
    decode = reader._decode

    def counting(data, index, **kwargs):
        calls.append(index)
        return decode(data, index, **kwargs)

    reader._decode = counting
    return calls


def test_region_decodes_only_its_chunks(svs_path):
    with open_slide(svs_path) as slide:  # 240 px JPEG tiles, 10 tiles across
        calls = count_decodes(slide._readers[0])
        slide.read_region(0, 250, 250, 200, 200)  # inside tile (1, 1)
        assert calls == [11]
        slide.read_region(0, 230, 470, 20, 20)  # crosses 4 tiles, one already decoded
        assert sorted(calls[1:]) == [10, 20, 21]
        slide.read_region(0, 250, 250, 10, 10)  # cached
        assert len(calls) == 4


def test_chunk_cache_is_bounded():
    cache = ChunkCache(max_bytes=3000)
    for i in range(5):
        cache.put(("level", i), np.zeros(1000, np.uint8))
    assert cache.get(("level", 0)) is None and cache.get(("level", 1)) is None
    assert cache.get(("level", 4)) is not None


def test_damaged_chunks_raise_instead_of_decoding_garbage(tmp_path, svs_path):
    """Both faults decode "fine" in imagecodecs (grey garbage); the reader refuses them."""
    from napari_conch.errors import SlideError
    from tests.slide.damage import svs_with_bad_tile

    for how, words in (("start", "not a JPEG stream"), ("eoi", "end-of-image marker")):
        path = svs_with_bad_tile(svs_path, tmp_path / f"{how}.svs", how)
        with open_slide(path) as slide:
            with pytest.raises(SlideError) as err:
                slide.read_region(0, 1250, 1000, 100, 100)  # inside chunk 45
            message = str(err.value)
            assert f"{how}.svs: cannot read level 0 rows 1000:1100" in message
            assert "TIFF chunk 45" in message and words in message and "\n" not in message
            good = slide.read_region(0, 0, 0, 100, 100)
        with open_slide(svs_path) as clean:
            np.testing.assert_array_equal(good, clean.read_region(0, 0, 0, 100, 100))


def test_chunk_past_the_end_of_a_truncated_file(tmp_path, nest):
    from napari_conch.errors import SlideError
    from tests.slide.damage import truncated_pyramid

    path = truncated_pyramid(nest[:512, :384].copy(), tmp_path / "cut.tif", 0.5, "zlib")
    with open_slide(path) as slide:
        with pytest.raises(SlideError, match=r"the file ends after \d+ of its \d+ bytes"):
            slide.read_region(0, 0, 384, 384, 128)  # the last row of chunks
        assert slide.read_region(0, 0, 0, 128, 128).shape == (128, 128, 3)


def test_a_dask_level_is_read_in_the_callers_thread():
    """Our reader threads run several at once; dask's shared pool would add its own threads."""
    import threading

    import dask.array as da

    from napari_conch.slide.layout import make_layout
    from napari_conch.slide.readers import ArrayReader

    made_in = []

    def block(block_info=None):
        made_in.append(threading.get_ident())
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        return np.full((y1 - y0, x1 - x0, 3), y0 // 8 + x0 // 8, np.uint8)

    meta = np.empty((0, 0, 0), np.uint8)  # no call to infer it
    level = da.map_blocks(block, chunks=((8, 8), (8, 8), (3,)), dtype=np.uint8, meta=meta)
    reader = ArrayReader(level, make_layout("YXC", level.shape, level.dtype, "lazy"))
    out = []
    thread = threading.Thread(target=lambda: out.append(reader.read(4, 12, 4, 12)))
    thread.start()
    thread.join(30)

    assert set(made_in) == {thread.ident} and len(made_in) == 4
    expected = np.zeros((8, 8, 3), np.uint8)
    expected[:4, 4:], expected[4:, :4], expected[4:, 4:] = 1, 1, 2
    np.testing.assert_array_equal(out[0], expected)
