"""Impressionism's recipe (Ji et al. 2020, "Real-World Super-Resolution via Kernel Estimation and Noise Injection",
RealSR), unpaired, for the equal-budget peer `plain-noise-injection`.

From the LR-domain training photos alone (never their synthetic recipe) we estimate:

* **blur kernels**: one isotropic Gaussian per LR photo, of width sigma (HR pixels, applied before MATLAB bicubic
  x1/4). Impressionism runs KernelGAN per photo, a GAN training each; here a cheap estimator stands in, and that is
  a departure: the spectral fall-off of a photo, R = E[lap(I)^2] / E[lap(I_down2)^2] (luma, 3x3 Laplacian, I_down2
  a 2x box average), with the noise's share taken out (the same ratio's terms measured on the noise patches, since
  signal and noise energies add), is matched against R of the clean HR-domain photos blurred by each sigma of a grid
  and downscaled: the sigma of nearest log R is kept;
* **noise**: patches from the flattest windows of the LR photos, minus their mean (data/noise_bank.py, the
  project's noise bank, Impressionism's noise collection);
* **JPEG**: where the LR photos show an 8x8 grid (data/jpeg_trace.py), the quality that reproduces its strength
  (the DF2K_JPEG variant of RealSR); else none.

Each training HR crop is then blurred by a randomly drawn kernel, downscaled x4, given a randomly drawn field of noise
patches, rounded, and JPEG'd where the LR domain shows it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from dictsr_core.data.resize import imresize_np
from dictsr_core.data.statistics import laplacian_energy, luma

SIGMA_GRID = tuple(np.round(np.arange(0.0, 3.01, 0.25), 2))  # HR pixels; 0: bicubic alone
def _down2(values: np.ndarray) -> np.ndarray:
    h, w = values.shape[0] // 2 * 2, values.shape[1] // 2 * 2
    v = values[:h, :w]
    return 0.25 * (v[0::2, 0::2] + v[1::2, 0::2] + v[0::2, 1::2] + v[1::2, 1::2])


def band_energies(image: np.ndarray) -> tuple[float, float]:
    """(fine, coarse) Laplacian energies of an image's luma: at its own scale and after a 2x box average."""
    values = luma(image)
    return laplacian_energy(values), laplacian_energy(_down2(values))


def falloff(image: np.ndarray, noise: tuple[float, float] = (0.0, 0.0)) -> float | None:
    """R = fine / coarse Laplacian energy with the noise's (fine, coarse) energies taken out; None where the noise
    accounts for all of it (a photo too flat to say)."""
    fine, coarse = band_energies(image)
    fine, coarse = fine - noise[0], coarse - noise[1]
    if fine <= 0 or coarse <= 0:
        return None
    return fine / coarse


def noise_energies(patches: np.ndarray) -> tuple[float, float]:
    """Mean (fine, coarse) Laplacian energies of zero-mean noise patches [M, s, s, 3] (grey levels)."""
    pairs = np.array([band_energies(patch.astype(np.float64)) for patch in patches])
    return float(pairs[:, 0].mean()), float(pairs[:, 1].mean())


def blurred_lr(hr: np.ndarray, sigma: float, scale: int = 4) -> np.ndarray:
    """HR blurred by an isotropic Gaussian of `sigma` HR pixels (none at 0), then MATLAB bicubic x1/scale, float."""
    image = np.asarray(hr, dtype=np.float64)
    if sigma > 0:
        image = np.stack([gaussian_filter(image[..., c], sigma, mode="mirror") for c in range(3)], axis=-1)
    return imresize_np(image, 1.0 / scale)


REFERENCE_WINDOW = 512  # HR pixels: the central window of each HR photo the reference fall-offs are measured on


def clean_falloffs(hr_images: list[np.ndarray], sigmas=SIGMA_GRID, window: int = REFERENCE_WINDOW) -> dict[float, float]:
    """{sigma: median falloff of the HR-domain photos (central windows) blurred by sigma and downscaled}."""
    crops = []
    for hr in hr_images:
        top, left = max(0, (hr.shape[0] - window) // 2), max(0, (hr.shape[1] - window) // 2)
        crops.append(hr[top : top + window, left : left + window])
    return {float(s): float(np.median([falloff(blurred_lr(crop, s)) for crop in crops])) for s in sigmas}


def estimate_sigmas(lr_images: list[np.ndarray], hr_images: list[np.ndarray], patches: np.ndarray,
                    sigmas=SIGMA_GRID) -> tuple[list[float], dict]:
    """One kernel width per LR photo (module docstring), and a record of how they were found."""
    reference = clean_falloffs(hr_images, sigmas)
    noise = noise_energies(patches)
    chosen, measured = [], []
    for image in lr_images:
        value = falloff(image, noise)
        measured.append(value)
        if value is None:
            continue
        chosen.append(min(reference, key=lambda s: (abs(np.log(reference[s]) - np.log(value)), s)))
    fallback = None
    if not chosen:  # every photo's fall-off is lost in its noise: bicubic alone, and the record says so
        chosen, fallback = [0.0], "no LR photo has enough signal above its noise to estimate a kernel: bicubic alone"
    return chosen, {"reference_falloff": reference, "noise_energy": noise, "falloff": measured, "sigmas": chosen,
                    "fallback": fallback}


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseInjectionDegradation:
    """Blur by one of `sigmas`, MATLAB bicubic x1/scale, a field of `patches`, round, JPEG at `jpeg_quality`."""

    sigmas: tuple[float, ...]
    patches: np.ndarray  # [M, s, s, 3] int16 zero-mean noise, grey levels, LR pixels
    jpeg_quality: int | None = None
    scale: int = 4

    name = "noise-injection"

    def recipe(self) -> dict:
        return {"name": self.name, "sigmas": list(self.sigmas), "noise_patches": len(self.patches),
                "patch_size": int(self.patches.shape[1]), "jpeg_quality": self.jpeg_quality, "scale": self.scale}

    def __call__(self, hr: np.ndarray, rng) -> np.ndarray:
        from dictsr_core.data.degradations import jpeg_roundtrip
        from dictsr_core.data.noise_bank import noise_field

        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        hr = np.asarray(hr)
        if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3 or hr.shape[0] % self.scale or hr.shape[1] % self.scale:
            raise ValueError(f"expected an HxWx3 uint8 crop with sides multiple of {self.scale}, got {hr.dtype} {hr.shape}")
        lr = blurred_lr(hr, float(self.sigmas[int(rng.integers(0, len(self.sigmas)))]), self.scale)
        lr = lr + noise_field(lr.shape[0], lr.shape[1], self.patches, rng)
        lr = np.clip(np.floor(lr + 0.5), 0, 255).astype(np.uint8)
        return jpeg_roundtrip(lr, self.jpeg_quality) if self.jpeg_quality else lr


def estimate_noise_injection(data_dir, patch_size: int = 24, log=print) -> tuple[NoiseInjectionDegradation, dict]:
    """The degradation estimated from DATA/train_lr (and, for the kernels' reference, DATA/train_hr)."""
    from dictsr_core.data.datasets import load_folder
    from dictsr_core.data.jpeg_trace import estimate_jpeg_quality
    from dictsr_core.data.noise_bank import extract_noise_patches, noise_field

    _, lr_images = load_folder(Path(data_dir) / "train_lr")
    _, hr_images = load_folder(Path(data_dir) / "train_hr")
    patches = extract_noise_patches(lr_images, patch_size)
    sigmas, record = estimate_sigmas(lr_images, hr_images, patches)
    rng = np.random.default_rng(0)
    noisy = []
    for hr in hr_images:  # the JPEG probe's copies: clean LR + one field of real noise, as training_probe makes them
        lr = blurred_lr(hr[:REFERENCE_WINDOW, :REFERENCE_WINDOW], float(np.median(sigmas)))
        noisy.append(np.clip(np.floor(lr + noise_field(lr.shape[0], lr.shape[1], patches, rng) + 0.5), 0, 255)
                     .astype(np.uint8))
    quality, trace = estimate_jpeg_quality(lr_images, noisy)
    record.update(jpeg_trace=trace, noise_patches=len(patches), patch_size=patch_size)
    if record["fallback"]:
        log(f"[noise-injection] {record['fallback']}")
    log(f"[noise-injection] {len(sigmas)} kernels (sigma {min(sigmas):g}-{max(sigmas):g} HR px, median "
        f"{float(np.median(sigmas)):g}), {len(patches)} noise patches, JPEG {quality or 'none'}")
    return NoiseInjectionDegradation(tuple(sigmas), patches, quality), record
