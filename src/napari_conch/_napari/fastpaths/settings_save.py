"""napari's settings file written a few event-loop turns after a dock is added, not in its turn.

napari writes its whole settings file (pydantic dump, YAML, file write) every time one of its
docks is placed: the ``dockLocationChanged`` handler of every ``QtViewerDockWidget`` records
the dock's area in ``settings.application.plugin_widget_positions`` and saves at once. Adding a
napari-conch dock thus wrote the file inside the event-loop turn that opens the dock: 6-10 ms of
the GUI thread and 25-50 ms of wall time on a busy machine (``bench/stalls.py``, "open ...").

:func:`save_settings_later` turns napari's save-on-change off (its private ``_save_on_change``)
while the dock is added, and :data:`SAVE_DELAY_MS` later turns it on again and saves once if
it was held: the same file, written in a turn of its own. With the fast paths off, on a napari
without that attribute, or when napari does not save on change anyway (tests), it does nothing.
"""

from __future__ import annotations

import logging

from qtpy.QtCore import QTimer

from napari_conch._napari import fastpaths

logger = logging.getLogger("napari_conch")

#: Milliseconds after the dock's turn when napari's settings are saved (after the dock's
#: opening turns, :data:`~napari_conch._napari.docks.base.OPEN_STEP_MS` apart).
SAVE_DELAY_MS = 150
#: Whether a delayed save is pending (napari's save-on-change is held by us).
_holding = False


def save_settings_later() -> bool:
    """Hold napari's settings save until :data:`SAVE_DELAY_MS` from now; whether it is held."""
    global _holding
    if not fastpaths.enabled():
        return False
    if _holding:
        return True
    from napari.settings import get_settings

    settings = get_settings()  # napari's one settings object (read when napari started)
    if getattr(settings, "_save_on_change", None) is not True or not settings.config_path:
        return False
    settings._save_on_change = False
    _holding = True

    def save() -> None:
        global _holding
        _holding = False
        settings._save_on_change = True
        try:
            settings._maybe_save()
        except OSError as exc:  # as napari's own save would have: the dock stays open
            logger.warning("napari-conch: napari's settings were not saved: %s", exc)

    QTimer.singleShot(SAVE_DELAY_MS, save)
    return True
