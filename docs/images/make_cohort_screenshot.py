"""Make docs/images/cohort.png: the Cohort dock on the worked example of docs/cohorts.md.

Classifies the fixture slides (``$NAPARI_CONCH_FIXTURES/images``) with the demo model into a
temporary folder (as the worked example does), opens the Cohort dock, sorts the slides by
probability, opens the tumour nest and searches the cohort for "tumor cells". Run under an X
server::

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/images/make_cohort_screenshot.py
"""

import json
import os
import pathlib
import tempfile

from screens import laptop_viewer, pause, wait

from napari_conch.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]
FIX = pathlib.Path(os.environ.get("NAPARI_CONCH_FIXTURES", REPO.parent / "shared" / "fixtures"))
IMAGES = FIX / "images"
OUT = pathlib.Path(__file__).resolve().parent / "cohort.png"
PROMPTS = {
    "0": {
        "classnames": {
            "tumor": ["tumor cells", "carcinoma cells"],
            "stroma": ["stroma", "connective tissue"],
            "ihc positive": ["dab positive staining", "brown dab staining"],
            "skin": ["skin tissue", "h&e stained skin"],
        },
        "templates": ["CLASSNAME", "a photomicrograph of CLASSNAME"],
    }
}

folder = pathlib.Path(tempfile.mkdtemp())
prompts = folder / "demo_prompts.json"
prompts.write_text(json.dumps(PROMPTS))
slides = [IMAGES / n for n in ("cmu_small_region.svs", "hgsc_nest.jpg", "hgsc_stromal_he.jpg")]
slides.append(IMAGES / "ihc.png")
argv = ["classify-slides", *map(str, slides), "--model", "demo", "--mpp", "0.5"]
argv += ["--slide-mpp", "0.5", "--store", str(folder / "stores"), "--prompts", str(prompts)]
argv += ["--topk", "1,5,10,50", "--out", str(folder / "slides.csv"), "--quiet"]
assert main(argv) == 0


viewer = laptop_viewer()
_, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Cohort")
dock.slides_csv.value = folder / "slides.csv"
dock.prompts.value = prompts
table = dock.load_slides()
dock.slides.sort(2, descending=True)
nest = next(i for i, r in enumerate(table.rows) if r.slide == "hgsc_nest")
dock.open_slide(nest)
wait(lambda: dock.opened is not None and not dock.busy())
dock.query.value = "tumor cells"
dock.k.value = 10
dock.search_cohort()
wait(lambda: dock.hits and not dock.busy())
dock.go_to_hit(0)
wait(lambda: not dock.busy())
viewer.camera.zoom = viewer.camera.zoom / 6  # the nest around the hit
pause(1)
viewer.screenshot(str(OUT), canvas_only=False)
print(OUT, dock.errors)
