"""napari-conch: text-prompted tissue maps over whole-slide images with CONCH.

Importing this package is cheap: it imports neither torch, nor Qt, nor napari. The heavy parts
live in subpackages that are imported on use:

- :mod:`napari_conch.model`: the CONCH CoCa model, tokenizer, preprocessing and checkpoint loading.
- :mod:`napari_conch.slide`: whole-slide images as lazy pyramids, tile grids and tissue masks.
- :mod:`napari_conch.engine`: embedding slides into stores and turning prompts into maps.
"""

from napari_conch.errors import NapariConchError

__version__ = "0.1.0"

__all__ = ["NapariConchError", "__version__"]
