"""Evaluation metrics with the conventions of the paper's tables (docs/method.md, "Evaluation conventions"), and codebook health.

Images are RGB uint8 HxWx3 arrays in [0, 255]; `pred` is the super-resolved image, `ref` the ground truth.
* RGB PSNR / SSIM: no border crop, as the evaluation code the paper cites (DeFlow / SRFlow `Measure.py`). Its SSIM
  is scikit-image's `structural_similarity(imgA, imgB, multichannel=True)` with every other argument at its
  default: 7x7 uniform window, sample covariance, data range 255 from uint8, averaged over the three channels.
  `ssim_rgb` is that; `ssim_rgb_gauss` is the Wang et al. / BasicSR window (below) on RGB, kept as a second column.
* Y PSNR / SSIM: BasicSR `calculate_psnr/ssim(test_y_channel=True)`: crop first, ITU-R BT.601 Y in
  [16, 235], float64; SSIM with an 11x11 Gaussian window, sigma 1.5, population covariance, data range 255.
* High-frequency energy ratio (`hf_energy_ratio`): the SR's Laplacian energy over the HR's (luma, 3x3 Laplacian,
  mean square): under 1 an over-smoothed SR, over 1 one that adds (or keeps) noise.
* LPIPS v0.1 on inputs scaled to [-1, 1], full resolution.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dictsr_core.perceptual.lpips_models import build_lpips

# BasicSR rgb2ycbcr(y_only=True): Y = 16 + [65.481, 128.553, 24.966] . RGB, with RGB in [0, 1].
BT601_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
BT601_Y_OFFSET = 16.0
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # what skimage derives from sigma 1.5 (truncate 3.5): 2 * int(3.5 * 1.5 + 0.5) + 1
Y_CROP = 4  # border pixels cropped before the Y metrics (BasicSR)
MIN_SCORE_SIZE = SSIM_WINDOW + 2 * Y_CROP  # 19: the smallest side score_pair can score


def score_size_problem(width: int, height: int) -> str | None:
    """Why score_pair cannot score an image of this size (None if it can): SSIM's 11x11 window, after the Y crop."""
    if min(width, height) >= MIN_SCORE_SIZE:
        return None
    return (f"image is {width}x{height}; the metrics need at least {MIN_SCORE_SIZE}x{MIN_SCORE_SIZE} pixels "
            f"(SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window after the {Y_CROP}-pixel border crop of the Y metrics)")


def _describe(image) -> str:
    if isinstance(image, np.ndarray):
        return f"{image.dtype} array of shape {image.shape}"
    return type(image).__name__


def _check_rgb_pair(pred, ref) -> None:
    for role, image in (("pred", pred), ("ref", ref)):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(f"{role} must be a uint8 HxWx3 RGB array in [0, 255], got {_describe(image)}")
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: pred {pred.shape} vs ref {ref.shape}")


def _psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    if np.array_equal(pred, ref):
        return math.inf  # skimage would divide by zero (with a warning) to reach the same value
    return float(peak_signal_noise_ratio(ref, pred, data_range=255))


MEASURE_SSIM_WINDOW = 7  # scikit-image's default win_size, which Measure.py leaves as it is


def _ssim_measure(pred: np.ndarray, ref: np.ndarray) -> float:
    """DeFlow / SRFlow Measure.py's SSIM: structural_similarity with its defaults on uint8 RGB."""
    if min(pred.shape[:2]) < MEASURE_SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {MEASURE_SSIM_WINDOW}x{MEASURE_SSIM_WINDOW}, got {pred.shape[0]}x{pred.shape[1]}")
    return float(structural_similarity(ref, pred, channel_axis=-1))


def _ssim(pred: np.ndarray, ref: np.ndarray, channel_axis) -> float:
    height, width = pred.shape[:2]
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {height}x{width}")
    return float(structural_similarity(
        ref, pred, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False,
        data_range=255, channel_axis=channel_axis,
    ))


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of a uint8 RGB image as float64 in [16, 235] (BasicSR `rgb2ycbcr(y_only=True)` * 255)."""
    return image.astype(np.float64) @ BT601_Y_WEIGHTS + BT601_Y_OFFSET


def _cropped_y(image: np.ndarray, crop: int) -> np.ndarray:
    if crop < 0 or 2 * crop >= min(image.shape[:2]):
        raise ValueError(f"crop {crop} is invalid for an image of shape {image.shape}")
    if crop:
        image = image[crop:-crop, crop:-crop]
    return rgb_to_y(image)


def psnr_rgb(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB over all RGB pixels, no crop; inf for identical images."""
    _check_rgb_pair(pred, ref)
    return _psnr(pred, ref)


def ssim_rgb(pred: np.ndarray, ref: np.ndarray) -> float:
    """SSIM per RGB channel, averaged; no crop; Measure.py's convention (7x7 uniform window, sample covariance)."""
    _check_rgb_pair(pred, ref)
    if pred.dtype != np.uint8 or ref.dtype != np.uint8:
        raise ValueError("ssim_rgb scores uint8 images (Measure.py's data range 255 comes from the dtype)")
    return _ssim_measure(pred, ref)


def ssim_rgb_gauss(pred: np.ndarray, ref: np.ndarray) -> float:
    """SSIM per RGB channel, averaged; no crop; 11x11 Gaussian window, sigma 1.5, population covariance."""
    _check_rgb_pair(pred, ref)
    return _ssim(pred, ref, channel_axis=-1)


def hf_energy_ratio(pred: np.ndarray, ref: np.ndarray) -> float:
    """The SR's Laplacian energy over the HR's, on the BT.601 luma (NaN for a perfectly flat HR)."""
    from dictsr_core.data.statistics import laplacian_energy, luma

    _check_rgb_pair(pred, ref)
    reference = laplacian_energy(luma(ref))
    return laplacian_energy(luma(pred)) / reference if reference > 0 else float("nan")


def psnr_y(pred: np.ndarray, ref: np.ndarray, crop: int = 4) -> float:
    """PSNR in dB on the Y channel after cropping `crop` pixels from every border; inf for identical Y."""
    _check_rgb_pair(pred, ref)
    pred_y, ref_y = _cropped_y(pred, crop), _cropped_y(ref, crop)
    return _psnr(pred_y, ref_y)


def ssim_y(pred: np.ndarray, ref: np.ndarray, crop: int = 4) -> float:
    """SSIM on the Y channel after cropping `crop` pixels from every border."""
    _check_rgb_pair(pred, ref)
    return _ssim(_cropped_y(pred, crop), _cropped_y(ref, crop), channel_axis=None)


def rgb_uint8_to_lpips_input(image: np.ndarray, device=None) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float32 in [-1, 1], the range LPIPS expects."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
    return (tensor / 127.5 - 1.0).unsqueeze(0).to(device)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ReferenceFeatures:
    """The LPIPS trunk's normalised features of reference images, kept while they fit in `max_bytes`: every method
    is scored against the same HR images, so each reference costs one trunk pass instead of one per method (half
    of LPIPS-VGG's time in an evaluation). Keyed by the trunk and the image's bytes; once full, new references are
    computed and not kept (records score the references in the same order, so the first ones stay useful)."""

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes, self.used, self.features = max_bytes, 0, {}

    def get(self, model, image: np.ndarray, device) -> list[torch.Tensor]:
        key = (id(model), str(device), image.shape, hashlib.blake2b(np.ascontiguousarray(image).data).digest())
        if key in self.features:
            return self.features[key]
        found = lpips_features(model, image, device)
        size = sum(f.numel() * f.element_size() for f in found)
        if self.used + size <= self.max_bytes:
            self.features[key], self.used = found, self.used + size
        return found

    def clear(self) -> None:
        self.features, self.used = {}, 0


REFERENCE_FEATURES = ReferenceFeatures()


def lpips_features(model, image: np.ndarray, device) -> list[torch.Tensor]:
    """What `lpips.LPIPS.forward` computes of one input: the trunk's layers after the scaling layer, each
    normalised over channels."""
    import lpips

    outs = model.net.forward(model.scaling_layer(rgb_uint8_to_lpips_input(image, device)))
    return [lpips.normalize_tensor(outs[k]) for k in range(model.L)]


def lpips_distance(pred: np.ndarray, ref: np.ndarray, net: str = "alex", device=None, cache_dir=None,
                   reference_cache: ReferenceFeatures | None = REFERENCE_FEATURES) -> float:
    """LPIPS v0.1 (`net` 'alex' or 'vgg') at full resolution; device defaults to CUDA when available. The reference's
    features come from `reference_cache` where it holds them (None: computed every call); the distance is
    `lpips.LPIPS.forward`'s, term by term (tests/test_evaluation_metrics.py)."""
    _check_rgb_pair(pred, ref)
    device = torch.device(device) if device is not None else default_device()
    model = build_lpips(net, cache_dir=cache_dir, device=device)
    with torch.no_grad():
        if reference_cache is None or model.version != "0.1" or model.spatial or not model.lpips:
            distance = model(rgb_uint8_to_lpips_input(pred, device), rgb_uint8_to_lpips_input(ref, device))
            return float(distance.item())
        reference = reference_cache.get(model, ref, device)
        distance = 0
        for k, feature in enumerate(lpips_features(model, pred, device)):
            distance += model.lins[k]((feature - reference[k]) ** 2).mean([2, 3], keepdim=True)
    return float(distance.item())


def score_pair(pred: np.ndarray, ref: np.ndarray, device=None, cache_dir=None) -> dict:
    """Every reported metric for one image pair: the row shape of the evaluation JSON."""
    _check_rgb_pair(pred, ref)
    return {
        "psnr_rgb": psnr_rgb(pred, ref),
        "ssim_rgb": ssim_rgb(pred, ref),
        "ssim_rgb_gauss": ssim_rgb_gauss(pred, ref),
        "psnr_y": psnr_y(pred, ref),
        "ssim_y": ssim_y(pred, ref),
        "lpips_alex": lpips_distance(pred, ref, net="alex", device=device, cache_dir=cache_dir),
        "lpips_vgg": lpips_distance(pred, ref, net="vgg", device=device, cache_dir=cache_dir),
        "hf_energy_ratio": hf_energy_ratio(pred, ref),
    }


def codebook_usage(indices: torch.Tensor, num_entries: int) -> dict:
    """How much of a dictionary is used: activated entries, per-entry counts, perplexity exp(entropy).

    Perplexity equals k when k entries are used equally often, and `num_entries` at best.
    """
    if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"indices must be an integer tensor, got {getattr(indices, 'dtype', type(indices).__name__)}")
    if num_entries < 1:
        raise ValueError(f"num_entries must be positive, got {num_entries}")
    flat = indices.detach().reshape(-1).long().cpu()
    if flat.numel() == 0:
        raise ValueError("indices is empty: no code was selected")
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= num_entries:
        raise ValueError(f"indices range [{low}, {high}] falls outside [0, {num_entries - 1}]")
    histogram = torch.bincount(flat, minlength=num_entries)
    probabilities = histogram[histogram > 0].double() / flat.numel()
    entropy = float(-(probabilities * probabilities.log()).sum())
    return {
        "activated": int((histogram > 0).sum()),
        "histogram": histogram,
        "perplexity": math.exp(entropy),
    }
