"""Building a training run: the device and the process group, the run folder, the model (fresh, or resumed from
its checkpoint), the loss, the optimiser and its schedule, and the batches: everything a Trainer steps through.

The order is part of exact resume: the global RNG is seeded, consumed by the model's and the loss's
initialisation, and only then restored from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dictsr_core.config import Config, ConfigError
from dictsr_core.inference.fast import cpu_bf16_supported
from dictsr_core.model import DictSR, PlainSR
from dictsr_core.training.batches import build_loader
from dictsr_core.training.checkpoint import CheckpointError, load_checkpoint, set_rng_state
from dictsr_core.training.devices import pick_device
from dictsr_core.training.distributed import init_distributed
from dictsr_core.training.losses import PAIRED_TERMS, TERMS
from dictsr_core.training.run_folder import checkpoint_file, metrics_file, open_run_folder, write_run_config
from dictsr_core.training.step import build_criterion, build_perceptual
from dictsr_core.training.weight_average import WeightAverage, average_specs

# fields that may differ between a checkpoint's config and the one a resumed run asks for
RESUMABLE_CHANGES = {"train.epochs", "train.log_every", "train.checkpoint_every", "train.num_workers", "train.compile"}
# the schedule's length, which may also change on a resume from a step no schedule event of either config has
# reached (schedule_length_free): every step so far is then the same under both, so the resumed run is the run its
# new config trains from scratch. The equal-budget sizing re-sizes a peer so, from its own measured step rate
# (workbook/budget.calibrate, docs/evaluation.md rule 11)
RESIZABLE = {"train.epochs", "train.steps_per_epoch", "train.halve_every", "train.perceptual_from"}


@dataclass
class TrainingRun:
    """What one train() call works with; fixed once built (the Trainer keeps the loop's own state)."""

    cfg: Config
    device: torch.device
    rank: int
    world: int
    owns_group: bool  # this call made the DDP process group, so it ends it
    out_dir: Path
    model: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: DataLoader
    log_terms: tuple[str, ...]
    start_step: int
    end_step: int  # this call stops there (stop_after), at most the schedule's total_steps
    resumed: bool
    prior_wall: float  # seconds trained before this call, from the checkpoint
    memory_format: torch.memory_format
    native_bf16: bool  # bf16 autocast is native here (CUDA, or a CPU with AVX512-BF16/AMX for amp "perceptual")
    average: WeightAverage | None = None  # train.ema_decay or train.ema_sigma_rel > 0
    tracked: dict[str, WeightAverage] = field(default_factory=dict)  # train.ema_track_sigma_rel / _decay, by label

    @property
    def averages(self) -> list[WeightAverage]:
        """Every average the run updates: its own, then the tracked ones."""
        return ([self.average] if self.average is not None else []) + list(self.tracked.values())

    @property
    def is_dictsr(self) -> bool:
        return self.cfg.method == "dictsr"

    @property
    def ckpt_path(self) -> Path:
        return checkpoint_file(self.out_dir)

    @property
    def metrics_path(self) -> Path:
        return metrics_file(self.out_dir)


def build_run(cfg: Config, data_dir, out_dir, *, resume: bool = False, device: str | None = None,
              stop_after: int | None = None) -> TrainingRun:
    """The run of one train() call: see train() for the arguments."""
    cfg = cfg.validated()
    dev = pick_device(device)
    rank, world, owns_group = init_distributed(dev)
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    open_run_folder(out_dir, resume, rank)
    torch.manual_seed(cfg.train.seed + rank)
    model = DictSR(cfg.model) if cfg.method == "dictsr" else PlainSR(cfg.model)
    payload = load_resume(model, cfg, checkpoint_file(out_dir), resume, rank)
    start_step = int(payload["step"]) if payload is not None else 0
    if rank == 0:
        write_run_config(out_dir, cfg, resumed_at=start_step if payload is not None else None)
    use_cuda = dev.type == "cuda"
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=memory_format)
    criterion = build_criterion(cfg, build_perceptual(cfg, dev))
    optimizer, scheduler = build_optimiser(model, cfg, use_cuda)
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scheduler.step_size = cfg.train.halve_every * cfg.train.steps_per_epoch  # a re-sized schedule's (RESIZABLE)
        set_rng_state(payload["rng"], dev)
    average, tracked = build_averages(model, cfg, payload, checkpoint_file(out_dir))
    total = cfg.train.total_steps
    end_step = total if stop_after is None else min(total, start_step + stop_after)
    return TrainingRun(
        cfg=cfg, device=dev, rank=rank, world=world, owns_group=owns_group, out_dir=out_dir, model=model,
        criterion=criterion, optimizer=optimizer, scheduler=scheduler,
        loader=build_loader(cfg, data_dir, start_step, end_step, rank, world, pin_memory=use_cuda),
        log_terms=TERMS if cfg.method == "dictsr" else PAIRED_TERMS, start_step=start_step, end_step=end_step,
        resumed=payload is not None, prior_wall=float(payload.get("train_wall_s", 0.0)) if payload else 0.0,
        memory_format=memory_format, native_bf16=use_cuda or (cfg.train.amp == "perceptual" and cpu_bf16_supported()),
        average=average, tracked=tracked,
    )


def build_averages(model: torch.nn.Module, cfg: Config, payload: dict | None,
                   ckpt_path: Path) -> tuple[WeightAverage | None, dict[str, WeightAverage]]:
    """The run's weight average (train.ema_decay or ema_sigma_rel > 0) and the averages it tracks beside it
    (ema_track_sigma_rel and ema_track_decay, by label), resumed from the checkpoint's `model_ema` and `model_averages`."""
    own, others = average_specs(cfg.train)
    average = WeightAverage(model, **own) if own is not None else None
    tracked = {a.label: a for a in (WeightAverage(model, **spec) for spec in others)}
    payload = payload or {}
    saved = [("model_ema", average, payload.get("model_ema"))] if average is not None else []
    saved += [(f"model_averages[{label!r}]", each, payload.get("model_averages", {}).get(label))
              for label, each in tracked.items()]
    for where, each, state in saved:
        if state is None:
            continue
        try:
            each.load_state_dict(state, model)
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{ckpt_path}: {where} does not match the model: {error}") from None
    return average, tracked


def load_resume(model: torch.nn.Module, cfg: Config, ckpt_path: Path, resume: bool, rank: int) -> dict | None:
    """With --resume and a checkpoint: its payload, its weights loaded into `model`, once it is known to be trained
    with the same method and config (up to RESUMABLE_CHANGES and a re-sized schedule: resume_conflicts). None for a
    fresh start."""
    if not (resume and ckpt_path.exists()):
        if resume and rank == 0:
            print(f"[train] --resume: no checkpoint at {ckpt_path}, starting from scratch")
        return None
    payload = load_checkpoint(ckpt_path)
    if payload["config"].method != cfg.method:
        raise ConfigError(f"--resume: {ckpt_path} was trained with --method {payload['config'].method}, not "
                          f"--method {cfg.method}; resume it with --method {payload['config'].method} or choose another --out")
    changed = resume_conflicts(payload["config"], cfg, int(payload["step"]))
    if changed:
        raise ConfigError(f"--resume: {ckpt_path} was trained with a different config ({', '.join(changed)} differ)")
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{ckpt_path}: weights do not match its config: {str(error).splitlines()[0]}") from None
    return payload


def schedule_length_free(t_cfg) -> int:
    """The steps this schedule trains the same whatever its length: up to its first learning-rate halving, its
    first perceptual step (when an L1 phase comes first) and the start of its weight averages (when it keeps any);
    data item i is a function of (seed, i) alone (training/batches.py)."""
    events = [t_cfg.halve_every * t_cfg.steps_per_epoch]
    if t_cfg.perceptual_weight > 0 and t_cfg.perceptual_start > 0:
        events.append(t_cfg.perceptual_start)
    if t_cfg.averaged and t_cfg.ema_start > 0:
        events.append(t_cfg.ema_start)
    return min(events)


def resume_conflicts(old: Config, new: Config, step: int) -> list[str]:
    """The fields of `new` that keep a checkpoint of `old` at `step` from resuming: any but RESUMABLE_CHANGES, and the
    schedule's length (RESIZABLE) unless `step` is within schedule_length_free of both."""
    changed = [k for k in _config_changes(old, new) if k not in RESUMABLE_CHANGES]
    return [] if changed and _length_only(changed, old, new, step) else changed


def _length_only(changed: list[str], old: Config, new: Config, step: int) -> bool:
    return (set(changed) <= RESIZABLE and old.train.perceptual_throughout == new.train.perceptual_throughout
            and step <= min(schedule_length_free(old.train), schedule_length_free(new.train)))


def resized_only(old: Config, new: Config, step: int) -> bool:
    """Whether `new` differs from `old` in the schedule's length alone, and a checkpoint of `old` at `step` resumes
    into it (the workbook then resumes the run folder rather than training it again)."""
    changed = _config_changes(old, new)
    return bool(changed) and _length_only(changed, old, new, step)


def _config_changes(old: Config, new: Config) -> list[str]:
    a, b = old.to_dict(), new.to_dict()
    return [f"{s}.{k}" for s in ("model", "train") for k in a[s] if a[s][k] != b[s].get(k)]


def param_groups(model: DictSR, t_cfg) -> list[dict]:
    """Dictionary entries in their own group: with Adam an entry moves at most ~lr per step, so the
    coupled D_hr can lag behind the HR embeddings it follows; `dictionary_lr_scale` speeds it up."""
    entries = [p for name, p in model.dictionaries.named_parameters() if name in ("d_hr", "d_lr", "d_deg")]
    ids = {id(p) for p in entries}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": entries, "lr": t_cfg.lr * t_cfg.dictionary_lr_scale}]


def build_optimiser(model: torch.nn.Module, cfg: Config, use_cuda: bool):
    """Adam (dictionary entries in their own group for DictSR) and the halving schedule."""
    t = cfg.train
    groups = param_groups(model, t) if cfg.method == "dictsr" else model.parameters()
    optimizer = torch.optim.Adam(groups, lr=t.lr, betas=tuple(t.adam_betas), fused=use_cuda)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.halve_every * t.steps_per_epoch, gamma=0.5)
    return optimizer, scheduler
