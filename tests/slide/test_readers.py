from __future__ import annotations

import numpy as np

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
