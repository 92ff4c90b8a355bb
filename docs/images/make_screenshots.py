"""Make the user guide's screenshots: the prompt highlighter over the real slide.

Uses the tiny random test model of the shared fixtures (``$NAPARI_CONCH_FIXTURES``, default
``../shared/fixtures`` next to the repository). Run under an X server::

    xvfb-run -a -s "-screen 0 2000x1100x24" python docs/images/make_screenshots.py
"""

import json
import os
import pathlib
import tempfile
import time

import napari
import torch
from qtpy.QtWidgets import QApplication

REPO = pathlib.Path(__file__).resolve().parents[2]
FIX = pathlib.Path(os.environ.get("NAPARI_CONCH_FIXTURES", REPO.parent / "shared" / "fixtures"))
OUT = pathlib.Path(__file__).resolve().parent
ref = torch.load(FIX / "reference/coca_tiny_a.pt", weights_only=True)
d = pathlib.Path(tempfile.mkdtemp())
torch.save(ref["state_dict"], d / "pytorch_model.bin")
(d / "coca_tiny.json").write_text(json.dumps(ref["config"]))


def wait(cond, t=120):
    end = time.time() + t
    while not cond():
        app.processEvents()
        time.sleep(0.01)
        assert time.time() < end


def pause(s):
    end = time.time() + s
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


viewer = napari.Viewer(show=True)
app = QApplication.instance()
viewer.window._qt_window.resize(1900, 1000)
viewer.open(str(FIX / "images/cmu_small_region.svs"), plugin="napari-conch")
_, w = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
m = w.model_panel
m.source.value = str(d / "pytorch_model.bin")
m.config.value = d / "coca_tiny.json"
m.tokenizer.value = FIX / "reference/conch_byte_level_bpe_uncased.json"
m.device.value = "cpu"
w.load_model()
wait(lambda: w.model is not None)
s = w.slide_panel
s.store_root.value = d
s.tile_size.value = 128
s.stride.value = 128
s.min_tissue.value = 0.2
w.start_embedding()
wait(lambda: not w.embedding)
w.prompt_panel.text.value = "tumor"
wait(lambda: w.result is not None and w.result.names == ["tumor"])
pause(1)
viewer.reset_view()
pause(1)
viewer.screenshot(str(OUT / "heatmap.png"), canvas_only=False)
w.prompt_panel.text.value = "tumor\nstroma\nadipose tissue"
wait(lambda: w.result is not None and len(w.result.names) == 3)
pause(1)
viewer.layers["CONCH similarity"].visible = False
viewer.layers["CONCH probability"].visible = False
pause(1)
viewer.screenshot(str(OUT / "labels.png"), canvas_only=False)
print("ok", w.errors)
viewer.close()
