"""The D_hr decoder's first residual block, run straight from the d-dimensional code map (inference only).

D_hr entries live in a d = 4 dimensional lookup space; `hr_out` (a 1x1 conv) lifts them to the
decoder's 512 channels, and the first thing the decoder does is a 512 -> 512 3x3 conv. Both are
linear, so conv1(hr_out(e)) is one 3x3 conv from d + 1 channels: the d code channels and a ones
map that carries hr_out's bias (zero in the padding, exactly where hr_out(e) is zero too). The same
function for 5 instead of 512 input channels: at the paper's size this removes 2.4 of the 25
GMACs of a 64x64 LR image. It is a snapshot of the weights, made after training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dictsr_core.model.blocks import ResidualBlock


class CodeStem(nn.Module):
    """hr_out followed by a ResidualBlock with an identity skip, from codes [B, d, h, w]."""

    @staticmethod
    def folds(block: nn.Module) -> bool:
        """Whether `block` can take hr_out in: a ResidualBlock whose skip is the identity."""
        return isinstance(block, ResidualBlock) and isinstance(block.skip, nn.Identity)

    def __init__(self, project_out: nn.Conv2d, block: ResidualBlock):
        super().__init__()
        if not self.folds(block):
            raise ValueError("CodeStem folds hr_out into a ResidualBlock with an identity skip")
        with torch.no_grad():
            lift = project_out.weight[:, :, 0, 0]  # [C, d]
            weight = block.conv1.weight  # [O, C, 3, 3]
            codes = torch.einsum("ocij,cd->odij", weight, lift)
            ones = torch.einsum("ocij,c->oij", weight, project_out.bias).unsqueeze(1)
            self.register_buffer("weight", torch.cat([codes, ones], 1))
            self.register_buffer("bias", block.conv1.bias.detach().clone())
        self.project_out, self.act, self.conv2 = project_out, block.act, block.conv2

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = codes.to(self.weight.dtype)  # autocast, when on, casts the convs
        ones = x.new_ones(x.shape[0], 1, x.shape[2], x.shape[3])
        hidden = F.conv2d(torch.cat([x, ones], 1), self.weight, self.bias, padding=1)
        return self.project_out(x) + self.conv2(self.act(hidden))
