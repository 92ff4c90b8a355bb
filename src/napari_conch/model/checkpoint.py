"""Reading checkpoints safely: files of every common form, and the Hugging Face Hub.

Which file a source string names is decided in :mod:`napari_conch.model.sources`.

Pickled checkpoints are read with ``torch.load(weights_only=True)``, which refuses to execute
code, so an untrusted file cannot run anything. Accepted forms: a plain state dict, one under a
``state_dict`` (or ``model``) key, with or without a ``module.`` prefix (DataParallel), in
``.bin``/``.pt``/``.pth`` (torch) or ``.safetensors`` files.

When torch refuses a file, the pickle is inspected with :mod:`pickletools` (which parses opcodes
and never executes them) to say why: a pickle that imports Python objects other than tensors
(named in the message) is refused as such; bytes that are not a pickle at all are "not a
PyTorch checkpoint". After loading, :func:`check_finite_embeddings` runs one blank tile and one
text through the model: weights that give NaN or infinite embeddings are refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
        raise _refusal(path, exc) from None
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
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    """A torch zip file that is cut short, or bytes that are not a pickle at all."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        with open(path, "rb") as fh:
            is_zip = fh.read(4) == b"PK\x03\x04"
    except OSError:
        is_zip = False
    if not is_zip:
        refusal = _refusal(path, exc)
        if "is not a PyTorch checkpoint" in str(refusal):
            return refusal
    return CheckpointError(
        f"{str(path)!r} is not a readable PyTorch checkpoint (truncated or corrupt? {first})"
    )


def _refusal(path: Path, exc: BaseException) -> CheckpointError:
    """Why torch's weights-only unpickler refused a file, from the file's own opcodes."""
    try:
        imports = _file_pickle_imports(path)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, KeyError) as parse_error:
        reason = " ".join(str(parse_error).split()) or type(parse_error).__name__
        return CheckpointError(
            f"{str(path)!r} is not a PyTorch checkpoint (cannot be read: {reason})"
        )
    foreign = [name for name in imports if not name.startswith(_TENSOR_IMPORTS)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return CheckpointError(
            f"checkpoint {str(path)!r} contains Python objects other than tensors ({shown}); "
            "refusing to execute pickled code (re-save it as a plain state dict)"
        )
    return CheckpointError(
        f"{str(path)!r} is a plain pickle, not a torch.save file, and torch.load(weights_only="
        "True) cannot read it (re-save the state dict with torch.save)"
    )


#: Imports a pickle of tensors legitimately makes (anything else is foreign code).
_TENSOR_IMPORTS = ("torch.", "collections.OrderedDict", "_codecs.encode")


def _file_pickle_imports(path: Path) -> list[str]:
    """Imports of the pickle in a checkpoint: ``*/data.pkl`` of a torch zip file, or the file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not names:
                raise ValueError("a zip file without data.pkl")
            with archive.open(names[0]) as fh:
                return pickle_imports(fh)
    with open(path, "rb") as fh:
        return pickle_imports(fh)


def pickle_imports(data: bytes | io.IOBase) -> list[str]:
    """``module.name`` of every global a pickle imports, parsed without executing anything.

    Raises
    ------
    ValueError
        When the bytes are not a well-formed pickle.
    """
    names: list[str] = []
    strings: list[Any] = []
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name in ("GLOBAL", "INST"):
            names.append(str(arg).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(arg, str):
            strings.append(arg)
    return names


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


def check_finite_embeddings(loaded: Any) -> None:
    """Refuse a model whose embeddings of a blank tile or of a text are not finite.

    One forward pass of each tower: a white tile of the model's input size, and the token ids
    ``<start_of_text> <end_of_text>`` padded to the context length (no tokenizer needed).

    Raises
    ------
    CheckpointError
        Naming the source and the tower that gives NaN or infinite values.
    """
    size = loaded.image_size
    image = loaded.embed_images(torch.full((1, size, size, 3), 255, dtype=torch.uint8))
    ids = torch.zeros((1, loaded.config.text.context_length), dtype=torch.long)
    ids[0, :2] = torch.tensor([1, 2])  # start, end; pad is 0
    with torch.inference_mode(), loaded.autocast():
        text = loaded.model.encode_text(ids.to(loaded.device), normalize=True).float()
    refuse_not_finite(loaded.source, image=image, text=text)


def refuse_not_finite(source: Any, **towers: torch.Tensor) -> None:
    """Raise a :class:`CheckpointError` naming ``source`` and the first tower whose embeddings of
    a blank input (``towers``: name -> embeddings) hold a NaN or an infinite value."""
    for tower, out in towers.items():
        if not bool(torch.isfinite(out).all()):
            raise CheckpointError(
                f"{source}: the {tower} embeddings are not finite (NaN or infinite) for a "
                "blank input; the checkpoint's weights are damaged"
            )
