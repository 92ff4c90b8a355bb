"""The four docks and their parts.

- :mod:`.base`: :class:`~.base.DockBase`, what every dock needs (session, notices, workers).
- :mod:`.prompt_dock`, :mod:`.caption_dock`, :mod:`.annotate_dock`, :mod:`.cohort_dock`: the docks.
- :mod:`.panels`, :mod:`.caption_panels`, :mod:`.annotate_panels`: their parts (no behaviour).
- :mod:`.form`, :mod:`.scroll_layout`: labelled panels; compact, scrolling, tabbed docks.
- :mod:`.workers`, :mod:`.notices`, :mod:`.cursor_status`: slow calls off the GUI thread,
  toasts that fit, the map value under the cursor.
"""
