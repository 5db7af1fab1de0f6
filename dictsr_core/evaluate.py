"""Score a method on paired validation images: per-image rows and a summary (the evaluation JSON shape)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dictsr_core.data.datasets import PairedImages
from dictsr_core.data.io import write_rgb
from dictsr_core.data.resize import imresize_np
from dictsr_core.metrics import score_pair

METRIC_KEYS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "lpips_alex", "lpips_vgg")


def bicubic_upscale(lr: np.ndarray, scale: int = 4) -> np.ndarray:
    """The bicubic baseline: MATLAB-compatible bicubic x4 of the LR image."""
    return imresize_np(lr, scale)


def summarize(rows: list[dict]) -> dict:
    summary = {}
    for key in METRIC_KEYS:
        values = [row[key] for row in rows if key in row and math.isfinite(row[key])]
        summary[key] = float(np.mean(values)) if values else float("nan")
    return summary


def evaluate_pairs(
    pairs: PairedImages,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    out_dir=None,
    device=None,
    progress: bool = True,
    desc: str = "evaluate",
) -> dict:
    """Run `predict(lr) -> sr` on every pair, score it against HR, optionally save each SR image as PNG."""
    from tqdm.auto import tqdm

    rows = []
    started = time.time()
    for item in tqdm(pairs, desc=desc, disable=not progress, dynamic_ncols=True):
        sr = predict(item["lr"])
        if sr.shape != item["hr"].shape:
            raise ValueError(f"{item['name']}: prediction is {sr.shape}, HR is {item['hr'].shape}")
        if out_dir is not None:
            write_rgb(Path(out_dir) / f"{item['name']}.png", sr)
        rows.append({"name": item["name"], **score_pair(sr, item["hr"], device=device)})
    return {"images": rows, "summary": summarize(rows), "seconds": time.time() - started}
