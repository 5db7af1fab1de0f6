"""Real-ESRGAN's second-order degradation (Wang et al. 2021), for the equal-budget peer `plain-realesrgan-deg`.

Written from the published options (``options/train_realesrgan_x4plus.yml`` and ``basicsr/data/degradations.py``
of Real-ESRGAN / BasicSR), since BasicSR's own code no longer imports with the pinned torchvision
(``torchvision.transforms.functional_tensor`` is gone). Each field of `RealESRGANDegradation` is one option, with
the published value as its default; the tests check the draws against these ranges. Per HR crop, twice:

1. blur with a random kernel (size 7..21, odd): isotropic / anisotropic Gaussian, generalized Gaussian or plateau
   kernels with the published probabilities, or (``sinc_prob``) a 2-D sinc;
2. resize by a random factor (up / down / keep with ``resize_prob``, in ``resize_range``), by area, bilinear or
   bicubic;
3. Gaussian noise (sigma in ``noise_range``) or Poisson noise (scale in ``poisson_scale_range``), grey with
   ``gray_noise_prob``;
4. JPEG at a quality in ``jpeg_range``;

(the second pass: blur only with ``second_blur_prob``, and its own ranges), then the final step in random order:
[resize to 1/4 of the HR + sinc filter (``final_sinc_prob``)] then JPEG, or JPEG then [resize + sinc]. Left out:
the GT unsharp masking and the training-pair queue of Real-ESRGAN's model (they concern its GAN training, not the
degradation), and the GPU batching (this runs per crop in the loader's workers).
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
from PIL import Image
from scipy import special
from scipy.ndimage import convolve

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
# the options each of the two passes has its own value of (RealESRGANDegradation: NAME for the first, NAME2 for the second)
PASS_OPTIONS = ("sinc_prob", "blur_sigma", "betag_range", "betap_range", "resize_prob", "resize_range",
                "gaussian_noise_prob", "noise_range", "poisson_scale_range", "gray_noise_prob", "jpeg_range")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    half = size // 2
    return np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))


def _inverse_covariance(sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    d = np.diag([sigma_x**2, sigma_y**2])
    u = np.array([[math.cos(rotation), -math.sin(rotation)], [math.sin(rotation), math.cos(rotation)]])
    return np.linalg.inv(u @ d @ u.T)


def anisotropic_kernel(size: int, sigma_x: float, sigma_y: float, rotation: float, kind: str = "gaussian",
                       beta: float = 1.0) -> np.ndarray:
    """Gaussian, generalized Gaussian (exp(-0.5 (x'S^-1 x)^beta)) or plateau (1 / (1 + (x'S^-1 x)^beta)) kernel,
    normalised to sum 1 (basicsr's bivariate_* kernels)."""
    xx, yy = _grid(size)
    inverse = _inverse_covariance(sigma_x, sigma_y, rotation)
    quadratic = inverse[0, 0] * xx * xx + 2 * inverse[0, 1] * xx * yy + inverse[1, 1] * yy * yy
    if kind == "gaussian":
        kernel = np.exp(-0.5 * quadratic)
    elif kind == "generalized":
        kernel = np.exp(-0.5 * np.power(quadratic, beta))
    elif kind == "plateau":
        kernel = 1.0 / (np.power(quadratic, beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """2-D circular low-pass (sinc) kernel of cutoff omega_c (basicsr's circular_lowpass_kernel)."""
    xx, yy = _grid(size)
    radius = np.sqrt(xx.astype(np.float64) ** 2 + yy**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * special.j1(cutoff * radius) / (2 * np.pi * radius)
    kernel[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    return kernel / kernel.sum()


@dataclasses.dataclass(frozen=True)
class RealESRGANDegradation:
    """Real-ESRGAN x4plus's degradation options (published values as defaults); call with (hr uint8, rng)."""

    scale: int = 4
    kernel_range: tuple = (7, 21)  # odd sizes
    kernel_prob: tuple = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # over KERNEL_TYPES
    sinc_prob: float = 0.1
    blur_sigma: tuple = (0.2, 3.0)
    betag_range: tuple = (0.5, 4.0)
    betap_range: tuple = (1.0, 2.0)
    resize_prob: tuple = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple = (1.0, 30.0)
    poisson_scale_range: tuple = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple = (30, 95)
    second_blur_prob: float = 0.8
    sinc_prob2: float = 0.1
    blur_sigma2: tuple = (0.2, 1.5)
    betag_range2: tuple = (0.5, 4.0)
    betap_range2: tuple = (1.0, 2.0)
    resize_prob2: tuple = (0.3, 0.4, 0.3)
    resize_range2: tuple = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple = (1.0, 25.0)
    poisson_scale_range2: tuple = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple = (30, 95)
    final_sinc_prob: float = 0.8

    name = "realesrgan-second-order"

    def recipe(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    def pass_options(self, second: bool) -> dict:
        """The options of the first or the second pass, under their first-pass names (the second pass's fields end
        in 2)."""
        return {name: getattr(self, f"{name}2" if second else name) for name in PASS_OPTIONS}

    # ---- draws (each returns what it drew, so tests can check the ranges)

    def draw_kernel(self, rng: np.random.Generator, second: bool = False) -> tuple[np.ndarray, dict]:
        options = self.pass_options(second)
        size = int(rng.choice(np.arange(self.kernel_range[0], self.kernel_range[1] + 1, 2)))
        if rng.random() < options["sinc_prob"]:
            cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
            return sinc_kernel(size, cutoff), {"type": "sinc", "size": size, "cutoff": cutoff}
        kind = KERNEL_TYPES[int(rng.choice(len(KERNEL_TYPES), p=np.asarray(self.kernel_prob) / sum(self.kernel_prob)))]
        sigma_range, betag, betap = options["blur_sigma"], options["betag_range"], options["betap_range"]
        sigma_x = rng.uniform(*sigma_range)
        sigma_y, rotation = (sigma_x, 0.0) if kind.endswith("iso") and not kind.endswith("aniso") else (
            rng.uniform(*sigma_range), rng.uniform(-np.pi, np.pi))
        family, beta = "gaussian", 1.0
        if kind.startswith("generalized"):
            family = "generalized"
            beta = rng.uniform(betag[0], 1.0) if rng.random() < 0.5 else rng.uniform(1.0, betag[1])
        elif kind.startswith("plateau"):
            family = "plateau"
            beta = rng.uniform(betap[0], 1.0) if rng.random() < 0.5 else rng.uniform(1.0, betap[1])
        kernel = anisotropic_kernel(size, sigma_x, sigma_y, rotation, family, beta)
        return kernel, {"type": kind, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "rotation": rotation,
                        "beta": beta}

    def draw_scale(self, rng: np.random.Generator, second: bool = False) -> float:
        options = self.pass_options(second)
        probs, bounds = options["resize_prob"], options["resize_range"]
        choice = int(rng.choice(3, p=np.asarray(probs) / sum(probs)))
        if choice == 0:
            return float(rng.uniform(1.0, bounds[1]))
        if choice == 1:
            return float(rng.uniform(bounds[0], 1.0))
        return 1.0

    # ---- operations on float images in [0, 1], HxWx3

    @staticmethod
    def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        return np.stack([convolve(image[..., c], kernel, mode="mirror") for c in range(3)], axis=-1)

    @staticmethod
    def resize(image: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
        filters = {"area": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
        channels = [np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F").resize(
            (width, height), filters[mode])) for c in range(3)]
        return np.stack(channels, axis=-1).astype(np.float64)

    def add_noise(self, image: np.ndarray, rng: np.random.Generator, second: bool = False) -> np.ndarray:
        options = self.pass_options(second)
        gray = rng.random() < options["gray_noise_prob"]
        if rng.random() < options["gaussian_noise_prob"]:
            sigma = rng.uniform(*options["noise_range"]) / 255.0
            noise = rng.normal(0.0, sigma, image.shape[:2] + ((1,) if gray else (3,)))
        else:
            scale = rng.uniform(*options["poisson_scale_range"])
            source = image.mean(axis=2, keepdims=True) if gray else image
            source = np.clip(np.round(source * 255.0) / 255.0, 0, 1)
            levels = 2 ** np.ceil(np.log2(max(len(np.unique(source)), 1)))
            noise = (rng.poisson(source * levels) / levels - source) * scale
        return np.clip(image + noise, 0.0, 1.0)

    @staticmethod
    def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB"), dtype=np.float64) / 255.0

    def _pass(self, image: np.ndarray, rng: np.random.Generator, second: bool, full: tuple[int, int]) -> np.ndarray:
        if not second or rng.random() < self.second_blur_prob:
            image = self.blur(image, self.draw_kernel(rng, second)[0])
        factor = self.draw_scale(rng, second)
        mode = RESIZE_MODES[int(rng.integers(0, 3))]
        # the second pass resizes relative to the final LR size, as Real-ESRGAN's feed_data does; the first relative
        # to the image as it is
        base_h, base_w = (full[0] / self.scale, full[1] / self.scale) if second else image.shape[:2]
        image = self.resize(image, max(1, int(base_h * factor)), max(1, int(base_w * factor)), mode)
        image = self.add_noise(image, rng, second)
        return self.jpeg(np.clip(image, 0, 1), int(rng.integers(*self.pass_options(second)["jpeg_range"], endpoint=True)))

    def __call__(self, hr: np.ndarray, rng) -> np.ndarray:
        """The LR (uint8, exactly 1/scale of the HR) of one HR crop; `rng` a Generator or a seed."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        hr = np.asarray(hr)
        if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3 or hr.shape[0] % self.scale or hr.shape[1] % self.scale:
            raise ValueError(f"expected an HxWx3 uint8 crop with sides multiple of {self.scale}, got {hr.dtype} {hr.shape}")
        full = hr.shape[:2]
        image = hr.astype(np.float64) / 255.0
        image = self._pass(image, rng, second=False, full=full)
        image = self._pass(image, rng, second=True, full=full)
        height, width = full[0] // self.scale, full[1] // self.scale
        sinc = (sinc_kernel(int(rng.choice(np.arange(7, 22, 2))), rng.uniform(np.pi / 3, np.pi))
                if rng.random() < self.final_sinc_prob else None)
        mode = RESIZE_MODES[int(rng.integers(0, 3))]
        quality = int(rng.integers(*self.jpeg_range2, endpoint=True))
        if rng.random() < 0.5:
            image = self.resize(image, height, width, mode)
            if sinc is not None:
                image = self.blur(image, sinc)
            image = self.jpeg(np.clip(image, 0, 1), quality)
        else:
            image = self.jpeg(np.clip(image, 0, 1), quality)
            image = self.resize(image, height, width, mode)
            if sinc is not None:
                image = self.blur(image, sinc)
        return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
