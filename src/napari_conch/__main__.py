"""``python -m napari_conch`` runs the command line."""

import sys

from napari_conch.cli import main

sys.exit(main())
