"""What the panels say, without a viewer; their option fields are the options' own."""

from __future__ import annotations

from types import SimpleNamespace

import napari_conch.demo as demo
from napari_conch._napari.docks.caption_panels import CaptionPanel, TopTilesPanel
from napari_conch._napari.docks.panels import (
    CHOOSE_MODEL,
    PROMPT_PLACEHOLDER,
    SLIDE_OPTIONS,
    ExportPanel,
    ModelPanel,
    PromptPanel,
    SlidePanel,
    known_models,
    model_summary,
    prompt_hint,
)
from napari_conch.bounds import bounds_of
from napari_conch.engine.option_fields import panel_field
from napari_conch.engine.options import (
    DEFAULTS,
    DOCK_CAPTION_DEFAULTS,
    SEARCH_DEFAULTS,
    CaptionOptions,
    PromptOptions,
    RunOptions,
    SearchOptions,
    surface_of,
)
from napari_conch.model.config import STRATEGIES
from tests.conftest import loaded_after


def _model(name, source="/models/conch/pytorch_model.bin", decoder=False):
    return SimpleNamespace(
        config=SimpleNamespace(name=name), source=source, device="cpu", precision="fp32",
        has_decoder=decoder, is_demo=source == "demo",
    )  # fmt: skip


def test_the_prompt_box_lists_what_the_demo_model_knows(monkeypatch):
    monkeypatch.setattr(demo, "DEMO_CONCEPTS", ("tumor cells", "stroma"), raising=False)
    hint = prompt_hint(_model(demo.DEMO_MODEL_NAME, "demo"))
    assert hint.endswith("tumor cells\nstroma") and "demo model knows" in hint
    assert prompt_hint(_model("conch_ViT-B-16")) == PROMPT_PLACEHOLDER
    assert prompt_hint(None) == PROMPT_PLACEHOLDER
    assert model_summary(_model(demo.DEMO_MODEL_NAME, "demo")).startswith(
        f"{demo.DEMO_MODEL_NAME} (not CONCH): demo,"
    )


def test_the_model_summary_names_the_file_not_the_path():
    summary = model_summary(_model("conch_ViT-B-16"))
    assert summary == "conch_ViT-B-16: pytorch_model.bin, cpu fp32, no captioning decoder"
    hub = model_summary(_model("conch_ViT-B-16", "hf_hub:MahmoodLab/conch", decoder=True))
    assert "hf_hub:MahmoodLab/conch" in hub and hub.endswith(", captioning decoder")


# ---------------------------------------------------------------- fields made from the options


def _check_field(widget, cls, name, defaults=None):
    """``widget`` shows ``cls``'s option ``name`` as the options say: label, default, range."""
    field = panel_field(cls, name, defaults)
    default = getattr(cls() if defaults is None else defaults, name)
    assert widget.label == field.label and widget.tooltip == field.tooltip, name
    assert widget.value == field.shown(default), name  # 0 or empty where it is left out
    try:
        bounds = bounds_of(cls, name)
    except KeyError:
        return
    low = 0 if field.zero_is_unset else bounds.minimum
    assert widget.min == low, name
    assert widget.max == surface_of(cls, name).panel_max or widget.max == bounds.maximum, name
    if bounds.maximum is not None:
        assert widget.max <= bounds.maximum, name


def test_slide_panel_fields_are_the_run_options(qtbot, tmp_path):
    panel = SlidePanel()
    qtbot.addWidget(panel.native)
    assert SLIDE_OPTIONS == panel.OPTION_WIDGETS
    for name in SLIDE_OPTIONS:
        _check_field(getattr(panel, name), RunOptions, name)
    assert panel.min_tissue.value == DEFAULTS.min_tissue
    assert panel.batch_size.value == DEFAULTS.batch_size
    assert panel.tile_size.native.specialValueText() == "model's own"
    # level left out and level 0 are one grid: the panel gives 0
    assert panel.run_options(DEFAULTS) == DEFAULTS.replace(level=0)
    chosen = DEFAULTS.replace(
        mpp=0.5, tile_size=224, stride=112, min_tissue=0.5, batch_size=8, store_root=str(tmp_path)
    )
    panel.show_options(chosen)
    assert panel.run_options(DEFAULTS) == chosen
    panel.show_options(DEFAULTS)
    assert panel.run_options(chosen) == DEFAULTS.replace(level=0)


def test_caption_and_top_tiles_fields_are_their_options(qtbot):
    caption = CaptionPanel()
    tiles = TopTilesPanel()
    qtbot.addWidget(caption.native)
    qtbot.addWidget(tiles.native)
    for name in ("strategy", "num_beams", "max_length"):
        _check_field(getattr(caption, name), CaptionOptions, name, DOCK_CAPTION_DEFAULTS)
    assert caption.strategy.choices == STRATEGIES
    assert caption.strategy.value == DOCK_CAPTION_DEFAULTS.strategy
    _check_field(tiles.k, SearchOptions, "top_tiles")
    assert tiles.k.value == SEARCH_DEFAULTS.top_tiles


def test_the_prompt_panels_threshold_is_the_prompt_option(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel.native)
    _check_field(panel.threshold, PromptOptions, "threshold")
    assert (panel.threshold.min, panel.threshold.max, panel.threshold.value) == (0, 1, 0)
    assert panel_field(PromptOptions, "threshold").read(0.0) is None  # 0: no threshold


def test_the_model_panel_offers_the_known_models_and_says_where_their_files_are(qtbot, monkeypatch):
    from napari_conch.model import clip_sources
    from napari_conch.model.clip_sources import KNOWN_MODELS

    monkeypatch.setattr(clip_sources, "cached_snapshot", lambda repo: None)  # nothing cached
    panel = ModelPanel()
    names = list(panel.known.choices)
    assert names[0] == CHOOSE_MODEL and "CONCH" in names and "demo model (not CONCH)" in names
    assert {card.name for card in KNOWN_MODELS} <= set(names)
    panel.known.value = "QuiltNet-B-32"
    assert panel.source.value == known_models()["QuiltNet-B-32"] == "hf_hub:wisdomik/QuiltNet-B-32"
    assert "QuiltNet-B-32, licence MIT" in panel.note.value and "downloads" in panel.note.value
    panel.known.value = "demo model (not CONCH)"
    assert panel.source.value == "demo" and panel.load_arguments()["source"] == "demo"


def test_the_model_panels_precision_is_the_run_option(qtbot):
    panel = ModelPanel()
    assert tuple(panel.precision.choices) == surface_of(RunOptions, "precision").choices
    assert panel.precision.value == DEFAULTS.precision == "auto"
    panel.source.value = "demo"
    panel.precision.value = "fp32"
    assert panel.load_arguments()["precision"] == "fp32"


def test_the_export_panel_writes_values_or_colours():
    panel = ExportPanel()
    assert panel.map_render() == "float"  # the default: the values, as --map-render
    panel.tiff_as.value = "colours"
    assert panel.map_render() == "rgb"


def test_the_known_model_list_imports_no_torch():
    """The Model panel is built on napari's GUI thread: its list must not import torch (2 s)."""
    code = (
        "from napari_conch._napari.docks.panels import known_model_note, known_models\n"
        "known_models(); known_model_note('hf_hub:wisdomik/QuiltNet-B-32')\n"
    )
    assert loaded_after(code, ("torch",)) == []
