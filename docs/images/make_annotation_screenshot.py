"""Make the annotation guide's screenshot: the Annotate dock over the HGSC stromal H&E image.

Uses the demo model shipped with the package (not CONCH) and the H&E image of the shared
fixtures (``$NAPARI_CONCH_FIXTURES``, default ``../shared/fixtures``), written as a tiled TIFF at
0.5 um/px. The model, the embedding and the prompts "tumor cells", "stroma", "inflammatory
cells" are set on the session (as the Prompt highlighter sets them); in the Annotate dock a few
tiles of the training boxes are marked as examples of their nucleus class (as a user paints
them). Run under an X server at laptop size::

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/images/make_annotation_screenshot.py
"""

import os
import pathlib
import sys
import tempfile

import imagecodecs
import numpy as np
import tifffile
from screens import laptop_viewer, pause, wait

from napari_conch.engine.session.prompt_request import PromptRequest

OUT = pathlib.Path(__file__).resolve().parent
REPO = OUT.parents[1]
sys.path.insert(0, str(REPO))
FIX = pathlib.Path(os.environ.get("NAPARI_CONCH_FIXTURES", REPO.parent / "shared" / "fixtures"))
TMP = pathlib.Path(tempfile.mkdtemp())


viewer = laptop_viewer()
image = TMP / "hgsc_stromal_he.tif"
pixels = imagecodecs.imread(FIX / "images/hgsc_stromal_he.jpg")
tifffile.imwrite(image, pixels, tile=(256, 256), resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
viewer.open(str(image), plugin="napari-conch")
_, a = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
session = a.session  # what the Prompt highlighter does, through the session the docks share
session.load_model("demo", device="cpu")
session.set_options(store_root=TMP)
a.require_slide()
session.embed()
session.set_prompts(PromptRequest(("tumor cells", "stroma", "inflammatory cells"), "conch"))
wait(lambda: a.outcome is not None and not a.busy())

# examples as a user would paint them: tiles of the training boxes, by their nucleus class
from train.images import read_json  # noqa: E402
from train.labels import label_map_for  # noqa: E402

entry = next(e for e in read_json()["images"] if e["name"] == "hgsc_stromal_he")
grid = session.store.grid
boxes = grid.boxes().reshape(-1, 4)
whole = (boxes[:, 2] <= pixels.shape[1]) & (boxes[:, 3] <= pixels.shape[0])
whole &= boxes[:, 3] <= entry["train_boxes"][0][3]
labels = np.full(len(boxes), "", dtype=object)
labels[whole] = label_map_for(entry, pixels, FIX).labels(boxes[whole].astype(np.int64))
rng = np.random.default_rng(0)
names = {"tumor": "tumor cells", "stroma": "stroma", "inflammatory": "inflammatory cells"}
for concept, name in names.items():
    found = np.flatnonzero(labels == concept)
    chosen = rng.choice(found, min(3, len(found)), replace=False)
    print(concept, len(found))
    a.label_tiles([divmod(int(i), grid.cols) for i in chosen], name)
a.class_panel.klass.value = "stroma"
a.paint_examples()
wait(lambda: a.outcome is not None and a.outcome.used == len(a.examples()) and not a.busy())
pause(1)
for name in ("CONCH similarity", "CONCH probability", "CONCH labels"):
    if name in viewer.layers:
        viewer.layers[name].visible = False
viewer.reset_view()
pause(1)
viewer.screenshot(str(OUT / "annotate.png"), canvas_only=False)
print("ok", a.errors, a.learn_panel.validation.value)
viewer.close()
