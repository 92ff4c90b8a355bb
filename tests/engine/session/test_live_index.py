"""The live index: a query index growing batch by batch gives the maps of a fresh one."""

from __future__ import annotations

import numpy as np

from napari_conch.engine.query import QueryIndex
from napari_conch.engine.session.live_index import LiveIndex


def test_live_index_matches_a_fresh_index():
    rng = np.random.default_rng(0)
    shape, dim = (4, 5), 8
    vectors = rng.normal(size=(20, dim)).astype(np.float32)
    rows, cols = np.divmod(np.arange(20), 5)
    queries = rng.normal(size=(2, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    live = LiveIndex(QueryIndex.from_arrays(vectors[:6], rows[:6], cols[:6], shape))
    before = live.cosine_maps(queries)
    assert np.isnan(before[:, 3]).all()
    live.add(rows[6:13], cols[6:13], vectors[6:13])  # updates the cached maps
    live.add(rows[13:], cols[13:], np.vstack([vectors[13:19], np.full(dim, np.nan)]))
    fresh = QueryIndex.from_arrays(vectors[:19], rows[:19], cols[:19], shape)
    np.testing.assert_allclose(live.cosine_maps(queries), fresh.cosine_maps(queries), atol=1e-6)
    np.testing.assert_array_equal(live.valid, fresh.valid)
    np.testing.assert_allclose(
        live.compacted().cosine_maps(queries[::-1]), fresh.cosine_maps(queries[::-1]), atol=1e-6
    )
