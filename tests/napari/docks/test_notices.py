"""Notices fit napari's toast: short lines, what matters in the first."""

from __future__ import annotations

from napari_conch._napari.docks.notices import NOTICE_LINE_CHARS, fits_toast, toast_text
from napari_conch.cli.view import DEMO_SAMPLE_NOTE
from napari_conch.demo import DEMO_CONCEPTS, DEMO_VIEW_PROMPTS


def test_a_long_message_is_wrapped_into_lines_that_fit():
    message = "17/17 tissue tiles embedded; store: /tmp/" + "a" * 70 + "/slide-bb46a3416dc0.zarr"
    text = toast_text(message)
    assert not fits_toast(message) and fits_toast(text)
    assert text.splitlines()[0] == "17/17 tissue tiles embedded; store:"
    assert "".join(text.split()) == "".join(message.split())  # nothing lost, the path whole


def test_short_messages_and_line_breaks_are_kept():
    assert toast_text("Exported map.tif") == "Exported map.tif"
    assert toast_text("one\ntwo") == "one\ntwo"


def test_the_demo_note_says_what_it_is_in_its_first_line():
    note = DEMO_SAMPLE_NOTE.format(
        prompts=", ".join(DEMO_VIEW_PROMPTS), known=", ".join(DEMO_CONCEPTS)
    )
    first = note.splitlines()[0]
    assert len(first) <= NOTICE_LINE_CHARS and "not CONCH" in first and "diagnosis" in first
    assert fits_toast(toast_text(note))
