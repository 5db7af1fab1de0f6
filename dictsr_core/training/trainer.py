"""The trainer: Adam, halving schedule, bf16 autocast on CUDA, atomic checkpoints, exact resume, DDP.

`train` builds the run (build.py: model, optimiser, scheduler, data, resume) and hands it to a Trainer, whose
loop reads top to bottom: each step is forward/backward (step.py), the optimiser step and the dictionaries'
upkeep, then at its steps a log line, a checkpoint (and, where a perceptual phase follows an L1 phase, the L1-only
model at its first step), and the wall-clock / DDP stop. Data order is a pure function
of (seed, step) (batches.py), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from dictsr_core.atomic import atomic_write_bytes
from dictsr_core.config import Config
from dictsr_core.training.build import TrainingRun, build_run
from dictsr_core.training.checkpoint import rng_state, save_checkpoint
from dictsr_core.training.distributed import any_rank, finish_distributed, wrap_ddp
from dictsr_core.training.run_folder import append_metrics, checkpoint_file, remove_failed_start
from dictsr_core.training.step import (batch_to_device, bf16_autocast, compiled, forward_backward, perceptual_weight_at,
                                       restart_dead_entries, training_objective)


class NonFiniteLossError(RuntimeError):
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
        run = build_run(cfg, data_dir, out_dir, resume=resume, device=device, stop_after=stop_after)
        return Trainer(run, max_wall_s=max_wall_s, progress=progress, on_log=on_log).fit()
    except BaseException:
        if os.environ.get("RANK", "0") == "0":
            remove_failed_start(out_dir, made, had_config)
        raise


class Trainer:
    """The loop over a built run. Its attributes are the loop's state: the step, the non-finite flag and the last
    good checkpoint, the loss sums since the last log line, and the forward (compiled or eager)."""

    def __init__(self, run: TrainingRun, *, max_wall_s: float | None = None, progress: bool = True, on_log=None):
        self.run, self.max_wall_s, self.on_log = run, max_wall_s, on_log
        self.step = run.start_step
        self.bad = torch.zeros((), dtype=torch.bool, device=run.device)  # a non-finite loss so far (no per-step sync)
        self.last_good = run.start_step if run.resumed else None
        self.wall0 = time.time()
        self.bar = _progress_bar(run) if progress and run.rank == 0 else None
        self.log_sums, self.log_count, self.t_log = None, 0, time.time()
        self.summary = {}
        # read once: a per-step read syncs with the GPU
        self.initialized = bool(run.model.dictionaries.initialized) if run.is_dictsr else True
        self.objective = self.forward = None
        self.first_compiled_step = False

    def fit(self) -> dict:
        """Every step of the run (or until out of time); Ctrl-C saves a checkpoint first. Returns train()'s summary."""
        try:
            for batch in self.run.loader:
                if self.train_step(batch):
                    break
        except KeyboardInterrupt:
            if self.run.rank == 0:
                print(f"\n[train] interrupted at step {self.step}; saving a checkpoint")
            self.checkpoint()
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
        finish_distributed(self.run.owns_group)
        return self.final_summary()

    def train_step(self, batch) -> bool:
        """One step and what falls on it (restart, log line, checkpoint); True when out of time (checkpointed)."""
        run, t = self.run, self.run.cfg.train
        hr, hr_down, lr, injected = batch_to_device(batch, run.device, run.memory_format, run.is_dictsr,
                                                    getattr(run.loader.dataset, "noise_jpeg_quality", None))
        self.prepare_first_step(hr, hr_down)
        terms = self.forward_backward(hr, hr_down, lr, injected)
        self.optimise()
        self.step += 1
        self.accumulate(terms)
        if run.device.type != "cuda":  # free on the CPU; on CUDA checked at log/checkpoint steps (no per-step sync)
            self.check_finite()
        if run.is_dictsr and t.restart_every and self.step % t.restart_every == 0 and (
                t.restarts_until is None or self.step <= t.restarts_until):
            restart_dead_entries(run.model, hr, hr_down, t, run.world)
        if self.step > t.ema_start:
            for average in run.averages:
                average.update(run.model, self.step - t.ema_start)
        out_of_time = self.out_of_time()
        last = self.step == run.end_step or out_of_time
        if self.step % t.log_every == 0 or last:
            self.log()
        paths = [run.ckpt_path] if self.step % t.checkpoint_every == 0 or last else []
        if self.step == t.l1_phase_end:
            paths.append(checkpoint_file(run.out_dir, "before-perceptual"))  # the L1-only model
        if paths:
            self.checkpoint(*paths)
        if self.bar is not None:
            self.bar.update(1)
        if out_of_time and run.rank == 0:
            print(f"[train] max_wall_s={self.max_wall_s:g} reached at step {self.step} of {t.total_steps}; "
                  "checkpointed, resumable")
        return out_of_time

    def prepare_first_step(self, hr, hr_down) -> None:
        """A fresh DictSR run initialises its dictionaries from the first batch; then the forward is built: DDP after
        the dictionaries exist (it broadcasts rank 0's initialisation), compiled when train.compile asks."""
        run = self.run
        if not self.initialized:
            z_lr, z_hr = run.model.coupled_embeddings(hr, hr_down)
            run.model.dictionaries.initialize(z_lr, z_hr)
            self.initialized = True
        if self.forward is None:
            self.objective = training_objective(wrap_ddp(run.model, run.device, run.world), run.criterion)
            self.forward = compiled(self.objective) if run.cfg.train.compile else self.objective
            self.first_compiled_step = self.forward is not self.objective

    def forward_backward(self, hr, hr_down, lr, injected) -> dict:
        """This step's loss terms and gradients, with the perceptual weight and precision of this step. Compiling
        happens in the first step (forward graph, then backward graph): a failure there falls back to eager and
        retries the step (no optimiser step was taken: a clean retry)."""
        run = self.run
        run.criterion.perceptual_weight = perceptual_weight_at(run.cfg.train, self.step)
        bf16 = bf16_autocast(run.cfg.train.amp, run.criterion.perceptual_weight, run.device.type == "cuda",
                             run.native_bf16)
        try:
            terms = forward_backward(self.forward, run.optimizer, run.device, bf16, hr, hr_down, lr, injected)
        except Exception as error:  # noqa: BLE001 - compiling (forward or backward graph) happens in the first step
            if not self.first_compiled_step:
                raise
            print(f"[train] torch.compile failed ({type(error).__name__}: {error}); running eager")
            self.forward = self.objective
            terms = forward_backward(self.forward, run.optimizer, run.device, bf16, hr, hr_down, lr, injected)
        self.first_compiled_step = False
        return terms

    def optimise(self) -> None:
        """Gradient clipping, the Adam and schedule steps, and the dictionaries' usage clock."""
        run = self.run
        if run.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.train.grad_clip, foreach=True)
        run.optimizer.step()
        run.scheduler.step()
        if run.is_dictsr:
            run.model.dictionaries.tick()

    def accumulate(self, terms: dict) -> None:
        """Add this step's loss terms to the log sums and to the non-finite flag, on the device (no host sync)."""
        vec = torch.stack([terms[k].detach().float() for k in self.run.log_terms])
        self.bad |= ~torch.isfinite(vec).all()
        self.log_sums = vec if self.log_sums is None else self.log_sums + vec
        self.log_count += 1

    def check_finite(self) -> None:
        """The NaN guard: a non-finite loss so far stops training, naming the last good checkpoint."""
        if bool(self.bad):
            where = f"{self.run.ckpt_path} (step {self.last_good})" if self.last_good is not None else "none was written"
            raise NonFiniteLossError(
                f"non-finite loss at or before step {self.step}: training stopped. Last good checkpoint: {where}. "
                "Lower train.lr or check the data."
            )

    def log(self) -> None:
        """A log line: the mean terms since the last one, lr, dictionary usage, speed, wall time; rank 0 appends it
        to metrics.jsonl, shows it on the bar and hands it to on_log."""
        self.check_finite()
        now = time.time()
        record = self.log_record(now)
        self.log_sums, self.log_count, self.t_log = None, 0, now
        self.summary = record
        if self.run.rank != 0:
            return
        append_metrics(self.run.metrics_path, record)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['total']:.4f}", l1=f"{record['l1_hr']:.4f}", act=record.get("activated", "-"),
                                 lr=f"{record['lr']:.1e}")
        if self.on_log is not None:
            self.on_log(record)

    def log_record(self, now: float) -> dict:
        run, t = self.run, self.run.cfg.train
        record = {"step": self.step, "lr": run.scheduler.get_last_lr()[0]}
        record.update({k: float(v) for k, v in zip(run.log_terms, (self.log_sums / self.log_count).tolist())})
        if run.is_dictsr:
            record["activated"] = int(run.model.dictionaries.activated(t.usage_window))
            record["activated_deg"] = int(run.model.dictionaries.activated_offsets(t.usage_window))
        record["it_s"] = self.log_count / max(now - self.t_log, 1e-9)
        record["wall_s"] = run.prior_wall + now - self.wall0
        return record

    def checkpoint(self, *paths: Path) -> None:
        """checkpoints/last.pt (or each of `paths`) at this step (written by rank 0, atomically), after the NaN
        guard; serialised once, the other paths get a copy of the bytes."""
        self.check_finite()
        run = self.run
        if run.rank == 0:
            average = run.average.state_dict(run.model) if run.average is not None else None
            extra = {"model_ema": average} if average is not None else {}
            tracked = {label: each.state_dict(run.model) for label, each in run.tracked.items()}
            if any(state is not None for state in tracked.values()):
                extra["model_averages"] = tracked
            paths = paths or (run.ckpt_path,)
            save_checkpoint(
                paths[0], model_state=run.model.state_dict(), config=run.cfg, step=self.step, **extra,
                optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(), rng=rng_state(run.device),
                train_wall_s=self.wall_s(), device=str(run.device),
            )
            for path in paths[1:]:
                atomic_write_bytes(path, Path(paths[0]).read_bytes())
        self.last_good = self.step

    def out_of_time(self) -> bool:
        """max_wall_s reached? One process reads the host clock every step. Under DDP every rank must stop
        at the same step, which takes a collective (a host sync): it runs at log steps only."""
        run = self.run
        if self.max_wall_s is None or self.step >= run.end_step:
            return False
        out_of_time = time.time() - self.wall0 >= self.max_wall_s
        if run.world == 1:
            return out_of_time
        if self.step % run.cfg.train.log_every:
            return False
        return any_rank(out_of_time, run.device)

    def wall_s(self) -> float:
        """Seconds of training of this run, earlier calls included."""
        return self.run.prior_wall + time.time() - self.wall0

    def final_summary(self) -> dict:
        run = self.run
        self.summary.update(step=self.step, total_steps=run.cfg.train.total_steps, stopped_early=self.step < run.end_step,
                            checkpoint=str(run.ckpt_path), device=str(run.device), world_size=run.world, rank=run.rank,
                            train_wall_s=self.wall_s())
        return self.summary


def _progress_bar(run: TrainingRun):
    from tqdm.auto import tqdm

    cfg = run.cfg
    return tqdm(total=cfg.train.total_steps, initial=run.start_step, dynamic_ncols=True,
                desc=f"train {cfg.method} {cfg.preset}" + (f"/{cfg.ablation}" if cfg.ablation else ""))
