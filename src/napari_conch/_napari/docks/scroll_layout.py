"""Compact dock layout: a scroll area that really scrolls, foldable sections, tabbed docks.

napari docks a magicgui widget's ``native``; magicgui's own ``scrollable=True`` puts the scroll
area *around* ``native``, so napari docks the inner widget and the scroll area is left without a
parent: a tall dock then forces the window taller than the screen. :class:`DockScrollArea` is
returned as the dock's ``native`` instead (see :class:`~.dock_base.DockBase`), with a narrow
size hint, so the canvas keeps most of the window.

Sections are superqt's :class:`~superqt.QCollapsible`; :func:`fold` moves a magicgui widget
into one, in place. :func:`tabify_with_siblings` puts the napari-conch docks of a window in one
area as tabs instead of stacking them.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QSizePolicy, QWidget
from superqt import QCollapsible

#: Width a dock asks for (pixels): about a quarter of a 1366 px laptop screen.
DOCK_WIDTH = 300
#: Narrowest a dock may be made.
DOCK_MIN_WIDTH = 240


class DockScrollArea(QScrollArea):
    """A vertical scroll area with a narrow size hint, holding a dock's content."""

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumWidth(DOCK_MIN_WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        content.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.setWidget(content)
        #: Called once the area, having been docked, loses its parent: napari's
        #: ``remove_dock_widget`` (the dock's close button) keeps the inner widget alive.
        self.on_removed: Any = None
        self._docked = False

    def event(self, event: QEvent) -> bool:
        """Notice the area being taken out of its dock (see :attr:`on_removed`)."""
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked and self.on_removed is not None:
                self._docked = False
                self.on_removed()
        return super().event(event)

    def sizeHint(self) -> QSize:
        """Narrow, and no taller than the content."""
        content = self.widget()
        height = content.sizeHint().height() if content is not None else 200
        return QSize(DOCK_WIDTH, min(height, 600))

    def minimumSizeHint(self) -> QSize:
        """Any height: the content scrolls."""
        return QSize(DOCK_MIN_WIDTH, 80)


#: Pixels superqt's section adds under its content.
SECTION_MARGIN = 10
#: When a section refits its content: a new layout asked for, shown (a tab raised), resized.
_REFIT = (QEvent.Type.LayoutRequest, QEvent.Type.Show, QEvent.Type.Resize)


class _FollowContent(QObject):
    """Fits an expanded section to its content's height for its width (see :func:`section`)."""

    def __init__(self, box: QCollapsible, content: QWidget) -> None:
        super().__init__(box)
        self._box = box
        self._content = content

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in _REFIT and self._box.isExpanded():
            inner = self._box.content()
            layout = inner.layout()
            if layout is not None and layout.hasHeightForWidth() and inner.width() > 0:
                # wrapped lines at the width there is: more lines than the size hint counts
                # when the dock is narrow, fewer when it is wide (an empty wrapping label's
                # size hint is 114 px tall)
                need = layout.totalHeightForWidth(inner.width())
            else:
                need = inner.sizeHint().height()
            inner.setMinimumHeight(need + SECTION_MARGIN)  # the dock's layout must give it
            inner.setMaximumHeight(need + SECTION_MARGIN)
        return False

    def toggled(self, expanded: bool) -> None:
        self._content.setVisible(expanded)  # shown: refitted by its Show event
        if not expanded:
            self._box.content().setMinimumHeight(0)  # folded: superqt's zero height holds


def section(title: str, content: QWidget, *, expanded: bool = True) -> QCollapsible:
    """A collapsible section titled ``title`` holding ``content``.

    superqt's section fixes the expanded content's height at its size hint of the moment (which
    ignores how many lines wrapped text takes at the dock's width) and updates it only when the
    content is resized; a line whose text grows later (a status that wraps to four lines) was
    then cut off. Whenever the content asks for a new layout, is shown or resized, the section
    takes the height the content needs at its width.

    A folded section's content is hidden, not only squeezed to no height as superqt does: Qt
    then neither polishes, lays out nor paints its widgets until it is unfolded, which keeps
    the opening of a dock (one event-loop turn) shorter.
    """
    box = QCollapsible(title)
    box.setDuration(0)  # no animation: the canvas does not redraw for each step
    box.addWidget(content)
    # Qt runs the filter installed last first: superqt's own (which sets the height from the
    # size hint on a resize) goes before ours, so that ours has the last word.
    follow = _FollowContent(box, content)
    content.removeEventFilter(box)
    content.installEventFilter(follow)
    content.installEventFilter(box)
    box.toggled.connect(follow.toggled)
    if expanded:
        box.expand(animate=False)
    else:
        box.collapse(animate=False)
    return box


def fold(widget: Any, title: str, *, expanded: bool = False) -> QCollapsible:
    """Move a magicgui widget into a collapsible section, where it was in its parent's layout."""
    native = widget.native
    holder = native.parentWidget()
    outer = native
    # magicgui may wrap the widget in a labelled row: replace the row itself
    while holder is not None and holder.layout() is not None and holder.layout().indexOf(outer) < 0:
        outer, holder = holder, holder.parentWidget()
    if holder is None or holder.layout() is None:
        raise ValueError(f"{widget!r} is not in a layout")
    layout = holder.layout()
    index = layout.indexOf(outer)
    box = section(title, native, expanded=expanded)
    layout.insertWidget(index, box)
    if outer is not native:
        outer.hide()
    return box


def compact_label(label: Any) -> None:
    """Let a magicgui Label wrap its text, left-aligned, and never widen its dock."""
    native = label.native
    native.setWordWrap(True)
    native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    native.setMinimumWidth(1)


def compact(widget: Any) -> None:
    """Make a magicgui widget (a container: each of its rows) shrink with the dock.

    Labels wrap, text fields and tables shrink; containers lose their margins.
    """
    from magicgui.widgets import Container, FileEdit, Label, LineEdit, Table, TextEdit

    if isinstance(widget, FileEdit):
        compact_row(widget.line_edit)
    elif isinstance(widget, Label):
        compact_label(widget)
    elif isinstance(widget, LineEdit | TextEdit | Table):
        compact_row(widget)
    elif isinstance(widget, Container):
        widget.margins = (0, 0, 0, 0)
        for child in widget:
            compact(child)


def compact_row(widget: Any) -> None:
    """Let a magicgui widget (line edit, file edit, combo) shrink with its dock."""
    native = widget.native
    native.setMinimumWidth(1)
    policy = native.sizePolicy()
    native.setSizePolicy(QSizePolicy.Policy.Ignored, policy.verticalPolicy())


def dock_of(widget: QWidget) -> QDockWidget | None:
    """The QDockWidget holding ``widget``, or None."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


#: What napari adds to a plugin dock's name; on a tab, where four share 300 px, it only hides
#: the dock's own name ("C...", "An...").
PLUGIN_SUFFIX = " (napari-conch)"
#: Tab titles of the docks whose names do not fit a quarter of 300 px (with all four docks
#: open the tabs read "C...", "An...", "Caption and re...", "Prompt high..." otherwise).
TAB_TITLES = {"Prompt highlighter": "Prompts", "Caption and retrieval": "Caption"}


def shorten_tab_title(dock: QDockWidget) -> None:
    """The dock's tab says a short form of its own name (napari's title bar keeps the full one)."""
    title = dock.windowTitle()
    if title.endswith(PLUGIN_SUFFIX):
        title = title[: -len(PLUGIN_SUFFIX)]
    title = TAB_TITLES.get(title, title)
    if title != dock.windowTitle():
        dock.setWindowTitle(title)


def tabify_with_siblings(widget: QWidget, is_sibling: Any) -> bool:
    """Put the dock holding ``widget`` in a tab with the other docks for which ``is_sibling``.

    ``is_sibling(dock_widget)`` says whether another QDockWidget is one of ours. Returns whether
    the dock was tabified.
    """
    dock = dock_of(widget)
    if dock is None:
        return False
    window = dock.parentWidget()
    while window is not None and not isinstance(window, QMainWindow):
        window = window.parentWidget()
    if window is None:
        return False
    area = window.dockWidgetArea(dock)
    others = [
        d
        for d in window.findChildren(QDockWidget)
        if d is not dock and not d.isFloating() and window.dockWidgetArea(d) == area
        and d.isVisible() and is_sibling(d)
    ]  # fmt: skip
    if not others:
        return False
    for tabbed in (dock, *others):
        shorten_tab_title(tabbed)
    if any(dock in window.tabifiedDockWidgets(other) for other in others):
        return False  # already a tab of theirs
    # join the siblings' tabs where there are some (docks added in one go tabify in turn)
    others.sort(key=lambda other: not window.tabifiedDockWidgets(other))
    # The dock stays in the area napari put it in (its siblings' area): napari's handler of
    # the dock's move, which writes napari's settings file at every move (5-7 ms of the GUI
    # thread and a file write: 20-40 ms on a busy machine), has nothing new to write.
    blocked = dock.blockSignals(True)
    try:
        window.tabifyDockWidget(others[0], dock)
    finally:
        dock.blockSignals(blocked)
    dock.show()
    dock.raise_()
    return True
