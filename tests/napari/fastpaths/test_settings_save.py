"""napari's settings file written a few turns after a dock is added, not in the dock's turn."""

from __future__ import annotations

import pytest
import yaml

from napari_conch._napari.fastpaths import settings_save

pytestmark = pytest.mark.gui


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """napari settings that save to a file of their own on every change (as a user's do)."""
    import napari.settings
    from napari.settings import NapariSettings

    mine = NapariSettings(config_path=tmp_path / "settings.yaml")
    monkeypatch.setattr(napari.settings, "get_settings", lambda *_: mine)
    return mine


def _dock_moved(settings, area: str) -> None:
    """What napari does when one of its docks is placed (QtViewerDockWidget's handler)."""
    settings.application.plugin_widget_positions["napari-conch: test dock"] = area
    settings._maybe_save()


def _saved_position(settings):
    if not settings.config_path.exists():
        return None
    data = yaml.safe_load(settings.config_path.read_text()) or {}
    positions = data.get("application", {}).get("plugin_widget_positions", {})
    return positions.get("napari-conch: test dock")


@pytest.mark.fast_paths
def test_the_settings_are_saved_once_a_few_turns_later(settings, qtbot):
    assert settings_save.save_settings_later()
    _dock_moved(settings, "right")
    _dock_moved(settings, "left")  # a second move in the same turn (tabified): one save later
    assert _saved_position(settings) is None  # not in the dock's turn
    assert settings_save.save_settings_later()  # another dock meanwhile: still one save
    qtbot.waitUntil(lambda: _saved_position(settings) == "left", timeout=5000)
    assert settings._save_on_change  # napari saves on change again
    _dock_moved(settings, "bottom")
    assert _saved_position(settings) == "bottom"


def test_with_the_fast_paths_off_napari_saves_at_once(settings, monkeypatch):
    from napari_conch._napari import fastpaths

    monkeypatch.setenv(fastpaths.SWITCH, "0")
    assert not settings_save.save_settings_later()
    _dock_moved(settings, "right")
    assert _saved_position(settings) == "right"
