"""The conventional baseline: E_lr -> 1x1 bridge -> D_hr with no dictionary, the same layers and cost as
DictSR's inference path. Trained on pairs (paired-bicubic, oracle), it shows what the coupled
dictionaries add (or cost) under the same budget."""

from __future__ import annotations

import torch
from torch import nn

from dictsr_core.config import ModelConfig
from dictsr_core.model.blocks import count_convs
from dictsr_core.model.dictsr import build_hr_decoder, build_lr_encoder, to_signed
from dictsr_core.model.lowpass_base import add_base


class PlainSR(nn.Module):
    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        self.enc_lr = build_lr_encoder(cfg)
        self.bridge = nn.Conv2d(cfg.lr_width, cfg.hr_widths[-1], 1)
        self.dec_hr = build_hr_decoder(cfg)
        self.scale = 4
        self.code_patch = cfg.code_patch  # the encoder's stride: tiles start on this grid

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """[B, 3, h, w] in [0, 1] (h, w multiples of code_patch) -> [B, 3, 4h, 4w], not clamped."""
        return add_base(self.dec_hr(self.bridge(self.enc_lr(to_signed(lr)))), lr, self.cfg.base_sigma, 4)

    def conv_layers(self) -> int:
        return count_convs(self.enc_lr) + count_convs(self.dec_hr)
