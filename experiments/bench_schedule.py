"""What a schedule costs on this machine: the training step of the `cpu` preset and of an ablation, L1 and
perceptual, timed in one process (fp32, channels_last as the preset trains), and each schedule's predicted wall
clock (L1 steps x L1 step + perceptual steps x perceptual step), with its ratio to the recipe's.

    .venv/bin/python scripts/bench_schedule.py                  # the recipe against the 2x2 grid it had before
    .venv/bin/python scripts/bench_schedule.py --ablation A1 --set train.epochs=16 --set train.halve_every=12

Run it alone: two PyTorch jobs on 2 cores slow each other about 10x. Steps in the loader, logging, checkpoints
and the weight average are not in it (a few % of a run).
"""

from __future__ import annotations

import argparse
import json

import torch

from dictsr_core.config import get_config, parse_set_args
from dictsr_core.performance.bench import train_step


# the cpu preset before it took one code per LR pixel (README "What it took ...", 9.)
BEFORE = {"model.code_patch": 2, "model.hr_widths": (16, 32, 64, 128), "train.epochs": 11, "train.halve_every": 8,
          "train.perceptual_from": 10 / 11}


def schedule_cost(ablation: str | None, overrides: dict, device) -> dict:
    cfg = get_config("cpu", ablation, overrides=overrides)
    t = cfg.train
    ms = {tag: train_step(device, compile_model=False, perceptual=tag == "perceptual", preset="cpu", ablation=ablation,
                          channels_last=t.channels_last, bf16=False, overrides=overrides)["ms"]
          for tag in ("l1", "perceptual")}
    l1_steps = t.perceptual_start if t.perceptual_weight > 0 else t.total_steps
    perceptual_steps = t.total_steps - l1_steps
    wall = (l1_steps * ms["l1"] + perceptual_steps * ms["perceptual"]) / 1e3
    return {"ablation": ablation, "overrides": overrides, "steps": t.total_steps, "perceptual_steps": perceptual_steps,
            "l1_ms": ms["l1"], "perceptual_ms": ms["perceptual"], "predicted_wall_min": wall / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation", default=None)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="schedule overrides of the compared run (default: the 2x2 code grid and the 6600 steps "
                             "the preset had before: " + ", ".join(f"{k}={v}" for k, v in BEFORE.items()) + ")")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    overrides = parse_set_args(args.set) if args.set else BEFORE
    device = torch.device("cpu")
    rows = [schedule_cost(None, {}, device), schedule_cost(args.ablation, overrides, device)]
    anchor = rows[0]["predicted_wall_min"]
    for row in rows:
        label = "cpu recipe" if row is rows[0] else f"cpu + {row['ablation'] or ''} {row['overrides']}"
        print(f"{label}: {row['steps']} steps ({row['perceptual_steps']} perceptual), L1 step {row['l1_ms']:.1f} ms, "
              f"perceptual step {row['perceptual_ms']:.1f} ms, predicted {row['predicted_wall_min']:.1f} min "
              f"({row['predicted_wall_min'] / anchor:.2f}x the recipe's)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
