"""Noise patches from the LR domain (not in the paper; `train.consistency_weight`): the degradation of real LR
photos, sampled where their content is flat, so it can be added to clean HR-down patches.

The unpaired setting gives no clean version of a real LR image, but flat regions of the real LR photos (sky,
walls) show their noise and compression almost alone. Following the noise injection of Ji et al. 2020
("Real-World Super-Resolution via Kernel Estimation and Noise Injection", the NTIRE 2020 RWSR winner), we
collect the flattest windows of the LR training images and keep each window minus its mean: a sample of
the real degradation's noise, with its spatial correlation and JPEG blocking. Added to a clean HR-down
patch, it makes a degraded version of an image whose clean code is known, which is what an index-consistency
loss needs. Nothing here knows the synthetic degradation recipe; only the LR training images are read.
"""

from __future__ import annotations

import numpy as np

STRIDE_FRACTION = 4  # window stride = size // 4


def _box_means(values: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Mean of every size x size window (top-left on the stride grid) of a HxW(xC) array, via an integral image."""
    integral = np.pad(values.cumsum(0).cumsum(1), [(1, 0), (1, 0)] + [(0, 0)] * (values.ndim - 2))
    h, w = values.shape[:2]
    tops, lefts = np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride)
    t, l = tops[:, None], lefts[None, :]
    total = integral[t + size, l + size] - integral[t, l + size] - integral[t + size, l] + integral[t, l]
    return total / (size * size)


def flatness_scores(image: np.ndarray, size: int, sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """(score, (top, left) per window) of every size x size window: the std of the window's low-passed luma,
    i.e. how much *content* (not noise) it holds. Lower is flatter."""
    from scipy.ndimage import gaussian_filter

    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    smooth = gaussian_filter(luma, sigma, mode="nearest")
    stride = max(1, size // STRIDE_FRACTION)
    mean = _box_means(smooth, size, stride)
    mean_sq = _box_means(smooth * smooth, size, stride)
    score = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    tops, lefts = np.meshgrid(np.arange(score.shape[0]) * stride, np.arange(score.shape[1]) * stride, indexing="ij")
    return score.reshape(-1), np.stack([tops.reshape(-1), lefts.reshape(-1)], 1)


def extract_noise_patches(images: list[np.ndarray], size: int, count: int = 2048, max_content_std: float = 4.0) -> np.ndarray:
    """[M, size, size, 3] int16 zero-mean noise patches (M <= count) from flat windows of `images`.

    A window qualifies when its low-passed content varies by less than `max_content_std` grey levels; `count`
    of them are taken evenly over the qualifying windows sorted by flatness (deterministic, and representative:
    the very flattest windows alone are where JPEG removed the noise, and would understate it). Each is the
    window minus its per-channel mean. Raises ValueError when no window qualifies.
    """
    candidates = []
    for number, image in enumerate(images):
        if min(image.shape[:2]) < size:
            continue
        scores, corners = flatness_scores(image, size)
        candidates += [(float(s), number, int(t), int(l)) for s, (t, l) in zip(scores, corners) if s < max_content_std]
    if not candidates:
        raise ValueError(f"no window of the LR images is {size}x{size} and flat enough for a noise patch "
                         f"(content std under {max_content_std} grey levels)")
    candidates.sort()
    chosen = [candidates[i] for i in np.unique(np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int))]
    patches = np.empty((len(chosen), size, size, 3), dtype=np.int16)
    for i, (_, number, top, left) in enumerate(chosen):
        window = images[number][top : top + size, left : left + size].astype(np.float64)
        patches[i] = np.round(window - window.mean(axis=(0, 1), keepdims=True)).astype(np.int16)
    return patches


def inject(clean: "torch.Tensor", noise: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Clean images in [0, 1] plus noise patches in grey levels, rounded and clipped to 8 bits like a file."""
    return (clean * 255.0 + noise.to(clean.dtype)).round_().clamp_(0, 255).div_(255)


def jpeg_batch(images: "torch.Tensor", quality: int) -> "torch.Tensor":  # noqa: F821
    """A JPEG round trip (data.degradations.jpeg_roundtrip: PIL, 4:2:0, as the probe and the synthetic data use) of
    each image of a [B, 3, H, W] batch in [0, 1], on the CPU, returned on the batch's device: the noisy copies
    compressed as the LR photos were (train.noise_jpeg)."""
    import torch

    from dictsr_core.data.degradations import jpeg_roundtrip

    pixels = images.detach().mul(255).round_().clamp_(0, 255).to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    coded = np.stack([jpeg_roundtrip(np.ascontiguousarray(image), int(quality)) for image in pixels])
    return torch.from_numpy(coded).permute(0, 3, 1, 2).to(images.device, images.dtype).div_(255)


def noise_jpeg_quality(hr_images: list[np.ndarray], lr_images: list[np.ndarray], patches: np.ndarray,
                       window: int = 512, seed: int = 0) -> tuple[int | None, dict]:
    """The JPEG quality the LR photos show, for noisy copies made as training makes them (HR-down of each HR
    photo's central window plus one field of the noise patches): data/jpeg_trace.estimate_jpeg_quality, None
    where they show none. Reads the LR and HR training photos only, never a pair."""
    from dictsr_core.data.jpeg_trace import estimate_jpeg_quality
    from dictsr_core.data.resize import imresize_np

    rng = np.random.default_rng(seed)
    noisy = []
    for hr in hr_images:
        crop = hr[:window, :window]
        crop = crop[: crop.shape[0] // 4 * 4, : crop.shape[1] // 4 * 4]
        down = imresize_np(crop, 0.25).astype(np.int16)
        noisy.append(np.clip(np.floor(down + noise_field(down.shape[0], down.shape[1], patches, rng) + 0.5), 0, 255)
                     .astype(np.uint8))
    return estimate_jpeg_quality(lr_images, noisy)


def noise_field(height: int, width: int, patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[height, width, 3] int16 noise tiled from randomly drawn `patches` (edge tiles cropped): one draw of the real
    LR noise over a whole image, for index consistency measured on clean training images."""
    size = patches.shape[1]
    rows, cols = -(-height // size), -(-width // size)
    drawn = patches[rng.integers(0, len(patches), size=rows * cols)]
    field = drawn.reshape(rows, cols, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(rows * size, cols * size, 3)
    return field[:height, :width]
