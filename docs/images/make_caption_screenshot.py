"""Make the user guide's caption screenshot: the caption and retrieval widget on the real slide.

Uses the tiny random test model of the shared fixtures (``$NAPARI_CONCH_FIXTURES``, default
``../shared/fixtures`` next to the repository), embedded at a coarse grid. Run under an X server::

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/images/make_caption_screenshot.py
"""

import json
import os
import pathlib
import tempfile
import time

import napari
import numpy as np
import torch
from napari._qt.dialogs.qt_notification import NapariQtNotification
from qtpy.QtWidgets import QApplication

from napari_conch._napari.caption_widget import viewer_camera
from napari_conch.engine.embed import embed_slide, open_job

REPO = pathlib.Path(__file__).resolve().parents[2]
FIX = pathlib.Path(os.environ.get("NAPARI_CONCH_FIXTURES", REPO.parent / "shared" / "fixtures"))
OUT = pathlib.Path(__file__).resolve().parent
SVS = FIX / "images/cmu_small_region.svs"
TOKENIZER = FIX / "reference/conch_byte_level_bpe_uncased.json"
ref = torch.load(FIX / "reference/coca_tiny_a.pt", weights_only=True)
d = pathlib.Path(tempfile.mkdtemp())
torch.save(ref["state_dict"], d / "pytorch_model.bin")
(d / "coca_tiny.json").write_text(json.dumps(ref["config"]))
job = open_job(
    SVS, d / "pytorch_model.bin", config=d / "coca_tiny.json", tokenizer=TOKENIZER,
    tile_size=256, stride=256, device="cpu", store_root=d,
)  # fmt: skip
embed_slide(job.slide, job.model, job.grid, job.store, min_tissue=0.2)


def wait(cond, t=120):
    end = time.time() + t
    while not cond():
        app.processEvents()
        time.sleep(0.01)
        assert time.time() < end


viewer = napari.Viewer(show=True)
app = QApplication.instance()
window = viewer.window._qt_window
window.move(0, 0)
window.resize(1366, 768)
[slide_layer] = viewer.open(str(SVS), plugin="napari-conch")
viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
_, w = viewer.window.add_plugin_dock_widget("napari-conch", "Caption and retrieval")
m = w.model_panel
m.source.value = str(d / "pytorch_model.bin")
m.config.value = d / "coca_tiny.json"
m.tokenizer.value = TOKENIZER
m.device.value = "cpu"
w.load_model()
wait(lambda: w.model is not None and not w.busy())
w.caption_panel.max_length.value = 12
w.rank_panel.texts.value = "tumor\nstroma\nadipose tissue\nlymphocytes"
w.tiles_panel.store_root.value = d
w.tiles_panel.prompt.value = "tumor"
w.tiles_panel.k.value = 5
w.find_top_tiles()
wait(lambda: len(w.hits) == 5 and not w.busy())
layer = w.draw_region()
scale, translate = np.asarray(slide_layer.scale), np.asarray(slide_layer.translate)
x0, y0, x1, y1 = 1100, 700, 1500, 1100
corners = translate + (np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]) - 0.5) * scale
layer.add_rectangles([np.array([layer.world_to_data(c) for c in corners])])
wait(lambda: w.caption_text is not None and len(w.ranking) == 4 and not w.busy())
viewer.reset_view()
w.go_to_hit(0)
camera = viewer_camera(viewer)
camera.zoom = camera.zoom / 4
end = time.time() + 1
while time.time() < end:
    app.processEvents()
    time.sleep(0.01)
for toast in window.findChildren(NapariQtNotification):
    toast.close()
w.sections["Model"].collapse(animate=False)
w.sections["Region"].collapse(animate=False)
pause_until = time.time() + 0.5
while time.time() < pause_until:
    app.processEvents()
w.native.verticalScrollBar().setValue(w.sections["Caption"].y())
end = time.time() + 1
while time.time() < end:
    app.processEvents()
    time.sleep(0.01)
viewer.screenshot(str(OUT / "caption.png"), canvas_only=False)
print("ok", w.errors, repr(w.caption_text))
viewer.close()
