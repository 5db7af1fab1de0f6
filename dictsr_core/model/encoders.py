"""E_hr and E_lr: conv in, then residual blocks per stage with a stride-2 step between stages."""

from __future__ import annotations

from torch import nn

from dictsr_core.model.blocks import Downsample, ResidualBlock, conv3x3


class Encoder(nn.Sequential):
    """len(widths) stages; stage s runs at 1/2^s of the input resolution with widths[s] channels.

    E_hr (paper): widths 4 stages -> one 512-d embedding per 8x8 HR patch, 12 conv layers.
    E_lr (paper): widths 2 stages -> one 128-d embedding per 2x2 LR patch, 6 conv layers.
    """

    def __init__(self, widths: tuple[int, ...], blocks_per_stage: int = 1, in_channels: int = 3, act: str = "leaky_relu"):
        layers = [conv3x3(in_channels, widths[0])]
        for s, width in enumerate(widths):
            layers += [ResidualBlock(width, act=act) for _ in range(blocks_per_stage)]
            if s + 1 < len(widths):
                layers.append(Downsample(width, widths[s + 1], act=act))
        super().__init__(*layers)
        self.out_channels = widths[-1]
        self.stride = 2 ** (len(widths) - 1)
