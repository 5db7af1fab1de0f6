"""Cost of the inference path: conv layers, MACs (torch.utils.flop_counter) and parameters."""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from dictsr_core.config import Config
from dictsr_core.model import DictSR, DictSRInference, PlainSR
from dictsr_core.model.blocks import Upsample


def count_macs(module: torch.nn.Module, *inputs) -> int:
    """Multiply-accumulates of one forward pass (flop_counter counts 2 FLOPs per MAC)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() // 2


@contextlib.contextmanager
def as_written(module: torch.nn.Module):
    """Inside: the network runs as the paper writes it, the way it counts MACs: every Upsample as nearest x2
    then conv3x3, and DictSR's hr_out + first decoder conv unfolded (no CodeStem)."""
    ups = [m for m in module.modules() if isinstance(m, Upsample)]
    stems = [m for m in module.modules() if isinstance(m, DictSRInference)]
    before, stems_before = [m.folded for m in ups], [m.stem for m in stems]
    for m in ups:
        m.folded = False
    for m in stems:
        m.stem = None
    try:
        yield module
    finally:
        for m, flag in zip(ups, before):
            m.folded = flag
        for m, stem in zip(stems, stems_before):
            m.stem = stem


def model_cost(cfg: Config, lr_size: int = 128) -> dict:
    with torch.device("meta"):  # shapes only: counting needs no real weights or compute
        model = DictSR(cfg.model) if cfg.method == "dictsr" else PlainSR(cfg.model)
        x = torch.empty(1, 3, lr_size, lr_size)
    inference = (model.inference().folded() if cfg.method == "dictsr" else model).eval()
    return {
        "preset": cfg.preset,
        "ablation": cfg.ablation,
        "method": cfg.method,
        "params": sum(p.numel() for p in model.parameters()),
        "inference_params": sum(p.numel() for p in inference.parameters()),
        "inference_conv_layers": inference.conv_layers(),
        f"gmacs_{lr_size}": round(_literal_macs(inference, x) / 1e9, 3),
        f"gmacs_{lr_size}_executed": round(count_macs(inference, x) / 1e9, 3),  # upsampling convs, code stem folded
    }


@functools.cache
def _lpips_vgg_structure() -> torch.nn.Module:
    """LPIPS-VGG's layers on the meta device: the shapes of the perceptual term, no weights needed."""
    import lpips

    with warnings.catch_warnings():  # torchvision's notes about lpips' `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="vgg", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    return net.eval().requires_grad_(False).to("meta")  # built on the CPU: lpips makes CPU buffers


def train_step_cost(cfg: Config) -> dict:
    """TFLOP of one training step (forward and backward of the network and its loss, at cfg's batch and
    crops), counted on meta tensors: no weights, no compute. The LPIPS-VGG term's share is reported apart."""
    from dictsr_core.training.step import build_criterion, training_objective

    t = cfg.train
    with torch.device("meta"):
        model = DictSR(cfg.model) if cfg.method == "dictsr" else PlainSR(cfg.model)
        hr = torch.empty(t.batch_size, 3, t.hr_crop, t.hr_crop)
        hr_down = torch.empty(t.batch_size, 3, t.hr_crop // 4, t.hr_crop // 4)
        lr = torch.empty(t.batch_size, 3, t.lr_crop, t.lr_crop) if cfg.method == "dictsr" else hr_down

    def step_flops(config: Config) -> int:
        perceptual = _lpips_vgg_structure() if config.train.perceptual_weight > 0 else None
        with FlopCounterMode(display=False) as counter:
            training_objective(model, build_criterion(config, perceptual))(hr, hr_down, lr)["total"].backward()
        model.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    total = step_flops(cfg)
    without = step_flops(replace(cfg, train=replace(t, perceptual_weight=0.0))) if t.perceptual_weight > 0 else total
    return {"train_step_tflop": round(total / 1e12, 3), "train_step_perceptual_tflop": round((total - without) / 1e12, 3),
            "train_step_gflop": round(total / 1e9, 3)}


def _literal_macs(module, x) -> int:
    with as_written(module):
        return count_macs(module, x)


def cost_table(presets=None, lr_size: int = 128) -> list[dict]:
    """model_cost of every preset x (no ablation + every ablation that applies to it), then RRDBNet x4 for reference."""
    from dictsr_core.config import PRESETS, ablations_for, get_config

    rows = [model_cost(get_config(preset, ablation), lr_size)
            for preset in (presets or PRESETS) for ablation in (None, *ablations_for(preset))]
    rows.append({"preset": "RRDBNet x4 (Real-ESRGAN)", "ablation": None, "method": "reference",
                 "inference_params": None, **rrdbnet_cost(lr_size)})
    return rows


def rrdbnet_cost(lr_size: int = 128) -> dict:
    """params, conv layers and GMACs of RRDBNet x4 (Real-ESRGAN's and RealSR's network) at lr_size x lr_size LR."""
    from dictsr_core.performance.rrdbnet import build_rrdbnet

    with torch.device("meta"):
        rrdb, x = build_rrdbnet(), torch.empty(1, 3, lr_size, lr_size)
    macs = round(count_macs(rrdb, x) / 1e9, 3)
    return {"params": sum(p.numel() for p in rrdb.parameters()),
            "inference_conv_layers": sum(1 for m in rrdb.modules() if isinstance(m, torch.nn.Conv2d)),
            f"gmacs_{lr_size}": macs, f"gmacs_{lr_size}_executed": macs}
