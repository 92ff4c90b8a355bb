"""Make the user guide's screenshots: the prompt highlighter over the real sample slide.

Uses the demo model shipped with the package (a small CoCa trained on openly licensed images,
not CONCH), exactly as ``napari-conch view`` starts it: a heatmap over the shipped sample slide,
then labels over the H&E tumour-nest image of the shared fixtures (``$NAPARI_CONCH_FIXTURES``,
default ``../shared/fixtures``; most of it was demo training data). The window is a 1366 x 768
laptop screen with both napari-conch docks open (tabbed). Run under an X server::

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/images/make_screenshots.py
"""

import os
import pathlib
import tempfile
import time

import imagecodecs
import napari
import tifffile
from qtpy.QtWidgets import QApplication

from napari_conch._napari.demo import start_demo
from napari_conch.samples import CMU_SMALL_REGION

OUT = pathlib.Path(__file__).resolve().parent
REPO = OUT.parents[1]
FIX = pathlib.Path(os.environ.get("NAPARI_CONCH_FIXTURES", REPO.parent / "shared" / "fixtures"))
TMP = pathlib.Path(tempfile.mkdtemp())


def wait(cond, t=120):
    end = time.time() + t
    while not cond():
        app.processEvents()
        time.sleep(0.01)
        assert time.time() < end


def close_notifications():
    """Close napari's toasts (they would cover the canvas in the screenshot)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in window.findChildren(NapariQtNotification):
        toast.close()


def pause(s):
    end = time.time() + s
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


viewer = napari.Viewer(show=True)
app = QApplication.instance()
window = viewer.window._qt_window
window.move(0, 0)
window.resize(1366, 768)
viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
_, caption = viewer.window.add_plugin_dock_widget("napari-conch", "Caption and retrieval")
_, w = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
pause(0.5)
window.resize(1366, 768)
w.model_panel.device.value = "cpu"
w.slide_panel.store_root.value = TMP
start_demo(w, ["stroma"])
wait(lambda: w.model is not None)
wait(lambda: w.session is not None and not w.embedding)
wait(lambda: w.result is not None and w.result.names == ["stroma"] and not w.drawing)
w.sections["Model"].collapse(animate=False)
pause(1)
viewer.reset_view()
pause(1)
close_notifications()
pause(0.5)
viewer.screenshot(str(OUT / "heatmap.png"), canvas_only=False)
# labels: the tumour nest image as a tiled TIFF (0.5 um/px, like the demo's training tiles)
nest = TMP / "hgsc_nest.tif"
pixels = imagecodecs.imread(FIX / "images/hgsc_nest.jpg")
tifffile.imwrite(nest, pixels, tile=(256, 256), resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
viewer.layers.clear()  # the maps go with their slide
viewer.open(str(nest), plugin="napari-conch")
wait(lambda: w.slide_layer is not None and w.slide_layer.name == "hgsc_nest")
w.start_embedding()
wait(lambda: not w.embedding)
w.prompt_panel.text.value = "tumor cells\nstroma\ninflammatory cells"
wait(lambda: w.result is not None and len(w.result.names) == 3 and not w.drawing)
w.sections["Slide and embedding"].collapse(animate=False)
pause(1)
viewer.reset_view()
viewer.layers["CONCH similarity"].visible = False
viewer.layers["CONCH probability"].visible = False
pause(1)
close_notifications()
pause(0.5)
viewer.screenshot(str(OUT / "labels.png"), canvas_only=False)
print("ok", w.errors)
viewer.close()
