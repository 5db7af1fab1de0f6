"""One device call for the GPU issue: `dictsr bench`, then the recorded `gpu`-preset training run on
prepared `photos-aim` data, then SR of its validation LR images; everything lands in $OUT.

The training length is set from the measured step time so that bench + training + SR fit the
call's time budget (`--budget-s`). Scoring happens afterwards on any machine with
`python scripts/gpu_results.py` (exact LPIPS weights there; this machine may carry fp16 copies).

    python scripts/gpu_session.py --data .gpu/data/photos-aim --out "$OUT" --budget-s 540
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from pathlib import Path

import torch

from dictsr_core.atomic import atomic_write_json
from dictsr_core.bench import main_bench
from dictsr_core.checkpoint import load_inference_model
from dictsr_core.config import get_config
from dictsr_core.data.io import list_images, read_rgb, write_rgb
from dictsr_core.infer import super_resolve
from dictsr_core.train import train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=540)
    parser.add_argument("--train-s", type=float, default=360, help="target training wall time")
    parser.add_argument("--preset", default="gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--skip-bench", action="store_true", help="train only, assuming --step-ms per step")
    parser.add_argument("--step-ms", type=float, default=70.0)
    args = parser.parse_args()
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    bench = {}
    if not args.skip_bench:
        try:
            bench = main_bench(args.device, out / "bench.json", compile=not args.no_compile, quick=True)
        except Exception as error:  # noqa: BLE001 - the recorded training run still matters
            print(f"[gpu] bench failed: {type(error).__name__}: {error}")
    step_ms = bench.get("train_step_eager_ms") or args.step_ms
    left = args.budget_s - (time.time() - started) - 60  # SR + writing + margin
    train_s = max(30.0, min(args.train_s, left))
    cfg = get_config(args.preset)
    steps = max(cfg.train.epochs, int(train_s * 1000 / (step_ms * 1.1)))
    per_epoch = max(1, steps // cfg.train.epochs)
    cfg = get_config(args.preset, overrides={"train.steps_per_epoch": per_epoch, "train.checkpoint_every": per_epoch * cfg.train.epochs})
    print(f"[gpu] step {step_ms:.1f} ms -> {cfg.train.total_steps} steps for ~{train_s:.0f} s of training")
    run = Path("/tmp/dictsr-gpu-run")
    summary = train(cfg, args.data, run, device=args.device, progress=False,
                    on_log=lambda r: print(json.dumps(r), flush=True))
    summary["config"] = cfg.to_dict()
    atomic_write_json(out / "train.json", summary)
    (out / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text())

    model, _, _ = load_inference_model(run / "checkpoints" / "last.pt", device=args.device)
    sr_dir = run / "sr"
    t0 = time.time()
    for path in list_images(Path(args.data) / "val_lr"):
        write_rgb(sr_dir / f"{path.stem}.png", super_resolve(model, read_rgb(path), device=args.device, amp=True))
    print(f"[gpu] super-resolved the validation images in {time.time() - t0:.1f} s")
    with tarfile.open(out / "sr.tar", "w") as archive:
        archive.add(sr_dir, arcname="sr")
    print(f"[gpu] total {time.time() - started:.0f} s")


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    main()
