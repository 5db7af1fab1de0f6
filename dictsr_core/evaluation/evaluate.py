"""Score super-resolved images against references: per-image rows, a summary, and the report files.

Two entry points share one scoring loop: `evaluate_pairs` (a method run on paired LR/HR images)
and `score_folders` (finished outputs of any method, matched to references by file stem).
The report (`report_record`) is standard JSON: non-finite numbers (PSNR of identical images) are null.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from dictsr_core.atomic import json_safe
from dictsr_core.data.datasets import PairedImages
from dictsr_core.data.io import ImageError, PairingError, pair_by_stem, read_rgb, write_rgb
from dictsr_core.data.resize import imresize_np
from dictsr_core.evaluation.metrics import score_pair, score_size_problem
from dictsr_core.evaluation.regions import REGION_KEYS, region_scores

METRIC_KEYS = ("psnr_rgb", "ssim_rgb", "ssim_rgb_gauss", "psnr_y", "ssim_y", "lpips_alex", "lpips_vgg", "hf_energy_ratio")
METRIC_TITLES = ("PSNR (RGB)", "SSIM (RGB, Measure.py)", "SSIM (RGB, Gaussian 11)", "PSNR (Y, crop 4)",
                 "SSIM (Y, crop 4)", "LPIPS-Alex", "LPIPS-VGG", "HF energy (SR/HR)")
METRIC_FORMATS = (".2f", ".4f", ".4f", ".2f", ".4f", ".4f", ".4f", ".2f")


def bicubic_upscale(lr: np.ndarray, scale: int = 4) -> np.ndarray:
    """The bicubic baseline: MATLAB-compatible bicubic x4 of the LR image."""
    return imresize_np(lr, scale)


def summarize(rows: list[dict]) -> dict:
    """Mean of each metric and of the flat / textured region keys (`regions.REGION_KEYS`, present when the rows
    have them); non-finite or missing values (PSNR is inf for identical images, a region PSNR NaN or None for an
    image without such blocks) are left out, NaN if none is left."""
    summary = {}
    region_keys = tuple(key for key in REGION_KEYS if any(key in row for row in rows))
    for key in METRIC_KEYS + region_keys:
        values = [row[key] for row in rows if row.get(key) is not None and math.isfinite(row[key])]
        summary[key] = float(np.mean(values)) if values else float("nan")
    return summary


def non_finite_counts(rows: list[dict]) -> dict:
    """{metric: number of images whose value is not finite}, for the metrics that have any."""
    counts = {key: sum(1 for row in rows if key in row and not math.isfinite(row[key])) for key in METRIC_KEYS}
    return {key: count for key, count in counts.items() if count}


def _score_all(triples: Iterable[tuple[str, np.ndarray, np.ndarray]], *, total: int, device, progress: bool,
               desc: str) -> dict:
    """Score every (name, pred, ref), plus the flat / textured split of `regions.region_scores` per row;
    `seconds` includes whatever producing the triples costs."""
    from tqdm.auto import tqdm

    rows = []
    started = time.time()
    for name, pred, ref in tqdm(triples, total=total, desc=desc, disable=not progress, dynamic_ncols=True):
        rows.append({"name": name, **score_pair(pred, ref, device=device), **region_scores(pred, ref)})
    return {"images": rows, "summary": summarize(rows), "seconds": time.time() - started}


def _pair_paths(pairs, index: int, name: str) -> tuple[str, str]:
    """(LR file, HR file) of a pair, for error messages (the stem where the dataset keeps no paths)."""
    paths = getattr(pairs, "paths", None)
    return tuple(str(p) for p in paths[index]) if paths else (f"{name} (LR)", f"{name} (HR)")


def _check_scorable(pairs) -> None:
    """Every HR image large enough for the metrics, before any prediction runs; ImageError naming the file."""
    for index, item in enumerate(pairs):
        problem = score_size_problem(item["hr"].shape[1], item["hr"].shape[0])
        if problem:
            raise ImageError(_pair_paths(pairs, index, item["name"])[1], problem)


def _predictions(pairs, predict, out_dir, overwrite: bool = False) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    _check_scorable(pairs)
    for index, item in enumerate(pairs):
        try:
            sr = predict(item["lr"])
        except ValueError as error:  # the method cannot take this LR image (too small for the network, ...)
            raise ImageError(_pair_paths(pairs, index, item["name"])[0], str(error)) from None
        if sr.shape != item["hr"].shape:
            raise ValueError(f"{item['name']}: prediction is {sr.shape}, HR is {item['hr'].shape}")
        if out_dir is not None:
            write_rgb(Path(out_dir) / f"{item['name']}.png", sr, overwrite=overwrite)
        yield item["name"], sr, item["hr"]


def evaluate_pairs(
    pairs: PairedImages,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    out_dir=None,
    overwrite: bool = False,
    device=None,
    progress: bool = True,
    desc: str = "evaluate",
) -> dict:
    """Run `predict(lr) -> sr` on every pair, score it against HR, optionally save each SR image as PNG
    into `out_dir` (an existing file there is a FileExistsError unless `overwrite`)."""
    return _score_all(_predictions(pairs, predict, out_dir, overwrite), total=len(pairs), device=device,
                      progress=progress, desc=desc)


def _read_pair(pred_path, ref_path) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = read_rgb(pred_path), read_rgb(ref_path)
    if pred.shape != ref.shape:
        raise PairingError(f"{pred_path} ({pred.shape[1]}x{pred.shape[0]}) and {ref_path} "
                           f"({ref.shape[1]}x{ref.shape[0]}) differ in size")
    problem = score_size_problem(pred.shape[1], pred.shape[0])
    if problem:
        raise ImageError(pred_path, problem)
    return pred, ref


def _read_matched(matched, failed: list | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """The readable pairs; with a `failed` list, a pair that cannot be scored is added to it and skipped
    ({"name", "pred", "ref", "error"}), else its error stops everything."""
    for name, pred_path, ref_path in matched:
        try:
            pred, ref = _read_pair(pred_path, ref_path)
        except (ImageError, PairingError) as error:
            if failed is None:
                raise
            failed.append({"name": name, "pred": str(pred_path), "ref": str(ref_path), "error": str(error)})
            continue
        yield name, pred, ref


def score_folders(pred_dir, ref_dir, *, device=None, progress: bool = True, desc: str = "metrics",
                  keep_going: bool = False) -> dict:
    """Score the images of `pred_dir` (any method's outputs) against `ref_dir`, matched by file stem.

    Images are read one pair at a time, so a bad file (unreadable, too large or too small, a size mismatch)
    is found when its pair is reached: an error, or with `keep_going` an entry of the result's `failed` list
    while the other pairs are scored. Images without a partner are an error before any scoring.
    """
    matched = pair_by_stem(pred_dir, ref_dir)
    failed = [] if keep_going else None
    result = _score_all(_read_matched(matched, failed), total=len(matched), device=device, progress=progress, desc=desc)
    if keep_going:
        result["failed"] = failed
    return result


def photo_count(rows) -> int:
    from dictsr_core.evaluation.comparison import photo_label

    return len({photo_label(row) for row in rows})


def report_record(result: dict, **metadata) -> dict:
    """The report document: metadata, seconds, summary, then one row per image; non-finite numbers are None.

    The summary adds `count` (images), `photos` (the photos they are crops of: the bootstrap's resampling units)
    and `non_finite` (per metric, the images left out of its mean).
    """
    rows = result["images"]
    summary = {**result["summary"], "count": len(rows), "photos": photo_count(rows),
               "non_finite": non_finite_counts(rows)}
    failed = {"failed": result["failed"]} if result.get("failed") else {}  # pairs that could not be scored
    return json_safe({**metadata, "seconds": result["seconds"], "summary": summary, "images": rows, **failed})


def report_csv(record: dict) -> str:
    """CSV text of a report: one row per image, then a `mean` row; empty cells where the JSON has null."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("name",) + METRIC_KEYS)
    for row in record["images"] + [{**record["summary"], "name": "mean"}]:
        writer.writerow([row["name"]] + ["" if row[key] is None else repr(row[key]) for key in METRIC_KEYS])
    return buffer.getvalue()


def markdown_table(summaries: dict[str, dict], with_count: bool = False) -> str:
    """{method: summary} as a Markdown table of the means, one row a method; missing values are n/a."""
    def cell(summary, key, fmt):
        value = summary.get(key)
        return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)

    titles = ("method",) + (("images",) if with_count else ()) + METRIC_TITLES
    lines = ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    for label, summary in summaries.items():
        cells = [label] + ([str(summary["count"])] if with_count else [])
        cells += [cell(summary, k, f) for k, f in zip(METRIC_KEYS, METRIC_FORMATS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(record: dict, label: str) -> str:
    """The report's means as a Markdown table, the image count, and a note on what was left out of them."""
    summary = record["summary"]
    text = markdown_table({label: summary}, with_count=True)
    if summary["non_finite"]:
        counts = ", ".join(f"{key} {n} of {summary['count']}" for key, n in summary["non_finite"].items())
        text += f"\nLeft out of the means as not finite (PSNR of identical images is infinite): {counts}.\n"
    return text
