"""Training and evaluation of the demo CoCa (see ``docs/demo-model.md``).

Not part of the installed package: these scripts read the real fixture images, derive tile labels
from real annotations (nucleus polygons) or physics (colour deconvolution, the tissue mask), train
a small CoCa of :mod:`napari_conch.model` and write it to ``src/napari_conch/demo/data/``. Run them
from the repository root::

    python -m train.train_demo        # tokenizer, training, evaluation (~10 min on 2 CPU cores)
    python -m train.evaluate_demo     # evaluation of the shipped model only

They need ``pyarrow`` and ``shapely`` (nucleus polygons), which the package itself does not.
"""
