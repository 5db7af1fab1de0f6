"""Every ablation id (and the remedies among them) trains: one forward and backward pass of the tiny preset with
it, a finite loss, and gradient reaching the modules that change the SR (the networks a step would update)."""

import pytest
import torch

from dictsr_core.config import ABLATIONS, ConfigError, get_config
from dictsr_core.model import DictSR
from dictsr_core.training.losses import DictSRLoss
from dictsr_core.training.step import downscale_hr

pytestmark = pytest.mark.slow  # about 35 s on 2 cores for the 32 ids


@pytest.mark.parametrize("ablation", [None, *ABLATIONS])
def test_one_training_step_of_every_ablation_is_finite_and_reaches_the_networks(ablation):
    try:
        cfg = get_config("tiny", ablation, {"train.consistency_weight": 1.0})
    except ConfigError as error:
        pytest.skip(f"{ablation} does not apply to the tiny preset: {error}")
    torch.manual_seed(0)
    model = DictSR(cfg.model).train()
    side = 4 * cfg.train.lr_crop
    hr = torch.rand(2, 3, side, side)
    hr_down = downscale_hr(hr)
    lr = torch.rand(2, 3, cfg.train.lr_crop, cfg.train.lr_crop)
    model.dictionaries.initialize(*model.coupled_embeddings(hr, hr_down))
    injected = (hr_down + 0.05 * torch.randn_like(hr_down)).clamp(0, 1)
    criterion = DictSRLoss(None, 0.0, cfg.train.dis_weight, cfg.train.consistency_weight)
    terms = criterion(model(hr, hr_down, lr, injected), hr, hr_down, lr)
    assert torch.isfinite(terms["total"]), ablation
    terms["total"].backward()
    for name in ("enc_lr", "dec_hr", "enc_hr", "dec_lr"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), (ablation, name)
        assert any(g.abs().sum() > 0 for g in grads), (ablation, name)
