"""The training objective: L = L_rec + lambda * (L_dis1 + L_dis2 + L_dis3).

L_rec = |I^_hr - I_hr|_1 + w_p * LPIPS-VGG(I^_hr, I_hr) + |I^_hr_down - I_hr_down|_1 + |I^_lr - I_lr|_1
Not in the paper, off by default: + w_c * ||z(HR-down + real LR noise) - sg[D_lr(j_clean)]||^2 (index consistency).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dictsr_core.model.dictsr import BranchOutputs

TERMS = ("total", "rec", "l1_hr", "perceptual", "l1_hr_down", "l1_lr", "dis_hr", "dis_hr_down", "dis_lr", "consistency")


def perceptual_term(perceptual: nn.Module | None, weight: float, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean LPIPS between images in [0, 1] (LPIPS takes [-1, 1]); zero (not computed) when the weight is 0."""
    if weight <= 0:
        return target.new_zeros(())
    return perceptual(pred * 2 - 1, target * 2 - 1).float().mean()


class DictSRLoss(nn.Module):
    """Returns every term (detached copies are cheap to log) and the total to backpropagate."""

    def __init__(self, perceptual: nn.Module | None = None, perceptual_weight: float = 1.0, dis_weight: float = 10.0,
                 consistency_weight: float = 0.0):
        super().__init__()
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError("perceptual_weight > 0 needs a perceptual network (LPIPS-VGG); pass one or set it to 0")
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight
        self.dis_weight = dis_weight
        self.consistency_weight = consistency_weight

    def forward(self, out: BranchOutputs, hr: torch.Tensor, hr_down: torch.Tensor, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {
            "l1_hr": F.l1_loss(out.hr.float(), hr),
            "l1_hr_down": F.l1_loss(out.hr_down.float(), hr_down),
            "l1_lr": F.l1_loss(out.lr.float(), lr),
        }
        terms["perceptual"] = perceptual_term(self.perceptual, self.perceptual_weight, out.hr, hr)
        b1, b2, b3 = out.lookups
        terms.update(dis_hr=b1.loss, dis_hr_down=b2.loss, dis_lr=b3.loss)
        terms["rec"] = terms["l1_hr"] + self.perceptual_weight * terms["perceptual"] + terms["l1_hr_down"] + terms["l1_lr"]
        terms["total"] = terms["rec"] + self.dis_weight * (b1.loss + b2.loss + b3.loss)
        terms["consistency"] = out.consistency if out.consistency is not None else hr.new_zeros(())
        if out.consistency is not None:
            terms["total"] = terms["total"] + self.consistency_weight * out.consistency
        return terms


PAIRED_TERMS = ("total", "l1_hr", "perceptual")


class PairedLoss(nn.Module):
    """The baselines' objective: the HR branch's reconstruction terms, |SR - HR|_1 + w_p * LPIPS-VGG."""

    def __init__(self, perceptual: nn.Module | None = None, perceptual_weight: float = 1.0):
        super().__init__()
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError("perceptual_weight > 0 needs a perceptual network (LPIPS-VGG); pass one or set it to 0")
        self.perceptual, self.perceptual_weight = perceptual, perceptual_weight

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"l1_hr": F.l1_loss(sr.float(), hr)}
        terms["perceptual"] = perceptual_term(self.perceptual, self.perceptual_weight, sr, hr)
        terms["total"] = terms["l1_hr"] + self.perceptual_weight * terms["perceptual"]
        return terms
