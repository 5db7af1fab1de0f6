"""The RRDBNet x4 anchor (Real-ESRGAN's generator, built by spandrel without weights): what `dictsr bench`
times DictSR against and the reference row of the cost table."""

from __future__ import annotations

import torch


def build_rrdbnet() -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
