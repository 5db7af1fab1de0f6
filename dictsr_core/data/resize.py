"""MATLAB-compatible bicubic resize (``imresize``), in numpy for data preparation and in torch for the training step.

Both follow MATLAB's ``imresize(img, scale, 'bicubic')`` with its defaults, as DIV2K, DeFlow and
BasicSR's ``imresize`` do: Keys cubic with a = -0.5, the kernel widened by 1/scale when
downscaling (antialiasing), symmetric (mirror with edge repeat) padding, and output size
``ceil(scale * input)``. The arithmetic is floating point throughout; uint8 input is rounded
half-up and clipped once at the end (as BasicSR does; MATLAB rounds after each dimension,
which can differ by one grey level on rare pixels).

The two implementations share one table of source indices and weights per
(input length, output length, scale), so they agree to float precision. Each output pixel
is a weighted sum over a few source pixels (``ceil(4 / scale) + 2`` taps), applied by
gathering those pixels, which is exact in fp32 (a dense matmul would run in TF32 on GPUs
where the trainer enables it).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

CUBIC_A = -0.5
CUBIC_SUPPORT = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    a = CUBIC_A
    near = ((a + 2) * absx3 - (a + 3) * absx2 + 1) * (absx <= 1)
    far = (a * absx3 - 5 * a * absx2 + 8 * a * absx - 4 * a) * ((absx > 1) & (absx <= 2))
    return near + far


def output_length(in_length: int, scale: float) -> int:
    """MATLAB's output size for a scale factor: ceil(scale * in_length)."""
    if in_length < 1:
        raise ValueError(f"cannot resize an axis of length {in_length}")
    # Round away float noise first so that e.g. 0.25 * 256 gives exactly 64, not 65.
    return int(math.ceil(round(in_length * scale, 9)))


@functools.lru_cache(maxsize=256)
def contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (0-based, mirrored into range) and weights, each [out_length, taps], float64.

    Mirrors MATLAB's ``contributions`` (imresize.m): output pixel x (1-based) maps to
    u = x / scale + 0.5 (1 - 1/scale); taps are the ceil(width) + 2 integers from
    floor(u - width / 2); weights are normalised to sum to one; indices outside the
    image are reflected symmetrically (1, 2, ..., n, n, n-1, ...).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    width = CUBIC_SUPPORT / scale if scale < 1 else CUBIC_SUPPORT
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    if scale < 1:
        weights = scale * cubic((u[:, None] - indices) * scale)
    else:
        weights = cubic(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric boundary: index k (1-based) outside [1, n] reflects with the edge repeated.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    # Drop taps that carry no weight for any output pixel (MATLAB does the same).
    keep = np.any(weights != 0, axis=0)
    indices, weights = indices[:, keep], weights[:, keep]
    indices.setflags(write=False)
    weights.setflags(write=False)
    return indices, weights


def _scales(scale) -> tuple[float, float]:
    if isinstance(scale, (tuple, list)):
        if len(scale) != 2:
            raise ValueError(f"scale must be a number or (scale_h, scale_w), got {scale!r}")
        return float(scale[0]), float(scale[1])
    return float(scale), float(scale)


def imresize_np(img: np.ndarray, scale) -> np.ndarray:
    """Resize an HxW or HxWxC image by ``scale`` (a number or (scale_h, scale_w)).

    Float input gives float64 output (no clipping); uint8 input gives uint8 output,
    rounded half-up and clipped to [0, 255] like MATLAB.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    is_uint8 = img.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f"expected uint8 or float image, got {img.dtype}")
    scale_h, scale_w = _scales(scale)
    out = img.astype(np.float64)
    for axis, s in ((0, scale_h), (1, scale_w)):
        n = out.shape[axis]
        indices, weights = contributions(n, output_length(n, s), s)
        moved = np.ascontiguousarray(np.moveaxis(out, axis, 0))  # gathering whole rows is a fast copy
        acc = np.zeros((indices.shape[0],) + moved.shape[1:], dtype=np.float64)
        shape = (-1,) + (1,) * (moved.ndim - 1)
        for tap in range(indices.shape[1]):
            acc += weights[:, tap].reshape(shape) * moved[indices[:, tap]]
        out = np.moveaxis(acc, 0, axis)
    if is_uint8:
        return np.floor(np.clip(out, 0.0, 255.0) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


@functools.lru_cache(maxsize=256)
def _torch_contributions(in_length: int, out_length: int, scale: float, device: torch.device):
    indices, weights = contributions(in_length, out_length, scale)
    return (
        torch.tensor(indices.reshape(-1), dtype=torch.long, device=device),
        torch.tensor(weights, dtype=torch.float32, device=device),
    )


def _resize_last_axis(x: torch.Tensor, scale: float) -> torch.Tensor:
    n = x.shape[-1]
    indices, weights = _torch_contributions(n, output_length(n, scale), scale, x.device)
    gathered = x.index_select(-1, indices).unflatten(-1, weights.shape)  # [..., out, taps]
    return (gathered * weights).sum(-1)


def imresize_torch(x: torch.Tensor, scale) -> torch.Tensor:
    """Resize the last two axes of a float tensor (e.g. [B, C, H, W]) like MATLAB bicubic.

    Runs on the tensor's device, computes in fp32 and returns the input dtype; the index
    and weight tables are built once per (size, scale, device) and cached.
    """
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.ndim < 2:
        raise ValueError(f"expected at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    scale_h, scale_w = _scales(scale)
    out = x.float()
    out = _resize_last_axis(out, scale_w)
    out = _resize_last_axis(out.transpose(-1, -2), scale_h).transpose(-1, -2)
    return out.to(x.dtype).contiguous()
