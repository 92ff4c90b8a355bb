"""CLIP models (QuiltNet, PLIP) against their own libraries: open_clip and transformers.

Seeded random weights in small configurations: the reference library builds the model, its
weights are written as the model's published files, napari-conch loads that folder, and image
embeddings, text embeddings and the logit scale must agree to 1e-5. The full-size configurations
are built on the meta device by the reference libraries and their parameter names and shapes
compared with what our loader expects. Skipped, with the reason, without the reference libraries
(``pip install 'napari-conch[reference]'``).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from napari_conch.model import clear_model_cache, load_model
from napari_conch.model.clip_config import ClipConfig, from_open_clip, from_transformers
from napari_conch.model.clip_weights import build_clip, from_transformers_names
from tests.model.clip_folders import TINY_OPEN_CLIP, transformers_config, write_tokenizer_files
from tests.model.reference_libs import import_open_clip, import_transformers

TOL = 1e-5
TEXTS = [
    "a photomicrograph showing invasive ductal carcinoma.",
    "an H&E image of lymphocytes",
    "stroma",
    "necrosis, H&E stain.",
    "tumor " * 60,  # truncated at 77 ids
]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("logit_scale"):
                param.fill_(4.0 + torch.rand((), generator=gen).item())
            elif (param.ndim == 1 and "norm" in name) or name.endswith(
                ("ln_1.weight", "ln_2.weight")
            ):
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))


def _images(size: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _open_clip_cfg(quick_gelu: bool) -> dict:
    config = copy.deepcopy(TINY_OPEN_CLIP)
    config["model_cfg"]["quick_gelu"] = quick_gelu
    config["model_cfg"]["vision_cfg"].update(image_size=64, patch_size=16, layers=2)
    config["model_cfg"]["text_cfg"]["layers"] = 2
    config["preprocess_cfg"] = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    return config


@pytest.mark.slow
@pytest.mark.parametrize("quick_gelu", [True, False])
def test_open_clip_parity(tmp_path, quick_gelu):
    """A QuiltNet-style folder: open_clip's own model and ours give the same numbers."""
    open_clip = import_open_clip()
    config = _open_clip_cfg(quick_gelu)
    torch.manual_seed(0)
    reference = open_clip.CLIP(**config["model_cfg"]).eval()
    _randomise(reference, seed=1)
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(reference.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    # open_clip reads the folder as we do (its own local-dir loader), and gets the same model
    again = open_clip.create_model(f"local-dir:{tmp_path}").eval()
    clear_model_cache()
    ours = load_model(str(tmp_path), device="cpu")
    assert ours.config.quick_gelu is quick_gelu
    assert ours.preprocess.mean == (0.5, 0.4, 0.3) and ours.preprocess.std == (0.2, 0.25, 0.3)
    images = _images(64)
    ids = open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    assert torch.equal(ours.tokenizer.encode(TEXTS), ids)
    with torch.no_grad():
        for ref in (reference, again):
            ref_img = ref.encode_image(images, normalize=True)
            ref_txt = ref.encode_text(ids, normalize=True)
            assert (ours.model.encode_image(images) - ref_img).abs().max() < TOL
            assert (ours.model.encode_text(ids) - ref_txt).abs().max() < TOL
            assert (
                abs(ours.logit_scale - float(ref.logit_scale.detach().exp()))
                < TOL * ours.logit_scale
            )
    clear_model_cache()


@pytest.mark.slow
@pytest.mark.parametrize("quick_gelu", [True, False])
def test_transformers_parity(tmp_path, quick_gelu):
    """A PLIP-style folder: transformers' CLIPModel and ours give the same numbers."""
    transformers = import_transformers()
    model_cfg = _open_clip_cfg(quick_gelu)["model_cfg"]
    cfg = transformers.CLIPConfig.from_dict(transformers_config(model_cfg))
    torch.manual_seed(0)
    reference = transformers.CLIPModel(cfg).eval()
    _randomise(reference, seed=2)
    reference.save_pretrained(tmp_path)
    write_tokenizer_files(tmp_path)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    clear_model_cache()
    ours = load_model(str(tmp_path), device="cpu")
    assert ours.config.quick_gelu is quick_gelu
    ids = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=77,
                    return_tensors="pt")["input_ids"]  # fmt: skip
    assert torch.equal(ours.tokenizer.encode(TEXTS), ids)
    images = _images(64)
    with torch.no_grad():
        ref_img = _features(reference.get_image_features(pixel_values=images))
        ref_txt = _features(reference.get_text_features(input_ids=ids))
    ref_img = torch.nn.functional.normalize(ref_img, dim=-1)
    ref_txt = torch.nn.functional.normalize(ref_txt, dim=-1)
    with torch.no_grad():
        assert (ours.model.encode_image(images) - ref_img).abs().max() < TOL
        assert (ours.model.encode_text(ids) - ref_txt).abs().max() < TOL
    assert (
        abs(ours.logit_scale - float(reference.logit_scale.detach().exp())) < TOL * ours.logit_scale
    )
    clear_model_cache()


def _features(out) -> torch.Tensor:
    """transformers 5 returns a model output (projected ``pooler_output``), 4 a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _shapes(state) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


#: QuiltNet's architectures: open_clip's ViT-B-32 and ViT-B-16 (224 px, CLIP text tower).
@pytest.mark.slow
@pytest.mark.parametrize("name,patch", [("ViT-B-32", 32), ("ViT-B-16", 16)])
def test_full_size_open_clip_names_and_shapes(name, patch):
    open_clip = import_open_clip()
    with torch.device("meta"):
        reference = open_clip.create_model(name, device="meta")
    config = from_open_clip({"model_cfg": {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": patch},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                     "layers": 12}}})  # fmt: skip
    ours = build_clip(config, device="meta")
    expected = {k: v for k, v in _shapes(reference.state_dict()).items() if k != "attn_mask"}
    assert _shapes(ours.state_dict()) == expected
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )


@pytest.mark.slow
def test_full_size_transformers_names_and_shapes():
    """PLIP's architecture: transformers' CLIPConfig defaults (ViT-B/32)."""
    transformers = import_transformers()
    cfg = transformers.CLIPConfig()
    with torch.device("meta"):
        reference = transformers.CLIPModel(cfg)
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("position_ids")}
    ours = build_clip(from_transformers(cfg.to_dict()), device="meta")
    assert _shapes(from_transformers_names(state)) == _shapes(ours.state_dict())
    assert isinstance(ours.config, ClipConfig) and ours.config.quick_gelu
