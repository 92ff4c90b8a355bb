"""A tissue-like whole-slide image computed on demand, chunk by chunk, never stored.

Every pixel is a function of its level-0 position, so each chunk of each pyramid level is made
only when napari (or the embedding engine) asks for it, and always the same way:

- *tissue*: where a smooth random field (a few seeded cosine waves under an elliptical envelope)
  is above a threshold; the rest is glass (near white);
- *stroma*: pink, with a fibrous texture of medium-frequency waves;
- *nuclei*: purple discs on a jittered lattice, denser where a second smooth field (cellularity)
  is high. Levels coarser than :data:`NUCLEI_MAX_DOWNSAMPLE` show the nuclei's mean colour
  instead of discs that would be below a pixel.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import dask.array as da
import numpy as np

#: Level-0 pixels per nucleus lattice cell.
NUCLEUS_CELL = 24
#: Finest downsample at which nuclei are averaged instead of drawn.
NUCLEI_MAX_DOWNSAMPLE = 4.0
GLASS = np.array([242.0, 240.0, 244.0])
STROMA = np.array([236.0, 160.0, 196.0])
STROMA_DARK = np.array([205.0, 110.0, 160.0])
NUCLEUS = np.array([88.0, 52.0, 140.0])


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and look of a synthetic slide (equal specs give identical pixels)."""

    height: int = 50_000
    width: int = 50_000
    seed: int = 7
    mpp: float = 0.5
    chunk: int = 512
    downsamples: tuple[int, ...] = (1, 4, 16, 64, 256)

    def fingerprint(self) -> str:
        """A stable hex digest of the spec (stands in for a file fingerprint)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(f"synthetic:{text}".encode()).hexdigest()[:32]


def _waves(seed: int, count: int, wavelengths: tuple[float, float]) -> np.ndarray:
    """``[count, 4]`` rows ``(ky, kx, phase, amplitude)`` of seeded cosine waves."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, count)
    length = rng.uniform(*wavelengths, count)
    k = 2 * np.pi / length
    return np.stack(
        [k * np.sin(angle), k * np.cos(angle), rng.uniform(0, 2 * np.pi, count), 1 / count + 0 * k],
        axis=1,
    )


def _field(waves: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sum of the waves at rows ``y [h, 1]`` and columns ``x [1, w]``.

    Each wave is separable, ``cos(a + b) = cos a cos b - sin a sin b``, so it costs two outer
    products instead of a cosine per pixel.
    """
    out = np.zeros((y.shape[0], x.shape[1]))
    for ky, kx, phase, amplitude in waves:
        a, b = ky * y + phase, kx * x
        out += amplitude * (np.cos(a) * np.cos(b) - np.sin(a) * np.sin(b))
    return out


def _hash(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic uint64 hash of integer pairs (a splitmix64-style mixer)."""
    with np.errstate(over="ignore"):
        a, b = np.broadcast_arrays(a, b)
        h = a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= b.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F) + np.uint64(seed)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h


def _unit(h: np.ndarray, shift: int) -> np.ndarray:
    return ((h >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.float64) / 65535.0


class SyntheticSlide:
    """The pixel function of a :class:`SyntheticSpec` and its pyramid of dask arrays."""

    def __init__(self, spec: SyntheticSpec | None = None) -> None:
        self.spec = spec or SyntheticSpec()
        self._tissue = _waves(self.spec.seed, 6, (6_000.0, 20_000.0))
        self._texture = _waves(self.spec.seed + 1, 5, (60.0, 300.0))
        self._cellular = _waves(self.spec.seed + 2, 4, (2_000.0, 8_000.0))

    def render(self, y0: float, x0: float, h: int, w: int, downsample: float) -> np.ndarray:
        """``(h, w, 3)`` uint8 pixels of the level with ``downsample``, from level pixel
        ``(y0, x0)``."""
        y = (y0 + np.arange(h)[:, None] + 0.5) * downsample
        x = (x0 + np.arange(w)[None, :] + 0.5) * downsample
        spec = self.spec
        ey = (y - spec.height / 2) / (0.45 * spec.height)
        ex = (x - spec.width / 2) / (0.45 * spec.width)
        envelope = 1.0 - (ey**2 + ex**2)
        tissue_level = _field(self._tissue, y, x) + 0.9 * envelope - 0.35
        tissue = np.clip(tissue_level * 12.0, 0.0, 1.0)[..., None]
        texture = 0.5 + 0.5 * _field(self._texture, y, x) if downsample < 16 else 0.5
        stroma = STROMA + (STROMA_DARK - STROMA) * np.asarray(texture)[..., None] * 0.6
        density = np.clip(0.5 + 0.8 * _field(self._cellular, y, x), 0.05, 0.95)
        if downsample <= NUCLEI_MAX_DOWNSAMPLE:
            nucleus = self._nuclei(y, x, density)[..., None]
        else:
            nucleus = (density * 0.22)[..., None]
        colour = stroma + (NUCLEUS - stroma) * nucleus
        rgb = GLASS + (colour - GLASS) * tissue
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    def _nuclei(self, y: np.ndarray, x: np.ndarray, density: np.ndarray) -> np.ndarray:
        """1 inside a nucleus, 0 outside (one jittered disc per lattice cell, if present)."""
        cy, cx = np.floor(y[:, 0] / NUCLEUS_CELL), np.floor(x[0] / NUCLEUS_CELL)
        iy, ix = (cy - cy[0]).astype(np.intp)[:, None], (cx - cx[0]).astype(np.intp)[None, :]
        cells_y = np.arange(cy[0], cy[-1] + 1)[:, None]
        cells_x = np.arange(cx[0], cx[-1] + 1)[None, :]
        h = _hash(cells_y.astype(np.int64), cells_x.astype(np.int64), self.spec.seed)
        radius = 3.5 + 3.5 * _unit(h, 0)
        free = NUCLEUS_CELL - 2 * radius
        ny = cells_y * NUCLEUS_CELL + radius + free * _unit(h, 16)
        nx = cells_x * NUCLEUS_CELL + radius + free * _unit(h, 32)
        dy, dx = y - ny[iy, ix], x - nx[iy, ix]
        inside = dy * dy + dx * dx <= radius[iy, ix] ** 2
        present = _unit(h, 48)[iy, ix] < density
        return (inside & present).astype(np.float32)

    def level(self, downsample: int) -> da.Array:
        """The lazy ``(H, W, 3)`` uint8 level with this downsample, in chunks."""
        spec = self.spec
        h, w = -(-spec.height // downsample), -(-spec.width // downsample)
        chunks = (_chunks(h, spec.chunk), _chunks(w, spec.chunk), (3,))

        def block(block_info=None):
            (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
            return self.render(y0, x0, y1 - y0, x1 - x0, downsample)

        name = f"synthetic-{spec.fingerprint()}-{downsample}"
        meta = np.empty((0, 0, 0), np.uint8)
        return da.map_blocks(block, chunks=chunks, dtype=np.uint8, name=name, meta=meta)

    def levels(self) -> list[da.Array]:
        """Every level, finest first."""
        return [self.level(d) for d in self.spec.downsamples]


def _chunks(length: int, chunk: int) -> tuple[int, ...]:
    full, rest = divmod(length, chunk)
    return (chunk,) * full + ((rest,) if rest else ())
