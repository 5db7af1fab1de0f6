"""Seeded synthetic degradations that turn a clean HR photo into a real-world-like LR image.

Two recipes, each a frozen dataclass whose fields are its parameters (so a manifest can
record exactly what was applied) and whose call is a pure function of (image, seed):

``aim`` (AIM-RWSR-like: noise + compression; the public analogue used by FSSR, since the
challenge recipe itself is unpublished)
    1. MATLAB bicubic x1/scale (antialiased), in float;
    2. i.i.d. Gaussian noise, std ``noise_sigma`` on the 0-255 scale, independent per
       pixel and channel;
    3. round half-up and clip to uint8;
    4. JPEG encode/decode at ``jpeg_quality`` with 4:2:0 chroma subsampling (libjpeg via Pillow).

``ntire`` (NTIRE-RWSR-like: "highly correlated high-frequency noise", as left by a
camera's demosaicking and denoising)
    1. MATLAB bicubic x1/scale, in float;
    2. spatially and cross-channel correlated Gaussian noise: a luminance field L shared
       by the three channels and a chroma field C_c per channel, each white Gaussian noise
       filtered by a separable Gaussian kernel of std ``grain_px`` pixels (radius
       ceil(3 grain_px), periodic boundary) and renormalised to unit variance; channel c
       gets ``noise_sigma * (sqrt(1 - chroma_fraction) L + sqrt(chroma_fraction) C_c)``,
       so each channel has std ``noise_sigma``, neighbouring pixels correlate by about
       exp(-1 / (4 grain_px^2)) (0.60 at the default 0.7 px) and channels by
       1 - chroma_fraction;
    3. round half-up and clip to uint8;
    4. optional JPEG at ``jpeg_quality`` (off by default).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image
from scipy.ndimage import correlate1d

from dictsr_core.data.resize import imresize_np

JPEG_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _check_hr(hr: np.ndarray, scale: int) -> np.ndarray:
    hr = np.asarray(hr)
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {hr.dtype} {hr.shape}")
    if min(hr.shape[:2]) < scale:
        raise ValueError(f"image {hr.shape[1]}x{hr.shape[0]} is smaller than the scale factor {scale}")
    return hr


def bicubic_downscale(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    """Clean LR: MATLAB bicubic x1/scale, as float64 on the 0-255 scale (not rounded)."""
    return imresize_np(np.asarray(hr, dtype=np.float64), 1.0 / scale)


def quantize(img: np.ndarray) -> np.ndarray:
    """Round half-up and clip to uint8, as MATLAB converts double images."""
    return np.floor(np.clip(img, 0.0, 255.0) + 0.5).astype(np.uint8)


def gaussian_noise(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """i.i.d. Gaussian noise with std ``sigma``."""
    return rng.normal(0.0, sigma, size=shape)


def correlated_noise(shape, sigma: float, grain_px: float, chroma_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 Gaussian noise, std ``sigma`` per channel, spatially and cross-channel correlated (see module doc)."""
    height, width, channels = shape
    if not 0.0 <= chroma_fraction <= 1.0:
        raise ValueError(f"chroma_fraction must be in [0, 1], got {chroma_fraction}")
    if grain_px <= 0:
        raise ValueError(f"grain_px must be positive, got {grain_px}")
    radius = max(1, math.ceil(3 * grain_px))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2 * grain_px**2))
    kernel /= np.sqrt(np.sum(kernel**2))  # unit output variance for unit white input, per axis

    def field(*extra):
        white = rng.standard_normal((height, width) + extra)
        smooth = correlate1d(white, kernel, axis=0, mode="wrap")
        return correlate1d(smooth, kernel, axis=1, mode="wrap")

    luminance = field()[..., None]
    chroma = field(channels)
    return sigma * (math.sqrt(1.0 - chroma_fraction) * luminance + math.sqrt(chroma_fraction) * chroma)


def jpeg_roundtrip(img: np.ndarray, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """Encode an HxWx3 uint8 image as JPEG in memory and decode it again."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buffer, format="JPEG", quality=int(quality), subsampling=JPEG_SUBSAMPLING[subsampling])
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


class _DownscaleNoiseJpeg:
    """The shared pipeline: bicubic x1/scale, additive noise (`noise`), 8-bit quantisation, optional JPEG."""

    def noise(self, shape, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, hr: np.ndarray, rng=0) -> np.ndarray:
        hr = _check_hr(hr, self.scale)
        rng = np.random.default_rng(rng)
        lr = bicubic_downscale(hr, self.scale)
        if self.noise_sigma > 0:
            lr = lr + self.noise(lr.shape, rng)
        lr = quantize(lr)
        if self.jpeg_quality is not None:
            lr = jpeg_roundtrip(lr, self.jpeg_quality, self.jpeg_subsampling)
        return lr

    def recipe(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class AimDegradation(_DownscaleNoiseJpeg):
    """AIM-RWSR-like: bicubic x1/scale, i.i.d. Gaussian noise, JPEG (see module doc)."""

    name: ClassVar[str] = "aim"
    scale: int = 4
    noise_sigma: float = 8.0
    jpeg_quality: int | None = 30
    jpeg_subsampling: str = "4:2:0"

    def noise(self, shape, rng: np.random.Generator) -> np.ndarray:
        return gaussian_noise(shape, self.noise_sigma, rng)


@dataclasses.dataclass(frozen=True)
class NtireDegradation(_DownscaleNoiseJpeg):
    """NTIRE-RWSR-like: bicubic x1/scale plus correlated sensor-like noise (see module doc)."""

    name: ClassVar[str] = "ntire"
    scale: int = 4
    noise_sigma: float = 10.0
    grain_px: float = 0.7
    chroma_fraction: float = 0.3
    jpeg_quality: int | None = None
    jpeg_subsampling: str = "4:2:0"

    def noise(self, shape, rng: np.random.Generator) -> np.ndarray:
        return correlated_noise(shape, self.noise_sigma, self.grain_px, self.chroma_fraction, rng)


DEGRADATIONS = {cls.name: cls for cls in (AimDegradation, NtireDegradation)}


def make_degradation(name: str, **params):
    """The degradation called ``name`` with its parameters overridden by ``params``."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; choose one of {sorted(DEGRADATIONS)}")
    return DEGRADATIONS[name](**params)


def data_degradation(data_dir):
    """The synthetic degradation recorded in DATA/manifest.json as a callable (image, seed) -> LR, or None
    (real LR data, or a folder without a recipe)."""
    manifest = Path(data_dir) / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        recipe = json.loads(manifest.read_text(encoding="utf-8")).get("degradation")
    except (OSError, ValueError):
        return None
    if not recipe:
        return None
    return make_degradation(recipe["name"], **{k: v for k, v in recipe.items() if k != "name"})


def degrade_aim(hr: np.ndarray, rng=0, **params) -> np.ndarray:
    """HxWx3 uint8 HR -> AIM-like LR uint8; ``rng`` is a seed or a numpy Generator."""
    return AimDegradation(**params)(hr, rng)


def degrade_ntire(hr: np.ndarray, rng=0, **params) -> np.ndarray:
    """HxWx3 uint8 HR -> NTIRE-like LR uint8; ``rng`` is a seed or a numpy Generator."""
    return NtireDegradation(**params)(hr, rng)
