"""Reading checkpoints safely: files of every common form, and the Hugging Face Hub.

Which file a source string names is decided in :mod:`napari_conch.model.sources`.

Pickled checkpoints are read with ``torch.load(weights_only=True)``, which refuses to execute
code, so an untrusted file cannot run anything. Accepted forms: a plain state dict, one under a
``state_dict`` (or ``model``) key, with or without a ``module.`` prefix (DataParallel), in
``.bin``/``.pt``/``.pth`` (torch) or ``.safetensors`` files.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from napari_conch.errors import CheckpointError

HF_CHECKPOINT_FILENAME = "pytorch_model.bin"
SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


def download_from_hub(repo_id: str, token: str | None = None) -> Path:
    """Download (or find in the cache) ``pytorch_model.bin`` of a Hub repository."""
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise CheckpointError(
            f"hf_hub:{repo_id} needs huggingface_hub: pip install 'napari-conch[hub]'"
        ) from None
    token = token or os.environ.get("HF_TOKEN")
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, HF_CHECKPOINT_FILENAME, token=token))
    except hub_errors.GatedRepoError:
        raise CheckpointError(
            f"hf_hub:{repo_id} is gated and this account has no access: request access on its "
            "Hugging Face page, then pass a token (--hf-token or HF_TOKEN)"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"hf_hub:{repo_id} was not found, or needs a token (--hf-token or HF_TOKEN)"
        ) from None
    except hub_errors.LocalEntryNotFoundError:
        raise CheckpointError(
            f"hf_hub:{repo_id} is not in the local cache and the Hub cannot be reached (offline?)"
        ) from None
    except (OSError, hub_errors.HfHubHTTPError) as exc:
        raise CheckpointError(f"hf_hub:{repo_id} could not be downloaded: {exc}") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` state dict on the CPU.

    Raises
    ------
    CheckpointError
        When the file is not a checkpoint, is truncated, or holds no tensors.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        raw = _read_safetensors(path)
    else:
        raw = _read_torch(path)
    state = _unwrap(raw, path)
    return {_strip_prefix(k): v for k, v in state.items()}


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling failed"
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"checkpoint {str(path)!r} contains Python objects other than tensors; refusing to "
                "execute pickled code (re-save it as a plain state dict)"
            ) from None
        raise CheckpointError(f"{str(path)!r} is not a PyTorch checkpoint ({first})") from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
    ) as exc:  # what garbage makes unpicklers raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a readable PyTorch checkpoint (truncated or corrupt? {first})"
        ) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"{str(path)!r} is a .safetensors file: pip install safetensors to read it"
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors file ({first})"
        ) from None


def _unwrap(raw: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model"):
            inner = raw.get(key)
            if isinstance(inner, Mapping) and any(
                isinstance(v, torch.Tensor) for v in inner.values()
            ):
                raw = inner
                break
        tensors = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{str(path)!r} holds no state dict (no tensors found)")


def _strip_prefix(name: str) -> str:
    return name[len("module.") :] if name.startswith("module.") else name


def fingerprint_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """A hash of names, shapes and values: the identity of a model's weights (hex, 16 chars)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
