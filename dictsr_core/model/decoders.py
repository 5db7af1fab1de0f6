"""D_hr and D_lr: residual blocks per stage, nearest-x2 + conv between stages, a tail conv to RGB."""

from __future__ import annotations

from torch import nn

from dictsr_core.model.blocks import ResidualBlock, Upsample, conv3x3


class Decoder(nn.Sequential):
    """len(widths) stages from the code grid up; stage s runs at 2^s times the code resolution.

    D_hr (paper): 4 stages (8x up) and a tail conv, 12 conv layers. D_lr: 2 stages, 6 conv layers.
    """

    def __init__(self, widths: tuple[int, ...], blocks_per_stage: int = 1, out_channels: int = 3, act: str = "leaky_relu"):
        layers = []
        for s, width in enumerate(widths):
            layers += [ResidualBlock(width, act=act) for _ in range(blocks_per_stage)]
            if s + 1 < len(widths):
                layers.append(Upsample(width, widths[s + 1], act=act))
        layers.append(conv3x3(widths[-1], out_channels))
        super().__init__(*layers)
        self.in_channels = widths[0]
        self.scale = 2 ** (len(widths) - 1)
