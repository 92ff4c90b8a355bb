"""Every checkpoint form loads; every bad checkpoint fails with one line naming the file."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch

from napari_conch.errors import CheckpointError, ConfigError
from napari_conch.model import clear_model_cache, load_model
from napari_conch.model.checkpoint import read_state_dict


@pytest.fixture
def state(tiny_reference):
    return dict(tiny_reference["state_dict"])


@pytest.fixture
def config(tiny_checkpoint):
    return tiny_checkpoint[1]


def embed_check(lm, tiny_reference):
    images = tiny_reference["inputs"]["images"]
    with torch.no_grad():
        got = lm.model.encode_image(images)
    assert (got - tiny_reference["outputs"]["image_embed"]).abs().max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(
    "form", ["plain.bin", "nested.pt", "module_prefix.pth", "model.safetensors"]
)
def test_checkpoint_forms(form, tmp_path, state, config, tiny_reference):
    path = tmp_path / form
    if form.startswith("nested"):
        torch.save({"state_dict": state, "epoch": 3}, path)
    elif form.startswith("module_prefix"):
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif form.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    lm = load_model(path, config=config, device="cpu")
    embed_check(lm, tiny_reference)
    assert lm.has_decoder


def test_folder_with_pytorch_model_bin(tmp_path, state, config, tiny_reference):
    torch.save(state, tmp_path / "pytorch_model.bin")
    embed_check(load_model(tmp_path, config=config, device="cpu"), tiny_reference)


def test_same_model_object_reused(tiny_checkpoint):
    ckpt, config = tiny_checkpoint
    first = load_model(ckpt, config=config, device="cpu")
    assert load_model(str(ckpt), config=str(config), device="cpu") is first
    clear_model_cache()
    assert load_model(ckpt, config=config, device="cpu") is not first


@pytest.mark.slow
def test_checkpoint_without_decoder_loads_and_says_so_once(
    tmp_path, state, config, caplog, tiny_reference
):
    no_decoder = {k: v for k, v in state.items() if not k.startswith("text_decoder.")}
    path = tmp_path / "public_conch_like.bin"
    torch.save(no_decoder, path)
    with caplog.at_level(logging.WARNING, logger="napari_conch"):
        lm = load_model(path, config=config, device="cpu")
    assert not lm.has_decoder and not lm.model.decoder_trained
    warnings = [r for r in caplog.records if "decoder" in r.getMessage()]
    assert len(warnings) == 1 and "captioning is disabled" in warnings[0].getMessage()
    assert all(not p.is_meta for p in lm.model.parameters())
    embed_check(lm, tiny_reference)
    assert "no captioning decoder" in lm.describe()


def test_other_architecture_names_first_mismatches(tmp_path, state, config):
    path = tmp_path / "other.bin"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, device="cpu")  # default config: full CONCH
    message = str(err.value)
    assert str(path) in message and "shape mismatches" in message and "\n" not in message
    renamed = dict(state)
    renamed["visual.extra.weight"] = renamed.pop("visual.ln_contrast.weight")
    path2 = tmp_path / "renamed.bin"
    torch.save(renamed, path2)
    with pytest.raises(CheckpointError, match=r"missing tensors, first: visual\.ln_contrast"):
        load_model(path2, config=config, device="cpu")


def test_not_a_checkpoint_truncated_and_missing(tmp_path, config, state):
    text = tmp_path / "notes.bin"
    text.write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.bin"):
        load_model(text, config=config, device="cpu")
    full = tmp_path / "full.bin"
    torch.save(state, full)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(full.read_bytes()[: os.path.getsize(full) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.bin"):
        load_model(truncated, config=config, device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.bin", config=config, device="cpu")
    no_tensors = tmp_path / "empty.pt"
    torch.save({"epoch": 1}, no_tensors)
    with pytest.raises(CheckpointError, match="no state dict"):
        read_state_dict(no_tensors)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/napari_conch_pwned",))


def test_pickled_code_is_never_executed(tmp_path):
    marker = "/tmp/napari_conch_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    evil = tmp_path / "evil.bin"
    with open(evil, "wb") as fh:
        pickle.dump({"weight": Payload()}, fh)
    with pytest.raises(CheckpointError, match=r"evil\.bin"):
        read_state_dict(evil)
    assert not os.path.exists(marker)


def test_random_bytes_are_not_a_checkpoint(tmp_path, config):
    """Random bytes are unreadable, not "Python objects" (that is for real pickled code)."""
    import numpy as np

    for seed in range(3):
        path = tmp_path / f"random{seed}.bin"
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, np.uint8).tobytes())
        with pytest.raises(CheckpointError) as err:
            load_model(path, config=config, device="cpu")
        message = str(err.value)
        assert f"random{seed}.bin" in message and "\n" not in message
        assert "is not a PyTorch checkpoint (cannot be read: " in message
        assert "Python objects" not in message


@pytest.mark.parametrize("form", ["protocol2", "protocol4", "torch_zip"])
def test_pickled_code_is_named_and_refused(tmp_path, form):
    marker = "/tmp/napari_conch_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    evil = tmp_path / "evil.bin"
    if form == "torch_zip":
        torch.save({"weight": Payload()}, evil)
    else:
        with open(evil, "wb") as fh:
            pickle.dump({"weight": Payload()}, fh, protocol=int(form[-1]))
    with pytest.raises(CheckpointError) as err:
        read_state_dict(evil)
    message = str(err.value)
    assert "contains Python objects other than tensors (posix.system)" in message
    assert "refusing to execute pickled code" in message and "\n" not in message
    assert not os.path.exists(marker)


def test_plain_pickle_of_tensors_says_how_to_resave(tmp_path):
    path = tmp_path / "plain.bin"
    with open(path, "wb") as fh:
        pickle.dump({"w": torch.zeros(3)}, fh, protocol=4)
    with pytest.raises(CheckpointError, match=r"plain pickle, not a torch\.save file"):
        read_state_dict(path)


@pytest.mark.parametrize("tower", ["all", "text"])
def test_checkpoint_with_non_finite_embeddings_is_refused(tmp_path, state, config, tower):
    """NaN weights would fill a store with NaN embeddings: refused at load, in one line."""
    broken = {
        k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v)
        if tower == "all" or k.startswith("text.")
        else v
        for k, v in state.items()
    }
    path = tmp_path / f"nan_{tower}.bin"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, config=config, device="cpu")
    message = str(err.value)
    assert f"nan_{tower}.bin" in message and "\n" not in message
    expected = "image" if tower == "all" else "text"
    assert f"the {expected} embeddings are not finite" in message


def test_bad_config_and_device(tiny_checkpoint, tmp_path):
    ckpt, _ = tiny_checkpoint
    with pytest.raises(ConfigError, match="unknown model config"):
        load_model(ckpt, config="conch_ViT-Z-99", device="cpu")
    broken = tmp_path / "broken.json"
    broken.write_text('{"embed_dim": 32}')
    with pytest.raises(ConfigError, match="lacks the key 'vision_cfg'"):
        load_model(ckpt, config=broken, device="cpu")
    from napari_conch.errors import NapariConchError

    with pytest.raises(NapariConchError, match="unknown device"):
        load_model(ckpt, device="tpu9")


def test_hf_hub_without_network_or_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="hf_hub:MahmoodLab/conch"):
        load_model("hf_hub:MahmoodLab/conch", device="cpu")


def test_half_precision_checkpoint_computes_in_float32(tmp_path, state, config, tiny_reference):
    path = tmp_path / "half.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, path)
    lm = load_model(path, config=config, device="cpu")
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())
    tile = tiny_reference["inputs"]["real_tile_uint8"].numpy()
    emb = lm.embed_images(tile)
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()
