"""Residual block, down and up steps. No normalization layers: they hurt SR (EDSR)."""

from __future__ import annotations

import torch
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


class Upsample(nn.Sequential):
    """Nearest x2 then conv3x3 (no checkerboard artefacts of transposed convs)."""

    def __init__(self, in_channels: int, out_channels: int, act: str = "leaky_relu"):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(in_channels, out_channels), activation(act))


def count_convs(module: nn.Module) -> int:
    """Conv layers with a spatial kernel, the way the paper counts network depth (1x1 skips excluded)."""
    return sum(1 for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
