"""Make the user guide's caption screenshot: the caption and retrieval dock on the H&E sample.

Uses the demo model (not CONCH) on its held-out H&E sample, where it is known to work: its
decoder captions tiles with its training captions, so the caption and the rankings mean
something. Run under an X server::

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/images/make_caption_screenshot.py
"""

import pathlib
import tempfile

import numpy as np
from screens import close_notifications, laptop_viewer, pause, wait

from napari_conch.engine.embed import embed_slide, open_job
from napari_conch.samples import HGSC_HELDOUT

OUT = pathlib.Path(__file__).resolve().parent
SLIDE = HGSC_HELDOUT
d = pathlib.Path(tempfile.mkdtemp())
job = open_job(SLIDE, "demo", device="cpu", store_root=d)
embed_slide(job.slide, job.model, job.grid, job.store)


viewer = laptop_viewer()
[slide_layer] = viewer.open(str(SLIDE), plugin="napari-conch")
viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
_, w = viewer.window.add_plugin_dock_widget("napari-conch", "Caption and retrieval")
m = w.model_panel
m.source.value = "demo"
m.device.value = "cpu"
w.load_model()
wait(lambda: w.model is not None and not w.busy())
w.caption_panel.max_length.value = 12
w.rank_panel.texts.value = "tumor cells\nstroma\ninflammatory cells\nbackground glass"
w.tiles_panel.store_root.value = d
w.tiles_panel.prompt.value = "tumor cells"
w.tiles_panel.k.value = 5
w.find_top_tiles()
wait(lambda: len(w.hits) == 5 and not w.busy())
layer = w.draw_region()
scale, translate = np.asarray(slide_layer.scale), np.asarray(slide_layer.translate)
x0, y0, x1, y1 = 400, 512, 656, 768  # in the stroma
corners = translate + (np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]) - 0.5) * scale
layer.add_rectangles([np.array([layer.world_to_data(c) for c in corners])])
wait(lambda: w.caption_text is not None and len(w.ranking) == 4 and not w.busy())
w.go_to_hit(0)  # the hit is outlined; then the whole sample is shown
viewer.reset_view()
pause(1)
close_notifications(viewer)
w.sections["Model"].collapse(animate=False)
w.sections["Region"].collapse(animate=False)
pause(0.5)
w.native.verticalScrollBar().setValue(w.sections["Caption"].y())
pause(1)
viewer.screenshot(str(OUT / "caption.png"), canvas_only=False)
print("ok", w.errors, repr(w.caption_text))
viewer.close()
