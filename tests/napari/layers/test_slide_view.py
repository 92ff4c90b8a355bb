"""A slide is fitted when opened and once more when the window settles; a scale bar in microns."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.layers import slide_view
from napari_conch._napari.layers.map_layers import viewer_camera
from napari_conch._napari.sample_data import CMU_SMALL_REGION, HGSC_HELDOUT

pytestmark = pytest.mark.gui

WAIT_MS = 5_000


def _camera(viewer):
    camera = viewer_camera(viewer)
    return np.asarray([*camera.center, camera.zoom], float)


@pytest.fixture
def opened(make_napari_viewer, qtbot):
    """A shown viewer, small, with the sample slide (MPP known) opened by the reader."""
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(700, 500)
    qtbot.wait(50)
    [layer] = viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    return viewer, layer, slide_view.watch(viewer)


@pytest.mark.slow
def test_the_reader_shows_a_scale_bar_in_microns(opened):
    viewer, layer, _ = opened
    assert layer.metadata["napari_conch"]["mpp"] is not None
    assert slide_view.scale_bar(viewer).visible
    assert all(str(unit) == "micrometer" for unit in layer.units)  # what the scale bar reads


@pytest.mark.slow
def test_the_view_is_fitted_again_once_the_window_settles(opened, qtbot):
    viewer, _, view = opened
    small, settles = _camera(viewer), view.settles
    viewer.window.resize(1366, 768)  # the window reaches its size after the slide came
    qtbot.waitUntil(lambda: view.settles > settles, timeout=WAIT_MS)
    fitted = _camera(viewer)
    assert fitted[-1] > small[-1]  # zoomed in to fill the larger canvas
    viewer.reset_view()  # what Home would do: nothing more
    np.testing.assert_allclose(_camera(viewer), fitted)
    viewer_camera(viewer).zoom = fitted[-1] * 2  # later resizes leave the view alone
    viewer.window.resize(900, 600)
    qtbot.wait(2 * slide_view.SETTLE_MS)
    assert viewer_camera(viewer).zoom == pytest.approx(fitted[-1] * 2)


@pytest.mark.slow
def test_a_view_the_user_moved_is_not_fitted_again(opened, qtbot):
    viewer, _, view = opened
    camera = viewer_camera(viewer)
    camera.zoom = camera.zoom * 3  # the user zooms before the window settles
    camera.center = (0.0, 100.0, 100.0)[-len(camera.center) :]
    before, settles = _camera(viewer), view.settles
    viewer.window.resize(1366, 768)
    qtbot.waitUntil(lambda: view.settles > settles, timeout=WAIT_MS)
    np.testing.assert_allclose(_camera(viewer), before)


@pytest.mark.slow
def test_a_second_slide_opened_is_fitted(opened, qtbot):
    viewer, _, _ = opened
    viewer_camera(viewer).zoom = 50.0
    viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    assert viewer_camera(viewer).zoom < 50.0


@pytest.mark.slow
@pytest.mark.skipif(
    not slide_view.home_fits_given_layers(), reason="napari before 0.9.2 fits every layer"
)
def test_a_slide_opened_beside_another_is_fitted_alone(opened):
    """The second slide is fitted, not the union with the first (it showed small, in a corner
    of the larger one's extent)."""
    viewer, first, _ = opened
    [second] = viewer.open(str(HGSC_HELDOUT), plugin="napari-conch")
    box = slide_view.world_box(second)
    assert not np.allclose(box, slide_view.world_box(first))  # another size, another unit
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], box.mean(axis=0), atol=1.0)
