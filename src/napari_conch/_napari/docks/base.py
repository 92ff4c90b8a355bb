"""The base of every napari-conch dock: what all of them need, written once.

:class:`DockBase` (in the manner of micro-sam's ``_WidgetBase``) gives a dock:

- ``viewer`` and ``session``: the viewer's one :class:`~napari_conch.engine.session.session.Session`
  (:func:`~napari_conch._napari.session_registry.session_for`). Docks read and change the state
  there and subscribe to its signals; no dock reads another.
- notices: :meth:`~DockBase.notify_error` / :meth:`~DockBase.notify_info` (one line, kept in
  ``errors`` for tests) and the :func:`reports_errors` decorator for handlers.
- the slide-layer choice: :meth:`~DockBase.bind_layer_combo` makes a ComboBox list the RGB image
  layers and keeps it in step with the session's slide (every dock shows the same slide);
  :meth:`~DockBase.require_slide` opens the chosen layer's slide when needed.
- the model: :meth:`~DockBase.bind_model_panel` wires a :class:`~.panels.ModelPanel` (Load, the
  demo model button, the loaded model's description) to the session.
- click arming: :meth:`~DockBase.arm_click` makes the next click on the canvas call a function
  with the world position (one armed click per dock; clicking the button again disarms).
- work off the GUI thread: :meth:`~DockBase.run` starts a napari thread worker for a named task,
  shows a :class:`~.workers.Failure` as a notice, keeps the worker alive until it ends and calls
  :meth:`~DockBase.update_busy` when a task starts or ends; :meth:`~DockBase.busy` says what runs.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_conch._napari.docks.notices import toast_text
from napari_conch._napari.docks.panels import DEVICE_FIELD, PRECISION_FIELD
from napari_conch._napari.docks.scroll_layout import (
    DockScrollArea,
    compact,
    fold,
    tabify_with_siblings,
)
from napari_conch._napari.docks.workers import USER_ERRORS, Failure, background, one_line
from napari_conch._napari.fastpaths.glyphs import warm_glyphs
from napari_conch._napari.fastpaths.process import freeze_long_lived_objects
from napari_conch._napari.fastpaths.settings_save import save_settings_later
from napari_conch._napari.layers import on_show, slide_view
from napari_conch._napari.layers.slide_source import layer_levels, slide_for_layer
from napari_conch._napari.layers.steps import STEP_GAP_MS
from napari_conch._napari.session_registry import session_for
from napari_conch._napari.warmup import WARM_UP_DELAY_MS, import_torch, warm_up
from napari_conch.errors import InputError

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import ComboBox, PushButton

logger = logging.getLogger("napari_conch")

#: Milliseconds between the event-loop turns that open a dock. Opening the Caption dock in one
#: turn took 80-90 ms of the GUI thread (building 49 magicgui widgets, 35-40; napari adding the
#: dock, polishing and laying out its content, about 25, with a write of napari's settings file;
#: joining the other docks' tabs, about 14, with another write; the window's repaint): napari
#: adds the dock, empty, in the first; it joins the tabs in the second; its sections are made
#: one per turn after that (a dock that gives them as a generator), then wired; its content is
#: shown in the last (Qt polishes and lays out a hidden widget only when it is shown).
OPEN_STEP_MS = STEP_GAP_MS


def reports_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Show user errors raised by a dock's handler as a one-line notification (returns None)."""

    @functools.wraps(method)
    def run(self: DockBase, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except USER_ERRORS as exc:
            self.notify_error(one_line(exc))
            return None

    return run


class DockBase(Container):
    """A napari-conch dock: a magicgui Container on the viewer's session.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when the dock is opened from the Plugins menu).
    sections : iterable of (title, Container), (title, Container, expanded) or Widget
        The dock's sections, top to bottom, each in a collapsible box (expanded unless told);
        a section's ``folds`` attribute, a list of ``(sub-container, title)``, names advanced
        options folded away inside it. A bare widget is placed as it is, without a box. A list
        is placed at once; a generator makes one section per event-loop turn (the first dock's
        opening built its 55 widgets in one turn: 84-114 ms of the GUI thread), after which
        :meth:`ready` wires the dock. Any attribute asked for before (a panel, by a test or a
        script) makes the rest at once (:meth:`finish_building`).

    Attributes
    ----------
    viewer : napari.Viewer
    session : Session
        The viewer's session.
    errors : list of str
        Every error shown, oldest first.
    """

    def __init__(self, napari_viewer: napari.Viewer, sections: Iterable[Any]) -> None:
        freeze_long_lived_objects()  # the viewer's and the panels' objects (fastpaths/process.py)
        save_settings_later()  # napari's settings file, written as the dock is added (fastpaths)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.errors: list[str] = []
        self._workers: set[Any] = set()
        self._busy: set[str] = set()
        self._closed = False
        self._scroll: DockScrollArea | None = None
        self._wired = False  # set by _ready: the sections are made and wired
        self._building = False
        self._sections_left = sections if isinstance(sections, Iterator) else None
        super().__init__(widgets=[], labels=False)
        #: The collapsible sections by title, and the folded advanced options inside them.
        self.sections: dict[str, Any] = {}
        self.advanced_sections: list[Any] = []
        self._folds_later: list[tuple[Any, str]] = []
        content = super().native  # the container's own widget
        self._scroll = DockScrollArea(content)
        self._scroll._magic_widget = self  # what napari's dock reads to give back this dock
        self.native.destroyed.connect(self._on_destroyed)
        self._scroll.on_removed = self._on_destroyed  # closed: napari keeps the widget alive
        self._listening: list[tuple[Any, Callable[..., Any]]] = []
        # On screen over several event-loop turns (see OPEN_STEP_MS): napari adds the dock,
        # empty; it joins its siblings' tabs; its sections are made, one per turn (a generator of
        # sections) or all at once (a list); their wiring is made (ready); its content is shown
        # (polished, laid out and painted).
        content.hide()
        if self._sections_left is None:
            for part in sections:
                self._place(part)
            self._ready()
        QTimer.singleShot(OPEN_STEP_MS, self._open_in_turns)
        QTimer.singleShot(WARM_UP_DELAY_MS, warm_up)  # once the dock is on screen
        me = weakref.ref(self)  # the glyphs' turns do not keep a closed dock alive
        warm_glyphs(self.viewer, alive=lambda: (dock := me()) is not None and not dock._closed)

    def _place(self, part: Any) -> None:
        """Add a section (``(title, panel)``, ``(title, panel, expanded)`` or a bare widget)."""
        title, panel, *expanded = part if isinstance(part, tuple) else (None, part)
        self.append(panel)
        compact(panel)
        if title is not None:
            box = fold(panel, title, expanded=expanded[0] if expanded else True)
            self.sections[title] = box
        for sub, sub_title in getattr(panel, "folds", ()):
            sub.native.hide()  # folded in the dock's last opening turn (_show_content)
            self._folds_later.append((sub, sub_title))

    def _ready(self) -> None:
        """The sections are made: what every dock listens to, then the dock's own :meth:`ready`.

        The state made here is made only now, so that asking for it before makes the sections
        first (:meth:`__getattr__`).
        """
        self._armed: tuple[PushButton, str, Callable[[Any], Any]] | None = None
        self._layer_combo: ComboBox | None = None
        self._level_box: Any = None
        self._model_panel: Any = None
        self._syncing = False
        self._wired = True
        layers = self.viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            event.connect(self.reset_choices)
        layers.selection.events.active.connect(self._on_active_layer)
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self.listen(self.session.events.slide_changed, self._on_session_slide)
        self.listen(self.session.events.model_changed, self._on_session_model)
        #: What the canvas says follows the map on show (the viewer's one follower).
        self.shown_map = on_show.follow(self.viewer)
        slide_view.watch(self.viewer)  # slides fitted as opened and as the window settles
        self.ready()

    def ready(self) -> None:
        """The dock's wiring once its sections are made (a dock's own; nothing here)."""

    @property
    def built(self) -> bool:
        """Whether every section is made and the dock wired (:meth:`ready` runs or ran)."""
        return self.__dict__.get("_wired", False)

    def finish_building(self) -> None:
        """Make the sections not made yet, now, and wire the dock (once)."""
        if self.__dict__.get("_sections_left") is None or self._building:
            return
        while self._make_next_section():
            pass

    def _make_next_section(self) -> bool:
        """Make and place the next section, or wire the dock after the last; whether one was
        made. Meanwhile the dock is ``_building``: what the section's code asks of it is asked of
        the dock as it is (no building within building)."""
        self._building = True
        try:
            part = next(self._sections_left, None)
            if part is not None:
                self._place(part)
        finally:
            self._building = False
        if part is None:
            self._sections_left = None
            self._ready()
            for then in self.__dict__.pop("_when_built", []):
                QTimer.singleShot(OPEN_STEP_MS, then)  # each in a turn of its own
        return part is not None

    def when_built(self, then: Callable[[], Any]) -> None:
        """Call ``then`` once the dock is built: now when it is, else in a turn after its last.

        For what would ask for the dock's panels before its turns made them (and so make them
        all in one turn, one long pause): ``napari-conch view`` starting its demo.
        """
        if self.built:
            then()
        else:
            self.__dict__.setdefault("_when_built", []).append(then)

    def __getattr__(self, name: str) -> Any:
        """A panel or state asked for before the dock's turns made it: the rest is made now."""
        state = self.__dict__
        if not name.startswith("__") and state.get("_sections_left") is not None:
            if not state.get("_building", True):
                self.finish_building()
                return getattr(self, name)
        return super().__getattr__(name)

    @property
    def native(self) -> Any:
        """The dock's outer Qt widget: the scroll area napari puts in the dock."""
        scroll = self.__dict__.get("_scroll")
        return scroll if scroll is not None else super().native

    def _open_in_turns(self) -> None:
        if self._closed:
            return
        self.tabify()
        QTimer.singleShot(OPEN_STEP_MS, self._build_in_turns)

    def _build_in_turns(self) -> None:
        """Make the next section in this turn (or wire the dock), then the rest in later turns;
        the content is shown in the turn after the wiring."""
        if self._closed:
            return
        if self._sections_left is None:
            QTimer.singleShot(OPEN_STEP_MS, self._show_content)
            return
        self._make_next_section()
        QTimer.singleShot(OPEN_STEP_MS, self._build_in_turns)

    def _show_content(self) -> None:
        """Fold the advanced options away, one per turn (a fold is 20-30 ms of the GUI thread
        here; the three of the Prompt dock in one turn were the longest pause of ``napari-conch
        view`` once its demo waited for the dock), then show the content."""
        if self._closed:
            return
        if self._folds_later:  # folded away: Qt leaves their content alone
            sub, title = self._folds_later.pop(0)
            self.advanced_sections.append(fold(sub, title, expanded=False))
            QTimer.singleShot(OPEN_STEP_MS, self._show_content)
            return
        self._scroll.widget().show()

    @property
    def on_screen(self) -> bool:
        """Whether the dock's content is on screen (its last opening turn has run)."""
        scroll = self._scroll
        return scroll is not None and not scroll.widget().isHidden()

    def tabify(self) -> bool:
        """Share one dock area with the other napari-conch docks, as tabs; returns whether done."""
        if self._closed:
            return False

        def ours(dock: Any) -> bool:
            return isinstance(getattr(dock.widget(), "_magic_widget", None), DockBase)

        return tabify_with_siblings(self.native, ours)

    # ------------------------------------------------------------------ notices
    def notify_error(self, message: str) -> None:
        """Show a one-line error (also kept in ``errors`` for tests and logs), wrapped to fit
        napari's toast (:func:`~.notices.toast_text`)."""
        self.errors.append(message)
        logger.warning(message)
        show_error(toast_text(message))

    def notify_info(self, message: str) -> None:
        """Show a one-line message, wrapped to fit napari's toast."""
        logger.info(message)
        show_info(toast_text(message))

    # ------------------------------------------------------------------ workers
    def run(
        self,
        task: str,
        worker: Any,
        done: Callable[[Any], Any] | None = None,
        *,
        failed: Callable[[str], Any] | None = None,
        progress: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Start ``worker`` as ``task``; returns it.

        ``done`` gets the worker's return value; a :class:`Failure` is shown as an error and
        passed (its message) to ``failed`` instead. ``progress`` gets each yielded item.
        """
        self._busy.add(task)
        self._workers.add(worker)

        def returned(value: Any) -> None:
            if self._closed:
                return
            if isinstance(value, Failure):
                self.notify_error(value.message)
                if failed is not None:
                    failed(value.message)
            elif done is not None:
                done(value)

        def finished() -> None:
            self._workers.discard(worker)
            self._busy.discard(task)
            if not self._closed:
                self.update_busy()

        worker.returned.connect(returned)
        if progress is not None:
            worker.yielded.connect(progress)
        worker.finished.connect(finished)
        self.update_busy()
        worker.start()
        return worker

    def _on_destroyed(self, *_: Any) -> None:
        """The dock's Qt widget is gone (viewer closed) or out of the window (the dock closed):
        it stops listening to the session, late worker results are dropped."""
        self._closed = True
        self.disconnect_session()

    def listen(self, signal: Any, slot: Callable[..., Any]) -> None:
        """Connect ``slot`` to a session signal until the dock is closed."""
        signal.connect(slot)
        self._listening.append((signal, slot))

    def disconnect_session(self) -> None:
        """Stop listening to the session (the dock was closed)."""
        for signal, slot in self._listening:
            signal.disconnect(slot, missing_ok=True)
        self._listening.clear()

    def busy(self, task: str | None = None) -> bool:
        """Whether ``task``, or any task, is running in a worker of this dock."""
        return bool(self._busy) if task is None else task in self._busy

    def check_idle(self, task: str, what: str) -> None:
        """Raise :class:`InputError` when ``task`` is running (``what`` names it for the user)."""
        if self.busy(task):
            raise InputError(f"{what} is under way: wait for it to finish")

    def update_busy(self) -> None:
        """Called when a task starts or ends: enable and disable buttons (subclasses)."""
        if self._model_panel is not None:
            idle = not self.busy("model") and not self.session.running
            self._model_panel.load.enabled = self._model_panel.demo.enabled = idle

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> Any:
        """The session's model (a ``LoadedModel``) or None."""
        return self.session.model

    def bind_model_panel(self, panel: Any) -> None:
        """Wire a :class:`~.panels.ModelPanel`: Load, the demo model, the model's description."""
        self._model_panel = panel
        panel.load.changed.connect(self.load_model)
        panel.demo.changed.connect(self.use_demo_model)
        if self.session.model is not None:
            self._show_model(self.session.model)

    @reports_errors
    def load_model(self, *_: Any, then: Callable[[Any], Any] | None = None, **given: Any) -> Any:
        """Load a model in a worker (cached loader); returns the worker.

        The model is the one the Model panel names, or ``given`` (``source``, ``config``,
        ``tokenizer``, ``device``, ``token``: what the panel would say; the panel's device and
        token for those not given). The panel shows the model once the session has it.
        ``then`` is called with the model once the session has it, or None when loading
        failed (a chain of steps: the demo start).
        """
        self.check_idle("model", "loading a model")
        arguments = self._load_arguments(given)
        source = arguments.pop("source")

        def prepare() -> Any:
            import_torch()  # before the model's modules do: see warmup.py
            return self.session.prepare_model(source, **arguments)

        worker = background(prepare)
        panel = self._model_panel
        panel.info.value = f"Loading {str(source).strip()} ..."

        def failed(_message: str) -> None:
            if self.session.model is None:
                panel.info.value = "No model loaded."
            else:
                self._show_model(self.session.model)
            if then is not None:
                then(None)

        def loaded(model: Any) -> None:
            self._set_model(model)
            if then is not None:
                then(self.session.model if self.session.model is model else None)

        return self.run("model", worker, loaded, failed=failed)

    def _load_arguments(self, given: dict[str, Any]) -> dict[str, Any]:
        """``Session.prepare_model``'s arguments: ``given``, else what the Model panel says."""
        panel = self._model_panel
        if "source" not in given:
            return {**panel.load_arguments(), **given}
        arguments = {
            "config": None,
            "tokenizer": None,
            "device": DEVICE_FIELD.read(panel.device.value),
            "precision": PRECISION_FIELD.read(panel.precision.value),
            "token": panel.token.value or None,
        }
        arguments.update({k: v for k, v in given.items() if v is not None})
        return arguments

    @reports_errors
    def _set_model(self, model: Any) -> None:
        freeze_long_lived_objects()  # the model's objects: see fastpaths/process.py
        self.session.set_model(model)
        self._show_model(model)

    @reports_errors
    def use_demo_model(self, *_: Any) -> Any:
        """Load the demo model shipped with the plugin (the Model panel shows it once loaded)."""
        from napari_conch.demo import DEMO_SOURCE

        return self.load_model(source=DEMO_SOURCE)

    def _on_session_model(self, model: Any) -> None:
        if self._model_panel is not None and model is not None:
            self._show_model(model)
        self.on_model_changed(model)

    def _show_model(self, model: Any) -> None:
        from napari_conch._napari.docks.panels import model_note, model_summary

        panel = self._model_panel
        source = str(model.source)
        if panel.source.value.strip() != source:  # the session's model, however it was loaded
            panel.source.value = source
            panel.config.value = panel.tokenizer.value = None
        panel.info.value = model_summary(model)
        panel.info.tooltip = model.describe()
        panel.note.value = model_note(model)

    def on_model_changed(self, model: Any) -> None:
        """Called when the session's model changes (subclasses)."""

    # ------------------------------------------------------------------ slide layer
    def rgb_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        """``(name, layer)`` of the viewer's RGB image layers (the choices of a slide combo)."""
        from napari.layers import Image

        return [(ly.name, ly) for ly in self.viewer.layers if isinstance(ly, Image) and ly.rgb]

    def bind_layer_combo(self, combo: ComboBox, level: Any = None) -> None:
        """Make ``combo`` the dock's slide-layer choice, in step with the session's slide.

        ``level``: a SpinBox whose maximum follows the chosen layer's pyramid levels.
        """
        self._layer_combo = combo
        self._level_box = level
        combo.choices = self.rgb_layers
        # magicgui shows the first choice; the slide is the session's, else the active layer
        # (what the layer events make of it in a dock wired before the layers came)
        source, active = self.session.slide_source, self.viewer.layers.selection.active
        for layer in (source, active):
            if layer is not None and layer in combo.choices:
                combo.value = layer
                break
        combo.changed.connect(self._on_layer_chosen)
        if combo.value is not None and combo.value is not source:
            self._on_layer_chosen(combo.value)
        self.reset_choices()

    @property
    def slide_layer(self) -> Any:
        """The image layer chosen as the slide, or None."""
        return None if self._layer_combo is None else self._layer_combo.value

    def require_slide(self) -> Any:
        """The session's slide for the chosen layer, opened when needed.

        Raises
        ------
        InputError
            When no RGB image layer is chosen, or the layer is not an 8-bit RGB image.
        """
        layer = self.slide_layer
        if layer is None:
            raise InputError("open a slide first: no RGB image layer to work on")
        session = self.session
        if session.slide is None or session.slide_source is not layer:
            session.set_slide(slide_for_layer(layer), source=layer)
        return session.slide

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        if not self.built:
            return  # the lists are made, and filled, with the sections
        super().reset_choices()
        combo = self._layer_combo
        if combo is None:
            return
        source = self.session.slide_source
        if source is not None and source in combo.choices and combo.value is not source:
            self._show_layer(source)
        elif combo.value is None:
            active = self.viewer.layers.selection.active
            if active is not None and active in combo.choices:
                combo.value = active
        if combo.value is None and not self.session.running and self.session.slide is not None:
            if source is not None and source not in self.viewer.layers:
                self.session.set_slide(None)

    def _on_active_layer(self, event: Any) -> None:
        layer, combo = event.value, self._layer_combo
        if combo is None or layer is None or layer not in combo.choices:
            return
        if not self.session.running and combo.value is not layer:
            combo.value = layer

    def _on_layer_chosen(self, layer: Any) -> None:
        if layer is not None and self._level_box is not None:
            self._level_box.max = max(0, len(layer_levels(layer)) - 1)
        if self._syncing or layer is None or layer is self.session.slide_source:
            return
        if self.session.running:
            return  # the combo is disabled during a run; the session keeps its slide
        try:
            slide = slide_for_layer(layer)
        except USER_ERRORS:
            slide = None  # said when the slide is needed (require_slide raises it again)
        self.session.set_slide(slide, source=layer)

    def _on_session_slide(self, slide: Any) -> None:
        source = self.session.slide_source
        combo = self._layer_combo
        if combo is not None and source is not None and source in combo.choices:
            self._show_layer(source)
        if source is not None:  # the slide worked on is the one on show (not under another)
            slide_view.watch(self.viewer).show_alone(source.name)
        self.on_slide_changed(slide)

    def _show_layer(self, layer: Any) -> None:
        self._syncing = True
        try:
            self._layer_combo.value = layer
        finally:
            self._syncing = False
        if self._level_box is not None:
            self._level_box.max = max(0, len(layer_levels(layer)) - 1)

    def on_slide_changed(self, slide: Any) -> None:
        """Called when the session's slide changes (subclasses)."""

    # ------------------------------------------------------------------ clicks on the canvas
    def arm_click(
        self, button: PushButton, armed_text: str, callback: Callable[[Any], Any]
    ) -> bool:
        """Make the next click on the canvas call ``callback(world_position)``.

        The button shows ``armed_text`` while armed; arming it again disarms. Returns whether
        the click is armed.
        """
        previous = self._armed
        self.disarm_click()
        if previous is not None and previous[0] is button:
            return False
        self._armed = (button, button.text, callback)
        button.text = armed_text
        return True

    def disarm_click(self) -> None:
        """Forget an armed click (its button gets its text back)."""
        if self._armed is not None:
            button, text, _ = self._armed
            button.text = text
            self._armed = None

    @property
    def click_armed(self) -> bool:
        """Whether a click on the canvas is armed."""
        return self._armed is not None

    def _on_click(self, viewer: Any, event: Any) -> None:
        if self._armed is not None and event.type == "mouse_press":
            callback = self._armed[2]
            self.disarm_click()
            callback(event.position)
