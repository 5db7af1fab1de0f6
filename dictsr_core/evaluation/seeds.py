"""Training seeds pooled: is a run ahead of its reference for the recipe, not only for one training seed?

Input: one `dictsr table` results folder per training seed, each holding the run's record and the reference's,
scored on the same validation images. Per seed: the mean paired difference and its interval with photos
resampled, as in the tables. Pooled, over the images' differences averaged across the seeds:
- "photos": photos resampled, the seeds held fixed: is the recipe, averaged over these seeds, ahead on photos
  like these?
- "seeds x photos": a two-stage bootstrap, seeds drawn with replacement and then photos: would the comparison
  hold for a seed not trained yet? With few seeds this interval is coarse, and it is the honest one to quote.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dictsr_core.evaluation.comparison import (RESAMPLES, ComparisonError, paired_bootstrap, photo_label,
                                                two_stage_bootstrap)

SEED_METRICS = ("psnr_rgb", "lpips_alex")


class SeedsError(ValueError):
    """A results folder or record that cannot be pooled; the message names it."""


def read_record(path: Path) -> dict:
    from dictsr_core.evaluation.results import read_record as read

    return read(path, SeedsError, missing="run `dictsr table` for that seed first", summary=False)


def training_seed(record: dict, where) -> int:
    try:
        return int(record["config"]["train"]["seed"])
    except (KeyError, TypeError, ValueError):
        raise SeedsError(f"{where}: the record has no config.train.seed") from None


def seed_records(results_dirs, run: str, reference: str) -> list[dict]:
    """[{seed, folder, record, reference}] from each folder's <run>.json and <reference>.json, checked: one folder per
    training seed, and every record scored on the same images as the first folder's."""
    pooled, seen = [], {}
    for folder in map(Path, results_dirs):
        record, other = read_record(folder / f"{run}.json"), read_record(folder / f"{reference}.json")
        seed = training_seed(record, folder / f"{run}.json")
        if seed in seen:
            raise SeedsError(f"{seen[seed]} and {folder}: both hold training seed {seed} of {run!r}; pool each seed once")
        seen[seed] = folder
        pooled.append({"seed": seed, "folder": folder, "record": record, "reference": other})
    if not pooled:
        raise SeedsError("no results folders given")
    names = _names(pooled[0]["record"])
    for entry in pooled:
        for which in ("record", "reference"):
            if _names(entry[which]) != names:
                raise ComparisonError(f"{entry['folder']} / {entry[which].get('run', '?')}: scored on other images than "
                                      f"{pooled[0]['folder']} / {run}; pool results of the same data folder")
    return pooled


def _names(record: dict) -> list[str]:
    return sorted(row["name"] for row in record["evaluation"]["images"])


def _values(record: dict, metric: str, names: list[str]) -> np.ndarray:
    rows = {row["name"]: row for row in record["evaluation"]["images"]}
    out = [rows[name].get(metric) for name in names]
    return np.array([math.nan if v is None else float(v) for v in out], dtype=np.float64)


def pooled_comparison(pooled: list[dict], metric: str, *, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """{per_seed: [{seed, run, reference, diff (paired_bootstrap)}], run, reference (means over seeds and images),
    photos (paired_bootstrap of the seed-averaged values), seeds_photos: {ci_low, ci_high}, seeds, dropped}.
    An image whose value is missing or not finite in any record is left out of the pooled numbers (`dropped`)."""
    names = _names(pooled[0]["record"])
    rows = {row["name"]: row for row in pooled[0]["record"]["evaluation"]["images"]}
    clusters_all = [photo_label(rows[name]) for name in names]
    a = np.stack([_values(entry["record"], metric, names) for entry in pooled])
    b = np.stack([_values(entry["reference"], metric, names) for entry in pooled])
    per_seed = []
    for entry, a_s, b_s in zip(pooled, a, b):
        per_seed.append({"seed": entry["seed"], "run": float(np.nanmean(a_s)), "reference": float(np.nanmean(b_s)),
                         "diff": paired_bootstrap(a_s, b_s, clusters=clusters_all, resamples=resamples, seed=seed,
                                                  names=names)})
    keep = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    kept = [n for n, k in zip(names, keep) if k]
    clusters = [c for c, k in zip(clusters_all, keep) if k]
    photos = paired_bootstrap(a[:, keep].mean(axis=0), b[:, keep].mean(axis=0), clusters=clusters,
                              resamples=resamples, seed=seed, names=kept)
    low, high = (two_stage_bootstrap(a[:, keep] - b[:, keep], clusters, resamples=resamples, seed=seed)
                 if keep.any() else (math.nan, math.nan))
    return {"metric": metric, "per_seed": per_seed, "seeds": len(pooled),
            "run": float(a[:, keep].mean()) if keep.any() else math.nan,
            "reference": float(b[:, keep].mean()) if keep.any() else math.nan,
            "photos": photos, "seeds_photos": {"ci_low": low, "ci_high": high},
            "dropped": [n for n, k in zip(names, keep) if not k]}
