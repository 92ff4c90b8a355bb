"""What the screenshot scripts share: a napari window the size of a laptop screen, and waiting.

The scripts run under an X server (``xvfb-run -a -s "-screen 0 1366x768x24" python ...``); each
makes its window with :func:`laptop_viewer` and drives the docks, waiting with :func:`wait`.
"""

from __future__ import annotations

import time

#: The screen the documentation's screenshots are made at (a common laptop screen).
SCREEN = (1366, 768)


def laptop_viewer():
    """A shown napari viewer whose window fills a 1366 x 768 screen from its corner."""
    import napari

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.move(0, 0)
    window.resize(*SCREEN)
    return viewer


def pause(seconds: float) -> None:
    """Run the Qt event loop for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    app, end = QApplication.instance(), time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


def wait(condition, timeout: float = 180) -> None:
    """Run the Qt event loop until ``condition()``; fail after ``timeout`` seconds."""
    from qtpy.QtWidgets import QApplication

    app, end = QApplication.instance(), time.time() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.01)
        assert time.time() < end, "the screenshot's state was not reached in time"


def close_notifications(viewer) -> None:
    """Close napari's toasts (they would cover the canvas in the screenshot)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
