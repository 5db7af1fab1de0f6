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

    Computed exactly as one stride-2 transposed conv with a 4x4 kernel built from the 3x3 one: nearest
    upsampling repeats each pixel, so each output phase sees 2x2 input pixels, 16 instead of 36
    multiply-adds per output value, with no upsampled copy and no phase shuffle (on a 2-core CPU in bf16
    channels_last it runs near the plain conv's MACs/s; the earlier four-phase 2x2 conv ran 30-40 % slower).
    The parameters are the 3x3 conv's, so `folded=False` (the literal upsample-then-conv) is the same function.
    """

    def __init__(self, in_channels: int, out_channels: int, act: str = "leaky_relu"):
        super().__init__()
        self.conv = conv3x3(in_channels, out_channels)
        self.act = activation(act)
        self.folded = True

    def transposed_weight(self) -> torch.Tensor:
        """[in, out, 4, 4]. Along each axis, output 2m sees taps (w1 + w2) at input m and w0 at m - 1, output
        2m + 1 sees (w0 + w1) at m and w2 at m + 1: conv_transpose2d(stride 2, padding 1) taps [w2, w1+w2, w0+w1, w0]."""

        def along(w, dim):
            w0, w1, w2 = w.unbind(dim)
            return torch.stack([w2, w1 + w2, w0 + w1, w0], dim)

        return along(along(self.conv.weight, 2), 3).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.folded:
            return self.act(self.conv(F.interpolate(x, scale_factor=2, mode="nearest")))
        weight = self.transposed_weight().to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return self.act(F.conv_transpose2d(x, weight, self.conv.bias.to(x.dtype), stride=2, padding=1))


def count_convs(module: nn.Module) -> int:
    """Conv layers with a spatial kernel, the way the paper counts network depth (1x1 skips excluded)."""
    return sum(1 for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
