"""Turn one `gpu_session.py` output folder into the recorded results (run here, with exact LPIPS weights):

    results/bench/<card>.json            the bench numbers (card = H100 / H200 / ...)
    results/photos-aim/<name>.json + .md  the training run, scored on its validation pairs against bicubic
    runs/gpu-photos-aim/dictsr/          its run folder, where the session returned the weights (weights.pt.NN):
                                         the checkpoint joined and checked, config.yaml, metrics.jsonl; the
                                         record then carries the index agreement measured with it, and
                                         `dictsr derive` / `dictsr table` take the folder like any run

    python scripts/gpu_results.py --session /work/.device/N --data data/photos-aim [--name gpu] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
import tempfile
from pathlib import Path

from dictsr_core.atomic import atomic_write_json, atomic_write_text
from dictsr_core.data.datasets import PairedImages
from dictsr_core.data.io import read_rgb, write_rgb
from dictsr_core.evaluation.evaluate import bicubic_upscale, evaluate_pairs, markdown_table, score_folders
from dictsr_core.inference.color_fix import wavelet_color_fix
from dictsr_core.performance.bench import card_name

ROOT = Path(__file__).resolve().parents[1]


def join_weights(session: Path, train: dict, run_dir: Path) -> dict | None:
    """RUN_DIR as the session's run folder (checkpoints/last.pt joined from weights.pt.NN, its size and sha256
    checked against train.json's `weights`, then its own tensor checksum on load; config.yaml, metrics.jsonl), and
    that checkpoint, loaded. None where the session returned no weights."""
    from dictsr_core.atomic import atomic_write_bytes
    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.training.run_folder import write_run_config

    expected = train.get("weights")
    parts = sorted(session.glob("weights.pt.[0-9][0-9]"))
    if not expected or not parts:
        return None
    data = b"".join(part.read_bytes() for part in parts)
    if len(parts) != expected["parts"] or len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise SystemExit(f"{session}: weights.pt.NN ({len(parts)} parts, {len(data)} bytes) do not join into the "
                         f"checkpoint train.json describes ({expected}); fetch the files again")
    checkpoint = run_dir / "checkpoints" / "last.pt"
    atomic_write_bytes(checkpoint, data)
    payload = load_checkpoint(checkpoint)  # its own tensor checksum
    write_run_config(run_dir, payload["config"], None)
    atomic_write_text(run_dir / "metrics.jsonl", (session / "metrics.jsonl").read_text())
    return payload


def index_agreement(payload: dict, data: Path, pairs) -> dict:
    """evaluation.index_consistency's validation summary (clean vs degraded LR, two draws) of the joined run."""
    from dictsr_core.data.degradations import data_degradation
    from dictsr_core.evaluation.index_consistency import validation_agreement
    from dictsr_core.training.checkpoint import inference_model

    model = inference_model(payload)
    return validation_agreement(model, pairs, degradation=data_degradation(data))["summary"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--session", required=True, help="folder with bench.json, train.json, metrics.jsonl, sr.tar")
    parser.add_argument("--data", required=True, help="the prepared dataset the run used (val_lr/, val_hr/)")
    parser.add_argument("--name", default="gpu")
    parser.add_argument("--bench", default=None, help="bench.json of another session on the same card (when this one skipped it)")
    parser.add_argument("--results", default=str(ROOT / "results"))
    parser.add_argument("--run-dir", default=None, help="where the returned weights become a run folder "
                        "(default runs/gpu-<dataset>/dictsr)")
    args = parser.parse_args(argv)
    session, results = Path(args.session), Path(args.results)

    train = json.loads((session / "train.json").read_text())
    bench_path = Path(args.bench) if args.bench else session / "bench.json"
    bench = json.loads(bench_path.read_text()) if bench_path.is_file() else {"device": train["device"]}
    card = card_name(bench)
    if not args.bench and bench_path.is_file():
        atomic_write_json(results / "bench" / f"{card}.json", bench)

    pairs = PairedImages(Path(args.data) / "val_lr", Path(args.data) / "val_hr")
    run_dir = Path(args.run_dir) if args.run_dir else ROOT / "runs" / f"gpu-{Path(args.data).name}" / "dictsr"
    payload = join_weights(session, train, run_dir)
    agreement = index_agreement(payload, Path(args.data), pairs) if payload else {}
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(session / "sr.tar") as archive:
            archive.extractall(tmp, filter="data")
        dictsr = score_folders(Path(tmp) / "sr", Path(args.data) / "val_hr", desc="dictsr")
        for path in sorted((Path(tmp) / "sr").glob("*.png")):  # the optional colour fix, applied here
            fixed = wavelet_color_fix(read_rgb(path), read_rgb(Path(args.data) / "val_lr" / path.name))
            write_rgb(Path(tmp) / "sr_wavelet" / path.name, fixed)
        wavelet = score_folders(Path(tmp) / "sr_wavelet", Path(args.data) / "val_hr", desc="dictsr+wavelet")
    bicubic = evaluate_pairs(pairs, bicubic_upscale, desc="bicubic")
    record = {
        "device": bench["device"],
        "torch": bench.get("torch"),
        "preset": train["config"]["preset"],
        "steps": train["step"],
        "train_wall_s": train["train_wall_s"],
        "train_step_ms_run": train.get("train_step_ms_run"),  # steady state of this run, data loading included
        "activated_entries": train["activated"],
        "activated_offsets": train.get("activated_deg"),
        "entries": train["config"]["model"]["entries"],
        "config": train["config"],
        "run_dir": str(run_dir) if payload else None,
        "index_agreement": agreement.get("index_agreement"),  # clean vs degraded LR; evaluation.index_consistency
        "index_agreement_draws": agreement.get("index_agreement_draws"),
        "dictsr": dictsr,
        "dictsr_wavelet": wavelet,  # not the paper's method: see dictsr_core/inference/color_fix.py
        "bicubic": bicubic,
        "ratios": {
            "lpips_alex_vs_bicubic": dictsr["summary"]["lpips_alex"] / bicubic["summary"]["lpips_alex"],
            "psnr_rgb_minus_bicubic": dictsr["summary"]["psnr_rgb"] - bicubic["summary"]["psnr_rgb"],
            "activated_fraction": train["activated"] / train["config"]["model"]["entries"],
            "wavelet_lpips_alex_vs_bicubic": wavelet["summary"]["lpips_alex"] / bicubic["summary"]["lpips_alex"],
            "wavelet_psnr_rgb_minus_bicubic": wavelet["summary"]["psnr_rgb"] - bicubic["summary"]["psnr_rgb"],
        },
    }
    dataset = Path(args.data).name
    atomic_write_json(results / dataset / f"{args.name}.json", record)
    table = markdown_table({"bicubic": bicubic["summary"], "dictsr": dictsr["summary"],
                            "dictsr+wavelet (not the paper)": wavelet["summary"]})
    atomic_write_text(results / dataset / f"{args.name}.md",
                      f"`{args.name}` run on {bench['device']}: {train['step']} steps in {train['train_wall_s']:.0f} s, "
                      f"{len(pairs)} validation pairs of `{dataset}`.\n\n" + table)
    print(table)
    print(json.dumps(record["ratios"], indent=2))
    return record


if __name__ == "__main__":
    main()
