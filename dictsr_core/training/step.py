"""One training step's pieces: I_hr_down, a batch on the device, the objective (the network and its loss as one
function, compiled when asked), bf16 autocast and the perceptual phase, forward/backward, dead-entry restarts."""

from __future__ import annotations

import torch
import torch.distributed as dist

from dictsr_core.config import Config
from dictsr_core.data.noise_bank import inject, jpeg_batch
from dictsr_core.model import DictSR
from dictsr_core.training.distributed import broadcast_dictionaries, merge_usage
from dictsr_core.training.losses import DictSRLoss, PairedLoss


def downscale_hr(hr: torch.Tensor) -> torch.Tensor:
    """I_hr_down: MATLAB bicubic x1/4 on the device, clamped and rounded as an 8-bit file would be."""
    from dictsr_core.data.resize import imresize_torch

    return (imresize_torch(hr, 0.25).clamp_(0, 1) * 255).round_().div_(255)


def batch_to_device(batch: dict, device: torch.device, memory_format, is_dictsr: bool, jpeg_quality: int | None = None):
    """(hr, hr_down, lr, injected) of a loader batch, in [0, 1] on the device; hr_down only for DictSR, injected
    (HR-down plus real LR noise, index consistency; JPEG-compressed at `jpeg_quality` where given) only when the
    batch carries noise patches."""
    hr = batch["hr"].to(device, non_blocking=True).float().div_(255).contiguous(memory_format=memory_format)
    lr = batch["lr"].to(device, non_blocking=True).float().div_(255).contiguous(memory_format=memory_format)
    hr_down = downscale_hr(hr).contiguous(memory_format=memory_format) if is_dictsr else None
    injected = inject(hr_down, batch["noise"].to(device, non_blocking=True)) if "noise" in batch else None
    if injected is not None and jpeg_quality:
        injected = jpeg_batch(injected, jpeg_quality).contiguous(memory_format=memory_format)
    return hr, hr_down, lr, injected


def bf16_autocast(amp: str, perceptual_weight: float, use_cuda: bool, native_bf16: bool) -> bool:
    """Whether a step runs under bf16 autocast: train.amp, and for "perceptual" whether the LPIPS term is on now
    and the device has native bf16 (emulated bf16 on a CPU would be slower than fp32)."""
    if amp == "perceptual":
        return perceptual_weight > 0 and native_bf16
    return amp == "bf16" or (amp == "auto" and use_cuda)


def perceptual_weight_at(t_cfg, step: int) -> float:
    """The perceptual term's weight at `step`: 0 before `perceptual_from` (a fraction of the schedule), then
    `perceptual_weight`. A first phase of L1 + VQ lets the coupled HR branch learn colour and layout before
    LPIPS, which leaves colour free and is most of a step's FLOPs, joins in."""
    return t_cfg.perceptual_weight if step >= t_cfg.perceptual_start else 0.0


def build_perceptual(cfg: Config, device: torch.device):
    if cfg.train.perceptual_weight <= 0:
        return None
    from dictsr_core.perceptual.lpips_models import build_lpips  # raises MissingWeightsError with the `dictsr weights` hint

    return build_lpips("vgg", device=device)


def build_criterion(cfg: Config, perceptual):
    """cfg's loss: DictSRLoss for DictSR, PairedLoss for the paired baselines (perceptual: LPIPS-VGG or None)."""
    if cfg.method == "dictsr":
        return DictSRLoss(perceptual, cfg.train.perceptual_weight, cfg.train.dis_weight, cfg.train.consistency_weight)
    return PairedLoss(perceptual, cfg.train.perceptual_weight)


def training_objective(model, criterion):
    """(hr, hr_down, lr[, injected]) -> loss terms: the network and its loss as one function, so that torch.compile
    sees (and fuses) the perceptual network and the loss terms together with the model."""
    if isinstance(criterion, DictSRLoss):
        def objective(hr, hr_down, lr, injected=None):
            return criterion(model(hr, hr_down, lr, injected), hr, hr_down, lr)
    else:
        def objective(hr, hr_down, lr, injected=None):
            return criterion(model(lr), hr)
    return objective


def compiled(module):
    """torch.compile(module), or module itself where torch.compile is unavailable. Compiling happens in
    the first step (forward graph, then backward graph): a failure there falls back to eager (see Trainer)."""
    try:
        return torch.compile(module)
    except Exception as error:  # noqa: BLE001 - compile is an optimisation; eager always works
        print(f"[train] torch.compile unavailable ({type(error).__name__}: {error}); running eager")
        return module


def forward_backward(forward, optimizer, device: torch.device, bf16: bool, hr, hr_down, lr, injected) -> dict:
    """The loss terms of one batch, their gradients computed (the optimiser step is the caller's)."""
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        terms = forward(hr, hr_down, lr, injected)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    return terms


def restart_dead_entries(model: DictSR, hr, hr_down, t_cfg, world: int) -> int:
    """Restart dead entries from this batch's coupled embeddings; with DDP rank 0 decides and broadcasts."""
    dicts = model.dictionaries
    if world > 1:
        merge_usage(dicts)
    count = 0
    if world == 1 or dist.get_rank() == 0:
        z_lr, z_hr = model.coupled_embeddings(hr, hr_down)
        count = dicts.restart_dead(z_lr, z_hr, window=t_cfg.usage_window, min_age=t_cfg.restart_every)
    if world > 1:
        broadcast_dictionaries(dicts)
    return count
