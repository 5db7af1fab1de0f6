"""`dictsr main`: the README's main job on the embedded default dataset, end to end.

prepare (skimage's photos, `aim` degradation) -> train (cpu preset, or gpu preset on CUDA)
-> super-resolve the validation LR images -> score DictSR and bicubic -> a results table and figure.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from dictsr_core.atomic import atomic_write_json, atomic_write_text

PROFILES = {"cpu": "cpu", "gpu": "gpu", "tiny": "tiny"}


def resolve_profile(profile: str) -> str:
    if profile == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if profile not in PROFILES:
        raise ValueError(f"--profile {profile!r}: choose auto, {', '.join(PROFILES)}")
    return profile


def results_table(results: dict) -> str:
    from dictsr_core.evaluate import markdown_table

    return markdown_table({method: results[method]["summary"] for method in ("bicubic", "dictsr")})


def run_main(profile: str = "auto", data_root="data", runs_root="runs", force: bool = False, source: str = "sample",
             figures_root="figures") -> int:
    from dictsr_core.checkpoint import inference_model, load_checkpoint
    from dictsr_core.config import get_config
    from dictsr_core.data.datasets import PairedImages
    from dictsr_core.data.prepare import prepare_dataset
    from dictsr_core.evaluate import bicubic_upscale, evaluate_pairs
    from dictsr_core.infer import super_resolve
    from dictsr_core.train import pick_device, train
    from dictsr_core.weights import fetch_weights

    profile = resolve_profile(profile)
    device = pick_device(None)
    data_dir = Path(data_root) / f"{source}-aim"
    run_root = Path(runs_root) / profile
    run_dir = run_root / "dictsr"
    print(f"[main] profile {profile} on {device}; data {data_dir}; run {run_dir}")

    fetch_weights()
    if not (data_dir / "manifest.json").exists():
        prepare_dataset(data_dir, source=source, degradation="aim", seed=0)

    cfg = get_config(profile)
    ckpt = run_dir / "checkpoints" / "last.pt"
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    done = ckpt.exists() and load_checkpoint(ckpt)["step"] >= cfg.train.total_steps
    if not done:
        train(cfg, data_dir, run_dir, resume=ckpt.exists(), device=str(device))
    else:
        print(f"[main] {ckpt} is finished; reusing it (--force retrains)")

    payload = load_checkpoint(ckpt)
    model, cfg, step = inference_model(payload, device, source=str(ckpt)), payload["config"], payload["step"]
    last_log = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    pairs = PairedImages(data_dir / "val_lr", data_dir / "val_hr")
    amp = device.type == "cuda"
    results = {
        "profile": profile,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "data": str(data_dir),
        "steps": step,
        "train_wall_s": payload.get("train_wall_s"),
        "dictsr": evaluate_pairs(pairs, lambda lr: super_resolve(model, lr, device=device, amp=amp),
                                 out_dir=run_root / "sr", device=device, desc="dictsr"),
        "bicubic": evaluate_pairs(pairs, bicubic_upscale, out_dir=run_root / "bicubic", device=device, desc="bicubic"),
        "activated_entries": last_log["activated"],
        "entries": cfg.model.entries,
    }
    table = results_table(results)
    atomic_write_json(run_root / "results.json", results)
    atomic_write_text(run_root / "results.md", f"Validation pairs of `{data_dir}` ({len(pairs)} images), "
                      f"{profile} profile, {step} steps on {results['device']}.\n\n" + table)
    figure_path = _comparison_figure(pairs, run_root, Path(figures_root) / profile)
    print(table)
    print(f"[main] wrote {run_root / 'results.json'}, {run_root / 'results.md'} and {figure_path}")
    return 0


def _comparison_figure(pairs, run_root: Path, figure_dir: Path) -> Path:
    from dictsr_core.data.io import read_rgb
    from dictsr_core.figures import sr_comparison

    rows = []
    for item in pairs:
        rows.append({
            "name": item["name"],
            "LR": item["lr"],
            "bicubic": read_rgb(run_root / "bicubic" / f"{item['name']}.png"),
            "DictSR": read_rgb(run_root / "sr" / f"{item['name']}.png"),
            "HR": item["hr"],
        })
    figure = sr_comparison(rows)
    figure_dir.mkdir(parents=True, exist_ok=True)
    path = figure_dir / "main_comparison.png"
    figure.savefig(path, dpi=120)
    return path
