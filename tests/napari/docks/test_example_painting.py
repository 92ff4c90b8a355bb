"""What a stroke on the examples layer changes, as the session is told it."""

from __future__ import annotations

from napari_conch._napari.docks.example_painting import stroke_changes


def test_a_stroke_gives_the_tiles_it_changed_by_their_new_class():
    held = {(0, 0): "tumor", (0, 1): "stroma", (2, 2): "fat"}
    painted = {(0, 0): "tumor", (0, 1): "tumor", (1, 1): "tumor", (3, 3): "fat"}
    assert stroke_changes(painted, held) == {
        "tumor": [(0, 1), (1, 1)],
        "fat": [(3, 3)],
        None: [(2, 2)],  # erased
    }
    assert stroke_changes(held, held) == {}
