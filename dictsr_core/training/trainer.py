"""The trainer: Adam, halving schedule, bf16 autocast on CUDA, atomic checkpoints, exact resume, DDP.

Data order is a pure function of (seed, step): step s of rank r uses dataset indices
((s * world + r) * batch + i), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader

from dictsr_core.atomic import atomic_write_text, ensure_writable_dir
from dictsr_core.config import Config, ConfigError
from dictsr_core.data.noise_bank import inject
from dictsr_core.inference.fast import cpu_bf16_supported
from dictsr_core.model import DictSR, PlainSR
from dictsr_core.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dictsr_core.training.losses import PAIRED_TERMS, TERMS, DictSRLoss, PairedLoss

# fields that may differ between a checkpoint's config and the one a resumed run asks for
RESUMABLE_CHANGES = {"train.epochs", "train.log_every", "train.checkpoint_every", "train.num_workers", "train.compile"}


class NonFiniteLossError(RuntimeError):
    pass


class StepBatches(torch.utils.data.Sampler):
    """Dataset indices of each step of this rank, from start_step up to end_step."""

    def __init__(self, start_step: int, end_step: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start_step, self.end_step, self.batch_size, self.rank, self.world = start_step, end_step, batch_size, rank, world

    def __iter__(self):
        for step in range(self.start_step, self.end_step):
            first = (step * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))

    def __len__(self):
        return max(0, self.end_step - self.start_step)


def available_devices() -> list[str]:
    """The devices this machine has: cpu, then cuda:i (and mps / xpu:i where present)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += [f"xpu:{i}" for i in range(xpu.device_count())]
    return names


def check_device(device) -> torch.device:
    """torch.device(device) when this machine has it; a ConfigError naming it and what is available otherwise."""
    available = available_devices()

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"device {str(device)!r}: {why}; available: {', '.join(available)}")

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise refuse("not a device name") from None
    if dev.type == "cpu":
        return dev
    kinds = {name.split(":")[0] for name in available}
    if dev.type not in kinds:
        raise refuse(f"this machine has no {dev.type} device")
    if dev.index is not None and f"{dev.type}:{dev.index}" not in available:
        raise refuse(f"this machine has no {dev.type} device {dev.index}")
    return dev


def pick_device(device: str | None = None) -> torch.device:
    """--device (checked: a ConfigError naming it and the available devices), or CUDA when available, else the CPU."""
    if device:
        return check_device(device)
    if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _config_changes(old: Config, new: Config) -> list[str]:
    a, b = old.to_dict(), new.to_dict()
    return [f"{s}.{k}" for s in ("model", "train") for k in a[s] if a[s][k] != b[s].get(k)]


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint being resumed from, and any line that is not
    a whole JSON record (the torn tail of a write cut short by a full disk or a power loss), saying so."""
    if not path.exists():
        return
    kept, torn = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            torn += 1
            continue
        if not isinstance(record, dict):
            torn += 1
        elif record.get("step", 0) <= step:
            kept.append(line)
    if torn:
        print(f"[train] --resume: dropped {torn} torn line(s) of {path} (a write cut short); "
              f"kept the {len(kept)} whole record(s) up to step {step}")
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def baseline_degradation(method: str, data_dir: Path):
    """How a paired baseline makes the LR of each HR crop: bicubic, or the data's own synthetic degradation."""
    from dictsr_core.data.degradations import data_degradation, make_degradation

    if method == "paired-bicubic":
        return make_degradation("aim", noise_sigma=0.0, jpeg_quality=None)  # bicubic x1/4 to 8 bits, nothing else
    degradation = data_degradation(data_dir)
    if degradation is None:
        raise ConfigError(f"method oracle needs the synthetic degradation recorded in {data_dir / 'manifest.json'}; "
                          "real LR data has no true pairs to train an oracle on")
    return degradation


def param_groups(model: DictSR, t_cfg) -> list[dict]:
    """Dictionary entries in their own group: with Adam an entry moves at most ~lr per step, so the
    coupled D_hr can lag behind the HR embeddings it follows; `dictionary_lr_scale` speeds it up."""
    entries = [p for name, p in model.dictionaries.named_parameters() if name in ("d_hr", "d_lr", "d_deg")]
    ids = {id(p) for p in entries}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": entries, "lr": t_cfg.lr * t_cfg.dictionary_lr_scale}]


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
    return t_cfg.perceptual_weight if step >= round(t_cfg.perceptual_from * t_cfg.total_steps) else 0.0


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


def downscale_hr(hr: torch.Tensor) -> torch.Tensor:
    """I_hr_down: MATLAB bicubic x1/4 on the device, clamped and rounded as an 8-bit file would be."""
    from dictsr_core.data.resize import imresize_torch

    return (imresize_torch(hr, 0.25).clamp_(0, 1) * 255).round_().div_(255)


# temp files of atomic writes into a run folder (".<name>.<random>.tmp"): what a killed process leaves behind
RUN_TEMP_PATTERNS = {"checkpoints": (".last.pt.*.tmp",),
                     ".": (".config.yaml.*.tmp", ".metrics.jsonl.*.tmp", ".dictsr-write-probe.*.tmp")}


def _remove_stale_temp_files(out_dir: Path) -> None:
    """Remove the temp files an earlier process was killed before renaming (a SIGKILL mid-save); say so."""
    removed = []
    for sub, patterns in RUN_TEMP_PATTERNS.items():
        for pattern in patterns:
            for path in sorted((out_dir / sub).glob(pattern)):
                if path.is_file() and not path.is_symlink():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    if removed:
        print(f"[train] removed {len(removed)} temp file(s) of an interrupted write: " + ", ".join(map(str, removed)))


def _remove_failed_start(out_dir: Path, made: list[Path], had_config: bool) -> None:
    """After a train that failed before its first checkpoint and first log line: remove what it wrote
    (config.yaml, an empty checkpoints/) and the folders it made, so no run folder holding only config.yaml stays."""
    if (out_dir / "checkpoints" / "last.pt").exists() or (out_dir / "metrics.jsonl").exists():
        return
    if not had_config:
        (out_dir / "config.yaml").unlink(missing_ok=True)
    for folder in [out_dir / "checkpoints", *made]:  # made: deepest first
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def train(
    cfg: Config,
    data_dir,
    out_dir,
    *,
    resume: bool = False,
    device: str | None = None,
    stop_after: int | None = None,
    max_wall_s: float | None = None,
    progress: bool = True,
    on_log=None,
) -> dict:
    """Train (or resume) into out_dir; returns a summary dict.

    `stop_after` ends this call after that many steps, `max_wall_s` after that many seconds of this call
    (checked on the host every step; under DDP at log steps, where every rank agrees on it); either way the
    stop is checkpointed and can be resumed. A call that fails before its first checkpoint and log line
    (bad data, say) leaves no run folder behind."""
    out_dir = Path(out_dir)
    made = [folder for folder in [out_dir, *out_dir.parents] if not folder.exists()]
    had_config = (out_dir / "config.yaml").exists()
    try:
        return _train(cfg, data_dir, out_dir, resume=resume, device=device, stop_after=stop_after,
                      max_wall_s=max_wall_s, progress=progress, on_log=on_log)
    except BaseException:
        if os.environ.get("RANK", "0") == "0":
            _remove_failed_start(out_dir, made, had_config)
        raise


def _train(cfg: Config, data_dir, out_dir, *, resume, device, stop_after, max_wall_s, progress, on_log) -> dict:
    from dictsr_core.data.datasets import DegradedPairs, UnpairedPatches

    cfg = cfg.validated()
    dev = pick_device(device)
    owns_group = not dist.is_initialized()
    rank, world = _distributed(dev)
    owns_group = owns_group and dist.is_initialized()  # torchrun: this call made the process group
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    metrics_path = out_dir / "metrics.jsonl"
    t_cfg = cfg.train
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
    if rank == 0:
        ensure_writable_dir(out_dir, "--out")  # a read-only --out is a named error before any work
        _remove_stale_temp_files(out_dir)

    torch.manual_seed(t_cfg.seed + rank)
    is_dictsr = cfg.method == "dictsr"
    model = DictSR(cfg.model) if is_dictsr else PlainSR(cfg.model)
    start_step = 0
    payload = None
    if resume and ckpt_path.exists():
        payload = load_checkpoint(ckpt_path)
        if payload["config"].method != cfg.method:
            raise ConfigError(f"--resume: {ckpt_path} was trained with --method {payload['config'].method}, not "
                              f"--method {cfg.method}; resume it with --method {payload['config'].method} or choose another --out")
        changed = [k for k in _config_changes(payload["config"], cfg) if k not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(f"--resume: {ckpt_path} was trained with a different config ({', '.join(changed)} differ)")
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{ckpt_path}: weights do not match its config: {str(error).splitlines()[0]}") from None
        start_step = int(payload["step"])
    elif resume and rank == 0:
        print(f"[train] --resume: no checkpoint at {ckpt_path}, starting from scratch")

    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if payload is not None:
            _truncate_metrics(metrics_path, start_step)

    use_cuda = dev.type == "cuda"
    native_bf16 = use_cuda or (t_cfg.amp == "perceptual" and cpu_bf16_supported())
    memory_format = torch.channels_last if (use_cuda and t_cfg.channels_last) else torch.contiguous_format
    model = model.to(dev, memory_format=memory_format)
    dicts = model.dictionaries if is_dictsr else None
    criterion = build_criterion(cfg, build_perceptual(cfg, dev))
    log_terms, groups = (TERMS, param_groups(model, t_cfg)) if is_dictsr else (PAIRED_TERMS, model.parameters())
    optimizer = torch.optim.Adam(groups, lr=t_cfg.lr, betas=tuple(t_cfg.adam_betas), fused=use_cuda)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=t_cfg.halve_every * t_cfg.steps_per_epoch, gamma=0.5)
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        _set_rng_state(payload["rng"], dev)

    total = t_cfg.total_steps
    end_step = total if stop_after is None else min(total, start_step + stop_after)
    length = total * t_cfg.batch_size * world
    if is_dictsr:
        dataset = UnpairedPatches(data_dir / "train_hr", data_dir / "train_lr", hr_patch=t_cfg.hr_crop,
                                  lr_patch=t_cfg.lr_crop, seed=t_cfg.seed, length=length)
        if t_cfg.consistency_weight > 0:
            dataset.noise_patches = noise_bank(dataset, t_cfg, rank)
    else:
        dataset = DegradedPairs(data_dir / "train_hr", baseline_degradation(cfg.method, data_dir),
                                hr_patch=t_cfg.hr_crop, seed=t_cfg.seed, length=length)
    loader = DataLoader(
        dataset,
        batch_sampler=StepBatches(start_step, end_step, t_cfg.batch_size, rank, world),
        num_workers=t_cfg.num_workers,
        pin_memory=use_cuda,
        persistent_workers=False,
        prefetch_factor=4 if t_cfg.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(t_cfg.seed),  # keeps the global RNG (restarts) resumable
    )

    def to_device(batch):
        hr = batch["hr"].to(dev, non_blocking=True).float().div_(255).contiguous(memory_format=memory_format)
        lr = batch["lr"].to(dev, non_blocking=True).float().div_(255).contiguous(memory_format=memory_format)
        hr_down = downscale_hr(hr).contiguous(memory_format=memory_format) if is_dictsr else None
        injected = inject(hr_down, batch["noise"].to(dev, non_blocking=True)) if "noise" in batch else None
        return hr, hr_down, lr, injected

    forward, first_compiled_step = None, False
    step = start_step

    def forward_backward(fn, hr, hr_down, lr, injected):
        bf16 = bf16_autocast(t_cfg.amp, criterion.perceptual_weight, use_cuda, native_bf16)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            terms = fn(hr, hr_down, lr, injected)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        return terms

    state = {"bad": torch.zeros((), dtype=torch.bool, device=dev), "last_good": start_step if payload else None}
    wall0 = time.time()
    prior_wall = float(payload.get("train_wall_s", 0.0)) if payload else 0.0

    def checkpoint(at_step: int) -> None:
        _check_finite(at_step)
        if rank == 0:
            save_checkpoint(
                ckpt_path, model_state=model.state_dict(), config=cfg, step=at_step,
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=_rng_state(dev),
                train_wall_s=prior_wall + time.time() - wall0, device=str(dev),
            )
        state["last_good"] = at_step

    def _check_finite(at_step: int) -> None:
        if bool(state["bad"]):
            where = f"{ckpt_path} (step {state['last_good']})" if state["last_good"] is not None else "none was written"
            raise NonFiniteLossError(
                f"non-finite loss at or before step {at_step}: training stopped. Last good checkpoint: {where}. "
                "Lower train.lr or check the data."
            )

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start_step, desc=f"train {cfg.method} {cfg.preset}" + (f"/{cfg.ablation}" if cfg.ablation else ""), dynamic_ncols=True)
    log_sums = None
    log_count = 0
    t_log = time.time()
    summary = {}
    initialized = bool(dicts.initialized) if is_dictsr else True  # read once: a per-step read syncs with the GPU

    def wall_check(at_step: int) -> bool:
        """max_wall_s reached? One process reads the host clock every step. Under DDP every rank must stop
        at the same step, which takes a collective (a host sync): it runs at log steps only."""
        if max_wall_s is None or at_step >= end_step:
            return False
        out_of_time = time.time() - wall0 >= max_wall_s
        if world == 1:
            return out_of_time
        if at_step % t_cfg.log_every:
            return False
        flag = torch.tensor(float(out_of_time), device=dev)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag)
    try:
        for batch in loader:
            hr, hr_down, lr, injected = to_device(batch)
            if not initialized:
                z_lr, z_hr = model.coupled_embeddings(hr, hr_down)
                dicts.initialize(z_lr, z_hr)
                initialized = True
            if forward is None:  # after the dictionaries exist: DDP broadcasts rank 0's initialisation
                wrapped = model
                if world > 1:
                    wrapped = torch.nn.parallel.DistributedDataParallel(
                        model, device_ids=[dev.index] if use_cuda else None, broadcast_buffers=False
                    )
                objective = training_objective(wrapped, criterion)
                forward = _compiled(objective) if t_cfg.compile else objective
                first_compiled_step = forward is not objective
            criterion.perceptual_weight = perceptual_weight_at(t_cfg, step)
            try:
                terms = forward_backward(forward, hr, hr_down, lr, injected)
            except Exception as error:  # noqa: BLE001 - compiling (forward or backward graph) happens in the first step
                if not first_compiled_step:
                    raise
                print(f"[train] torch.compile failed ({type(error).__name__}: {error}); running eager")
                forward = objective
                terms = forward_backward(forward, hr, hr_down, lr, injected)  # no optimizer step was taken: a clean retry
            first_compiled_step = False
            if t_cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t_cfg.grad_clip, foreach=True)
            optimizer.step()
            scheduler.step()
            if is_dictsr:
                dicts.tick()
            step += 1
            vec = torch.stack([terms[k].detach().float() for k in log_terms])
            state["bad"] |= ~torch.isfinite(vec).all()
            log_sums = vec if log_sums is None else log_sums + vec
            log_count += 1
            if not use_cuda:  # free on the CPU; on CUDA checked at log/checkpoint steps (no per-step sync)
                _check_finite(step)
            if is_dictsr and t_cfg.restart_every and step % t_cfg.restart_every == 0:
                _restart(model, hr, hr_down, t_cfg, world)
            out_of_time = wall_check(step)
            last = step == end_step or out_of_time
            if step % t_cfg.log_every == 0 or last:
                _check_finite(step)
                now = time.time()
                record = {"step": step, "lr": scheduler.get_last_lr()[0]}
                record.update({k: float(v) for k, v in zip(log_terms, (log_sums / log_count).tolist())})
                if is_dictsr:
                    record["activated"] = int(dicts.activated(t_cfg.usage_window))
                    record["activated_deg"] = int(dicts.activated_offsets(t_cfg.usage_window))
                record["it_s"] = log_count / max(now - t_log, 1e-9)
                record["wall_s"] = prior_wall + now - wall0
                log_sums, log_count, t_log = None, 0, now
                summary = record
                if rank == 0:
                    with open(metrics_path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['total']:.4f}", l1=f"{record['l1_hr']:.4f}", act=record.get("activated", "-"),
                                        lr=f"{record['lr']:.1e}")
                    if on_log is not None:
                        on_log(record)
            if step % t_cfg.checkpoint_every == 0 or last:
                checkpoint(step)
            if bar is not None:
                bar.update(1)
            if out_of_time:
                if rank == 0:
                    print(f"[train] max_wall_s={max_wall_s:g} reached at step {step} of {total}; checkpointed, resumable")
                break
    except KeyboardInterrupt:
        if rank == 0:
            print(f"\n[train] interrupted at step {step}; saving a checkpoint")
        checkpoint(step)
        raise
    finally:
        if bar is not None:
            bar.close()
    if dist.is_initialized():
        dist.barrier()
        if owns_group:  # left alive, its threads can abort the process at exit ("terminate called ...")
            dist.destroy_process_group()
    summary.update(step=step, total_steps=total, stopped_early=step < end_step, checkpoint=str(ckpt_path), device=str(dev), world_size=world, rank=rank,
                   train_wall_s=prior_wall + time.time() - wall0)
    return summary


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


def noise_bank(dataset, t_cfg, rank: int = 0):
    """Noise patches of the HR-down size from the flattest windows of the LR training images (index consistency)."""
    from dictsr_core.data.noise_bank import extract_noise_patches

    patches = extract_noise_patches(dataset.lr_images, t_cfg.hr_crop // 4)
    if rank == 0:
        spread = float(patches.reshape(len(patches), -1).std(1).mean())
        print(f"[train] index consistency: {len(patches)} noise patches from flat windows of "
              f"{len(dataset.lr_images)} LR training images (mean std {spread:.1f} grey levels)", flush=True)
    return patches


def _restart(model: DictSR, hr, hr_down, t_cfg, world: int) -> int:
    """Restart dead entries from this batch's coupled embeddings; with DDP rank 0 decides and broadcasts."""
    dicts = model.dictionaries
    if world > 1:
        dist.all_reduce(dicts.last_used, op=dist.ReduceOp.MAX)
        if dicts.last_used_deg is not None:
            dist.all_reduce(dicts.last_used_deg, op=dist.ReduceOp.MAX)
    count = 0
    if world == 1 or dist.get_rank() == 0:
        z_lr, z_hr = model.coupled_embeddings(hr, hr_down)
        count = dicts.restart_dead(z_lr, z_hr, window=t_cfg.usage_window, min_age=t_cfg.restart_every)
    if world > 1:
        for tensor in (dicts.d_lr, dicts.d_hr, dicts.d_deg, dicts.last_used, dicts.last_used_deg, dicts.born):
            if tensor is not None:
                dist.broadcast(tensor.data, src=0)
    return count


def _compiled(module):
    """torch.compile(module), or module itself where torch.compile is unavailable. Compiling happens in
    the first step (forward graph, then backward graph): a failure there falls back to eager (see train)."""
    try:
        return torch.compile(module)
    except Exception as error:  # noqa: BLE001 - compile is an optimisation; eager always works
        print(f"[train] torch.compile unavailable ({type(error).__name__}: {error}); running eager")
        return module
