"""Flat / textured split of an image pair: where on the reference does a method gain or lose PSNR?

The HR reference is cut into 8x8 blocks (the last row / column of blocks is smaller when a side is not a
multiple of 8; such a block counts as one block). A block is *flat* when the standard deviation of its
luma (full-range BT.601, Y = 0.299 R + 0.587 G + 0.114 B on the 0-255 scale, population std over all
its pixels) is below 3, else *textured*. Per pair:

* `flat_fraction`: share of the blocks that are flat;
* `psnr_rgb_flat` / `psnr_rgb_textured`: RGB PSNR on [0, 255] (no crop, as `metrics.psnr_rgb`) over
  the pixels of the flat / textured blocks only; NaN when the image has no such block, inf when those
  pixels are identical.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK = 8
FLAT_STD = 3.0  # luma std (0-255) below which a block is flat
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # full-range BT.601
REGION_KEYS = ("flat_fraction", "psnr_rgb_flat", "psnr_rgb_textured")


def _block_sums(values: np.ndarray, block: int) -> np.ndarray:
    """Sum of a HxW array over each block x block cell (edge cells smaller)."""
    rows = np.add.reduceat(values, np.arange(0, values.shape[0], block), axis=0)
    return np.add.reduceat(rows, np.arange(0, values.shape[1], block), axis=1)


def flat_blocks(ref: np.ndarray, block: int = BLOCK, threshold: float = FLAT_STD) -> np.ndarray:
    """Boolean (ceil(H/block), ceil(W/block)) map: True where the block's luma std is below `threshold`."""
    if not (isinstance(ref, np.ndarray) and ref.ndim == 3 and ref.shape[2] == 3):
        raise ValueError(f"ref must be an HxWx3 RGB array, got {getattr(ref, 'shape', type(ref).__name__)}")
    luma = ref.astype(np.float64) @ LUMA_WEIGHTS
    h, w = luma.shape
    counts = _block_sums(np.ones_like(luma), block)
    means = _block_sums(luma, block) / counts
    deviation = luma - np.repeat(np.repeat(means, block, axis=0), block, axis=1)[:h, :w]
    std = np.sqrt(_block_sums(deviation**2, block) / counts)
    return std < threshold


def flat_mask(ref: np.ndarray, block: int = BLOCK, threshold: float = FLAT_STD) -> np.ndarray:
    """HxW boolean mask of the pixels that lie in flat blocks."""
    h, w = ref.shape[:2]
    blocks = flat_blocks(ref, block, threshold)
    return np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:h, :w]


def masked_psnr_rgb(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """RGB PSNR on [0, 255] over the pixels where `mask` is True; NaN for an empty mask, inf for zero error."""
    if not mask.any():
        return math.nan
    error = pred[mask].astype(np.float64) - ref[mask].astype(np.float64)
    mse = float(np.mean(error**2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def region_scores(pred: np.ndarray, ref: np.ndarray, block: int = BLOCK, threshold: float = FLAT_STD) -> dict:
    """{flat_fraction, psnr_rgb_flat, psnr_rgb_textured} of one pair (see the module docstring)."""
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: pred {pred.shape} vs ref {ref.shape}")
    blocks = flat_blocks(ref, block, threshold)
    h, w = ref.shape[:2]
    mask = np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:h, :w]
    return {
        "flat_fraction": float(blocks.mean()),
        "psnr_rgb_flat": masked_psnr_rgb(pred, ref, mask),
        "psnr_rgb_textured": masked_psnr_rgb(pred, ref, ~mask),
    }
