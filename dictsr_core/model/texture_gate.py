"""The texture gate (not in the paper; `model.texture_gate`): a coarse code where the LR image is flat, the whole
dictionary where it is textured.

A code of a few entries is one the degradation's noise mostly cannot move (index agreement >= 0.5), and on flat
regions it is also the better picture: fewer entries, fewer blotches. On texture it is too poor: the 8-entry codes
of photos-ntire trail paired-bicubic on the textured photos while the full 1024-entry code is level with it there. The gate
reads how textured each code cell's neighbourhood is from the LR image itself, where the noise is first low-passed
away, and lets the textured cells choose among all N entries (unblurred); the rest choose among the coarse code's M
entries (with model.lookup_blur). Both index into the same D_hr, so one decoder serves the mixed map.

Roughness of a code cell: the luma of the LR image (full-range BT.601 on 0-255) Gaussian-blurred with sigma
ROUGHNESS_SIGMA LR pixels, its population standard deviation over each ROUGHNESS_WINDOW x ROUGHNESS_WINDOW
neighbourhood (replicate-padded), averaged over the cell's code_patch x code_patch pixels. A cell is textured when
its roughness is at least model.texture_gate grey levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dictsr_core.model.lowpass_base import gaussian_lowpass, kernel_radius
from dictsr_core.model.precision import autocast_off

ROUGHNESS_SIGMA = 1.0  # LR pixels: passes 0.28x of white noise, keeps edges and texture of a few pixels' period
ROUGHNESS_WINDOW = 3
LUMA = (0.299, 0.587, 0.114)


def lr_roughness(lr: torch.Tensor, code_patch: int = 1) -> torch.Tensor:
    """[B, 3, H, W] LR in [0, 1] (H, W multiples of code_patch) -> [B, H / code_patch, W / code_patch] roughness in
    grey levels (module docstring)."""
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ValueError(f"lr must be a [B, 3, H, W] RGB batch, got {tuple(lr.shape)}")
    with autocast_off(lr.device):
        lr = lr.float()  # scalar weights: no host-to-device copy, so a CUDA graph can capture it
        luma = (lr[:, 0:1] * LUMA[0] + lr[:, 1:2] * LUMA[1] + lr[:, 2:3] * LUMA[2]) * 255.0
        luma = gaussian_lowpass(luma, ROUGHNESS_SIGMA)
        pad = ROUGHNESS_WINDOW // 2
        padded = F.pad(luma, (pad, pad, pad, pad), mode="replicate")
        mean = F.avg_pool2d(padded, ROUGHNESS_WINDOW, stride=1)
        square = F.avg_pool2d(padded * padded, ROUGHNESS_WINDOW, stride=1)
        std = (square - mean * mean).clamp(min=0).sqrt()
        if code_patch > 1:
            std = F.avg_pool2d(std, code_patch)
        return std[:, 0]


def roughness_radius() -> int:
    """LR pixels of context a cell's roughness reads around the cell (for tiled inference's margin)."""
    return kernel_radius(ROUGHNESS_SIGMA) + ROUGHNESS_WINDOW // 2
