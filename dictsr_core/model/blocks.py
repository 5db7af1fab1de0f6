"""Residual block, down and up steps. No normalization layers: they hurt SR (EDSR)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def activation(name: str = "leaky_relu") -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"model.activation: unknown activation {name!r} (leaky_relu, relu, silu, gelu)")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class ResidualBlock(nn.Module):
    """conv3x3 - act - conv3x3 plus identity (1x1 conv when channels change)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, act: str = "leaky_relu"):
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = conv3x3(in_channels, out_channels)
        self.act = activation(act)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv2(self.act(self.conv1(x)))


class Downsample(nn.Sequential):
    """Stride-2 conv3x3 (halves the resolution, may change channels)."""

    def __init__(self, in_channels: int, out_channels: int, act: str = "leaky_relu"):
        super().__init__(conv3x3(in_channels, out_channels, stride=2), activation(act))


class Upsample(nn.Module):
    """Nearest x2 then conv3x3 (no checkerboard artefacts of transposed convs).

    Computed exactly as four 2x2 convs at the low resolution (one per output phase), since nearest
    upsampling repeats each pixel: 16 instead of 36 multiply-adds per output value. The parameters are
    the 3x3 conv's, so `folded=False` (the literal upsample-then-conv) gives the same function.
    """

    def __init__(self, in_channels: int, out_channels: int, act: str = "leaky_relu"):
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels)
        self.act = activation(act)
        self.folded = True

    def phase_weights(self) -> torch.Tensor:
        """[4*out, in, 2, 2]: the 3x3 kernel summed over the taps that see the same low-res pixel, per phase."""
        w = self.conv.weight
        rows = (torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),  # phase 0: rows i-1 | i
                torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2))  # phase 1: rows i | i+1
        phases = []
        for k in rows:
            phases.append(torch.stack([k[..., 0], k[..., 1] + k[..., 2]], -1))
            phases.append(torch.stack([k[..., 0] + k[..., 1], k[..., 2]], -1))
        return torch.cat(phases, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.folded:
            return self.act(self.conv(F.interpolate(x, scale_factor=2, mode="nearest")))
        b, _, h, w = x.shape
        o = self.conv.out_channels
        y = F.conv2d(x, self.phase_weights().to(x.dtype), self.conv.bias.repeat(4).to(x.dtype), padding=1)
        # phase (a, b) of output pixel (2i+a, 2j+b) sits at y[..., i+a, j+b] in its channel block
        p00, p01, p10, p11 = y.split(o, dim=1)
        top = torch.stack([p00[..., :h, :w], p01[..., :h, 1:]], -1)
        bottom = torch.stack([p10[..., 1:, :w], p11[..., 1:, 1:]], -1)
        return self.act(torch.stack([top, bottom], 3).reshape(b, o, 2 * h, 2 * w))


def count_convs(module: nn.Module) -> int:
    """Conv layers with a spatial kernel, the way the paper counts network depth (1x1 skips excluded)."""
    return sum(1 for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
