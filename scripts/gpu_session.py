"""One device call for the GPU issue: `dictsr bench`, then the recorded `gpu`-preset training run on
prepared `photos-aim` data, then SR of its validation LR images; everything lands in $OUT.

The bench times inference (eager, CUDA graphs, compiled) and the eager training step. The run's length
is planned from a probe: a short run of the same preset on the same data (loader included), one half
in each loss phase, gives the step time of the L1 + VQ phase and of the perceptual phase, so that
bench + probe + training + SR fit the call's budget (`--budget-s`) with the preset's lr halvings and
perceptual phase over the planned steps; a hard wall-time limit stops training (checkpointed) if the
plan was optimistic. With --compile, the compiled step and its peak memory come from the recorded
run's steady state and go into bench.json (the step is compiled once, not twice). The run's weights
(its last ones and its average; no optimizer state) come back as a checkpoint in parts of at most
15 MiB (`weights.pt.00`, ...), the device's limit on a returned file, so that scoring, index
agreement and the coarse code are made afterwards on any machine with `python scripts/gpu_results.py`
(exact LPIPS weights there; the device machine may carry fp16 copies). The tests run this script on
the CPU with the tiny preset.

    python scripts/gpu_session.py --data .gpu/data/photos-aim --out "$OUT" --budget-s 540
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from dictsr_core.atomic import atomic_write_json
from dictsr_core.config import get_config, parse_set_args
from dictsr_core.data.io import list_images, read_rgb, write_rgb
from dictsr_core.inference.fast import FastInference
from dictsr_core.inference.tiled import super_resolve
from dictsr_core.performance.bench import main_bench
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.trainer import train

RESERVE_S = 75  # after training: loading, SR of the validation images, the archive, and a margin
PART_BYTES = 15 * 2**20  # a returned file may hold 16 MiB


def planned_steps(preset: str, seconds: float, step_ms: float, perceptual_step_ms: float | None = None) -> dict:
    """Config overrides for a run of about `seconds`: the preset's epochs and halvings, shorter epochs. With
    `perceptual_step_ms`, the preset's perceptual phase (its last fraction of the steps) is timed at that."""
    cfg = get_config(preset)
    share = 1 - cfg.train.perceptual_from if cfg.train.perceptual_weight > 0 and perceptual_step_ms else 0.0
    mean_ms = (1 - share) * step_ms + share * (perceptual_step_ms or step_ms)
    steps = max(cfg.train.epochs, int(seconds * 1000 / (mean_ms * 1.1)))
    per_epoch = max(1, steps // cfg.train.epochs)
    return {"train.steps_per_epoch": per_epoch, "train.checkpoint_every": per_epoch * cfg.train.epochs,
            "train.log_every": max(1, min(cfg.train.log_every, per_epoch))}


def steady_step_ms(metrics: list[dict]) -> float | None:
    """Median ms per step over the log records after the first (which holds compilation and warm-up)."""
    rates = sorted(1000.0 / r["it_s"] for r in metrics[1:] if r.get("it_s"))
    return rates[len(rates) // 2] if rates else None


def probe_step_ms(preset: str, data, device: str, overrides: dict, steps: int = 60) -> tuple[float, float | None]:
    """(ms per step of the L1 + VQ phase, of the perceptual phase or None) of `preset` on `data`, loader included:
    `steps` steps in each phase (the first log record of each left out: warm-up, cudnn's autotuning)."""
    cfg = get_config(preset, overrides=overrides)
    perceptual = cfg.train.perceptual_weight > 0
    every = max(1, steps // 4)
    probe = get_config(preset, overrides={**overrides, "train.epochs": 2 if perceptual else 1,
                                          "train.steps_per_epoch": steps, "train.log_every": every,
                                          "train.checkpoint_every": 2 * steps, "train.perceptual_from": 0.5,
                                          "train.halve_every": 2})
    with tempfile.TemporaryDirectory(prefix="dictsr-gpu-probe-") as tmp:
        train(probe, data, Path(tmp) / "probe", device=device, progress=False)
        metrics = [json.loads(line) for line in (Path(tmp) / "probe" / "metrics.jsonl").read_text().splitlines()]
    first = [r for r in metrics if r["step"] <= steps]
    second = [r for r in metrics if r["step"] > steps]
    return steady_step_ms(first), steady_step_ms(second) if perceptual and second else None


def write_weight_parts(payload: dict, out: Path) -> dict:
    """The weights of a loaded run checkpoint (last and averaged; no optimizer state, no tracked averages) as one
    checkpoint, split into files of at most PART_BYTES (`weights.pt.00`, ...); {parts, bytes, sha256} to check
    the join."""
    import hashlib

    from dictsr_core.training.checkpoint import save_checkpoint

    kept = {k: payload[k] for k in ("model_ema", "train_wall_s", "device") if payload.get(k) is not None}
    with tempfile.TemporaryDirectory(prefix="dictsr-gpu-weights-") as tmp:
        whole = save_checkpoint(Path(tmp) / "weights.pt", model_state=payload["model"], config=payload["config"],
                                step=payload["step"], **kept)
        data = whole.read_bytes()
    parts = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    for index, part in enumerate(parts):
        (out / f"weights.pt.{index:02d}").write_bytes(part)
    return {"parts": len(parts), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=540)
    parser.add_argument("--train-s", type=float, default=360, help="target training wall time")
    parser.add_argument("--preset", default="gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the bench's inference and the recorded run (default: as the preset says)")
    parser.add_argument("--skip-bench", action="store_true", help="no bench")
    parser.add_argument("--bench-compile", action=argparse.BooleanOptionalAction, default=True,
                        help="the bench's compiled inference rows")
    parser.add_argument("--skip-probe", action="store_true", help="plan the run from --step-ms, not from a probe run")
    parser.add_argument("--probe-steps", type=int, default=60, help="probe steps per loss phase")
    parser.add_argument("--step-ms", type=float, default=40.0)
    parser.add_argument("--compile-s", type=float, default=90.0, help="expected compile time of the training step")
    parser.add_argument("--compile-speedup", type=float, default=1.6, help="expected eager/compiled step time ratio")
    parser.add_argument("--full-bench", action="store_true", help="also compile the bench's training step (slower call)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for the run (repeatable)")
    args = parser.parse_args(argv)
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    compile_on = get_config(args.preset).train.compile if args.compile is None else args.compile
    run_overrides = {**parse_set_args(args.set), "train.compile": compile_on}

    bench = {}
    if not args.skip_bench:
        try:
            bench = main_bench(args.device, out / "bench.json", compile=args.bench_compile, quick=not args.full_bench)
        except Exception as error:  # noqa: BLE001 - the recorded training run still matters
            print(f"[gpu] bench failed: {type(error).__name__}: {error}")
    perceptual_ms = None
    if not args.skip_probe:
        step_ms, perceptual_ms = probe_step_ms(args.preset, args.data, args.device, {**run_overrides, "train.compile": False},
                                               steps=args.probe_steps)
        print(f"[gpu] probe (eager, loader included): {step_ms:.1f} ms a step"
              + (f", {perceptual_ms:.1f} ms with the perceptual term" if perceptual_ms else ""), flush=True)
    elif args.full_bench and compile_on and bench.get("train_step_ms"):
        step_ms = bench["train_step_ms"]
    else:
        step_ms = bench.get("train_step_eager_ms") or args.step_ms
    if compile_on:
        step_ms, perceptual_ms = step_ms / args.compile_speedup, perceptual_ms and perceptual_ms / args.compile_speedup
    left = args.budget_s - (time.time() - started) - RESERVE_S
    train_s = max(10.0, min(args.train_s, left - (args.compile_s if compile_on else 0)))
    overrides = {**run_overrides, **planned_steps(args.preset, train_s, step_ms, perceptual_ms)}
    cfg = get_config(args.preset, overrides=overrides)
    print(f"[gpu] step ~{step_ms:.1f} ms -> {cfg.train.total_steps} steps for ~{train_s:.0f} s of training "
          f"(hard stop after {max(10.0, left):.0f} s)", flush=True)
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(args.device)
    with tempfile.TemporaryDirectory(prefix="dictsr-gpu-run-") as tmp:
        run = Path(tmp)
        summary = train(cfg, args.data, run, device=args.device, progress=False, max_wall_s=max(10.0, left),
                        on_log=lambda r: print(json.dumps(r), flush=True))
        metrics_text = (run / "metrics.jsonl").read_text()
        metrics = [json.loads(line) for line in metrics_text.splitlines()]
        payload = load_checkpoint(run / "checkpoints" / "last.pt")
        summary.update(config=cfg.to_dict(), train_step_ms_run=steady_step_ms(metrics), checkpoint=None,  # a temp dir
                       probe_step_ms=None if args.skip_probe else step_ms, probe_perceptual_step_ms=perceptual_ms,
                       weights=write_weight_parts(payload, out))
        if cuda:
            summary["peak_train_mem_gb_run"] = torch.cuda.max_memory_allocated(args.device) / 2**30
        atomic_write_json(out / "train.json", summary)
        if bench and not args.full_bench and compile_on and summary["train_step_ms_run"]:
            bench.update(train_step_ms=summary["train_step_ms_run"], peak_train_mem_gb=summary.get("peak_train_mem_gb_run"),
                         train_step_source="compiled, steady state of the recorded gpu run in this call (data loading included)")
            atomic_write_json(out / "bench.json", bench)
        (out / "metrics.jsonl").write_text(metrics_text)

        model = inference_model(payload, device=args.device)
        sr_dir = run / "sr"
        t0 = time.time()
        if cuda:
            model = FastInference(model)  # channels_last, as `dictsr sr` runs on CUDA
        for path in list_images(Path(args.data) / "val_lr"):
            write_rgb(sr_dir / f"{path.stem}.png", super_resolve(model, read_rgb(path), device=args.device, amp=cuda))
        print(f"[gpu] super-resolved the validation images in {time.time() - t0:.1f} s")
        with tarfile.open(out / "sr.tar", "w") as archive:
            archive.add(sr_dir, arcname="sr")
    print(f"[gpu] total {time.time() - started:.0f} s")
    return summary


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    main()
