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

import imagecodecs
import tifffile
from screens import close_notifications, laptop_viewer, pause, wait

from napari_conch._napari.demo import start_demo
from napari_conch.samples import CMU_SMALL_REGION

OUT = pathlib.Path(__file__).resolve().parent
REPO = OUT.parents[1]
FIX = pathlib.Path(os.environ.get("NAPARI_CONCH_FIXTURES", REPO.parent / "shared" / "fixtures"))
TMP = pathlib.Path(tempfile.mkdtemp())


viewer = laptop_viewer()
window = viewer.window._qt_window
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
close_notifications(viewer)
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
close_notifications(viewer)
pause(0.5)
viewer.screenshot(str(OUT / "labels.png"), canvas_only=False)
print("ok", w.errors)
viewer.close()
