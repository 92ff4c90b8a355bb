"""Tiles -> model input: CONCH's preprocessing, in torch so it runs where the model runs.

CONCH resizes the shorter side to the input size (bicubic), centre-crops, scales to [0, 1] and
normalises with the OpenAI CLIP mean and standard deviation. The reference resizes with PIL; here
``torch.nn.functional.interpolate(mode="bicubic", antialias=True)`` does it (PIL's bicubic filter is
antialiased too), clipped to 0..255 as PIL's would be. Tiles that already have the
input size are not resampled, so they are exact.

Input rules (documented in the README):

- ``uint8`` RGB ``[B, H, W, 3]`` (numpy or torch), or one tile ``[H, W, 3]``;
- greyscale ``[B, H, W]`` / ``[B, H, W, 1]``: replicated to RGB;
- RGBA: composited over white (transparent regions count as empty glass);
- ``uint16``: scaled to 8 bits (``value / 257``, rounded);
- anything else (floats, other channel counts): refused with :class:`InputError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_conch.errors import InputError
from napari_conch.model.config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


@dataclass(frozen=True)
class Preprocess:
    """Callable preprocessing for a model input size.

    Parameters
    ----------
    image_size : int
        Side of the square model input.
    mean, std : tuple of float
        Per-channel normalisation.
    """

    image_size: int
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    def info(self) -> dict:
        """A JSON-able description (stored with embeddings)."""
        return {
            **asdict(self),
            "resize": "shorter side, bicubic antialiased",
            "crop": "centre",
        }

    def __call__(
        self, tiles, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Tiles -> normalised ``[B, 3, S, S]`` float tensor on ``device``."""
        x = to_uint8_rgb(tiles)
        if device is not None:
            x = x.to(device, non_blocking=True)
        x = x.float().permute(0, 3, 1, 2)  # contiguous conversion, then a channels-last view
        x = resize_center_crop(x, self.image_size) / 255.0
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(dtype)


def resize_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` (0..255 floats) so the shorter side is ``size``, then centre-crop.

    The resize is bicubic with antialiasing and the result is clipped to 0..255 as PIL does
    (also rounding to 8 bits, as PIL does, measured further from the reference). Input that is
    already ``size x size`` is returned unchanged.
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if min(h, w) != size:
        if h <= w:
            new_h, new_w = size, int(size * w / h)
        else:
            new_h, new_w = int(size * h / w), size
        x = F.interpolate(
            x, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
        )
        x = x.clamp_(0, 255)
    h, w = x.shape[-2:]
    top, left = round((h - size) / 2), round((w - size) / 2)
    return x[..., top : top + size, left : left + size]


def to_uint8_rgb(tiles) -> torch.Tensor:
    """Validate and convert tiles to a ``uint8`` tensor ``[B, H, W, 3]`` (see module rules)."""
    x = torch.from_numpy(np.ascontiguousarray(tiles)) if isinstance(tiles, np.ndarray) else tiles
    if not isinstance(x, torch.Tensor):
        raise InputError(f"tiles must be a numpy array or torch tensor, not {type(tiles).__name__}")
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        x = x.unsqueeze(0)  # one tile [H, W, C]
    elif x.ndim == 3:
        x = x.unsqueeze(-1)  # greyscale batch [B, H, W]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"tiles of shape {tuple(x.shape)} are not RGB images [B, H, W, 3] "
            "(greyscale [B, H, W] and RGBA [B, H, W, 4] are accepted too)"
        )
    if x.shape[0] == 0:
        raise InputError(f"no tile given (tiles of shape {tuple(x.shape)}: an empty batch)")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise InputError(f"tiles of shape {tuple(x.shape)} have no pixels")
    if x.dtype == torch.uint16 or (x.dtype == torch.int32 and x.numel() and x.max() > 255):
        x = (x.to(torch.float32) / 257.0).round_().clamp_(0, 255).to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise InputError(f"tiles of dtype {x.dtype} are not supported: give uint8 (or uint16) RGB")
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)
    elif x.shape[-1] == 4:
        alpha = x[..., 3:].float() / 255.0
        x = (x[..., :3].float() * alpha + 255.0 * (1.0 - alpha)).round_().to(torch.uint8)
    return x
