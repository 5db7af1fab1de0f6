"""The low-pass base (not in the paper; `model.base_sigma`): decoders add their output to a blurred copy of
the LR input instead of painting every pixel from a code.

A code of d = 4 numbers chosen among N entries carries about log2(N) bits per 2x2 LR patch: too few for
colour and structure at once, so flat regions come out in blotches of the few colours the training HR
photos had. A Gaussian low-pass of the LR image keeps the colour and the slow shading; at sigma = 1.5 LR
pixels it passes 0.19x of white noise (a sigma-8 noise becomes 1.5 grey levels), so the degradation
barely reaches it. The codes then describe only the detail above that base, which is also what the
coupled HR and LR entries can share across colours.

Every branch uses the base of its own LR-side input: branch 1 (HR) the base of I_hr_down, upsampled 4x,
exactly as inference upsamples the base of the real LR image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dictsr_core.model.precision import autocast_off


def gaussian_kernel(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps over +-ceil(3 sigma)."""
    radius = kernel_radius(sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def kernel_radius(sigma: float) -> int:
    return max(1, int(math.ceil(3.0 * sigma)))


def gaussian_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W], replicate-padded (the same padding tiles and whole images get)."""
    taps = gaussian_kernel(sigma, dtype=x.dtype, device=x.device)
    radius = taps.numel() // 2
    channels = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def lowpass_base(lr: torch.Tensor, sigma: float, scale: int = 1) -> torch.Tensor:
    """The base of an LR image in [0, 1]: Gaussian low-pass, then bicubic x`scale` (1: the LR branches)."""
    base = gaussian_lowpass(lr, sigma)
    if scale != 1:
        base = F.interpolate(base, scale_factor=scale, mode="bicubic", align_corners=False)
    return base


def base_margin(sigma: float) -> int:
    """LR pixels of context one output pixel of the base depends on (blur radius + bicubic support)."""
    return kernel_radius(sigma) + 2


def add_base(decoded: torch.Tensor, lr: torch.Tensor | None, sigma: float, scale: int) -> torch.Tensor:
    """Image in [0, 1] from a decoder output in [-1, 1]: (decoded + 1) / 2 without a base (the paper), else
    base + decoded / 2, so a decoder output of 0 means "the base itself"."""
    if sigma <= 0:
        return (decoded + 1.0) * 0.5
    with autocast_off(lr.device):  # the base carries the colour: never in bf16 (8 bits of mantissa ~ 1 grey level)
        base = lowpass_base(lr.float(), sigma, scale)
    return base + decoded.float() * 0.5
