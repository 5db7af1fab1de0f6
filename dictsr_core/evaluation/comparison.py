"""Paired comparisons of two methods on the same validation images: mean difference and a bootstrap interval.

`paired_bootstrap` takes per-image values of two methods (already matched image by image) and returns the
mean of a - b with a percentile bootstrap interval of that mean. Several validation crops may come from
one photo, and crops of one photo are not independent; with `clusters` (one label per image, the source
photo) whole photos are resampled (cluster bootstrap), otherwise single images.

`two_stage_bootstrap` does the same for differences of several training seeds on the same images: seeds drawn
with replacement, then photos.

`compare_records` matches the per-image rows of two result records by `name` and runs `paired_bootstrap`
per metric, with photos as clusters: a row's `photo` key, or else its name without a trailing `__c<digits>`
(the crops of one photo are named `<photo>__c0`, `<photo>__c1`, ...).
"""

from __future__ import annotations

import math
import re

import numpy as np

RESAMPLES = 10000
CONFIDENCE = 0.95
COMPARED_METRICS = ("psnr_rgb", "ssim_rgb", "lpips_alex", "lpips_vgg", "psnr_y", "ssim_y",
                    "psnr_rgb_flat", "psnr_rgb_textured")
_CROP_SUFFIX = re.compile(r"__c\d+$")
_CELLS_PER_CHUNK = 4_000_000  # resamples x clusters drawn at once (32 MB of int64 indices)


class ComparisonError(ValueError):
    """Two records (or value lists) that cannot be compared; the message names them."""


def photo_of(name: str) -> str:
    """The source photo of a validation image name: `<photo>__c<k>` -> `<photo>`, anything else unchanged."""
    return _CROP_SUFFIX.sub("", name)


def _as_float(values, what: str) -> np.ndarray:
    try:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ComparisonError(f"{what}: values must be numbers or None ({error})") from None


def paired_bootstrap(values_a, values_b, *, clusters=None, resamples: int = RESAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE, names=None) -> dict:
    """Mean of a - b over the images and its percentile bootstrap interval.

    values_a, values_b: one value per image, in the same image order. clusters: one hashable label per image
    (e.g. its source photo); whole clusters are resampled, and each resample's statistic is the mean over all
    images of the drawn clusters. An image whose value is not finite on either side (None, NaN, inf) is dropped
    from both; `dropped` counts them and `dropped_names` lists them (`names`, else their positions).

    Returns {mean_diff, ci_low, ci_high, n (images used), clusters (resampling units), dropped, dropped_names,
    resamples, confidence}. With fewer than two resampling units there is no interval: ci_low/ci_high are NaN
    (and all three are NaN with no image). Deterministic for a seed.
    """
    a, b = _as_float(values_a, "values_a"), _as_float(values_b, "values_b")
    if a.shape != b.shape:
        raise ComparisonError(f"values_a has {a.size} values, values_b {b.size}: the images must be matched")
    labels = list(range(a.size)) if clusters is None else list(clusters)
    if len(labels) != a.size:
        raise ComparisonError(f"clusters has {len(labels)} labels for {a.size} images")
    if names is not None and len(names) != a.size:
        raise ComparisonError(f"names has {len(names)} entries for {a.size} images")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")

    keep = np.isfinite(a) & np.isfinite(b)
    dropped = [str(names[i]) if names is not None else str(i) for i in np.flatnonzero(~keep)]
    diff = (a - b)[keep]
    cluster_of, units = _cluster_ids([label for label, k in zip(labels, keep) if k])
    result = {"mean_diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": int(diff.size),
              "clusters": units, "dropped": len(dropped), "dropped_names": dropped,
              "resamples": int(resamples), "confidence": float(confidence)}
    if not diff.size:
        return result
    mean = float(diff.mean())
    result["mean_diff"] = mean
    if units < 2:
        return result

    # Resample deviations from the mean so that a constant difference gives exactly that value in every resample.
    sums = np.bincount(cluster_of, weights=diff - mean, minlength=units)
    counts = np.bincount(cluster_of, minlength=units).astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // units)
    statistics = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        drawn = rng.integers(0, units, size=(stop - start, units))
        statistics[start:stop] = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    result["ci_low"], result["ci_high"] = _percentile_interval(mean, statistics, confidence)
    return result


def photos_to_exclude_zero(mean, low, high, units) -> int | None:
    """Where a bootstrap interval [low, high] over `units` photos spans 0: about how many photos would make an
    interval of that shape exclude 0 at this mean, were it to narrow as 1/sqrt(photos) (a rough power estimate that
    says how far a "not significant" is from one, not a test). None where the interval already excludes 0 or is
    missing, or the mean is 0."""
    values = (mean, low, high)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or not units or mean == 0:
        return None
    if not low <= 0 <= high:
        return None
    toward_zero = high - mean if mean < 0 else mean - low  # the half of the interval that reaches 0
    return max(int(units) + 1, math.ceil(units * (toward_zero / abs(mean)) ** 2))


def two_stage_bootstrap(diffs: np.ndarray, clusters, *, resamples: int = RESAMPLES, seed: int = 0,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean of `diffs` [seeds, images] when seeds (rows) are drawn with replacement and
    then photos (`clusters`, one label per image), as in paired_bootstrap; the same photos for every drawn seed, as
    the seeds share their images. (nan, nan) with one seed and one photo."""
    seeds = diffs.shape[0]
    cluster_of, units = _cluster_ids(clusters)
    if seeds < 2 and units < 2:
        return math.nan, math.nan
    mean = float(diffs.mean())
    sums = np.stack([np.bincount(cluster_of, weights=row - mean, minlength=units) for row in diffs])  # [S, P]
    counts = np.bincount(cluster_of, minlength=units).astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // (seeds * units))
    statistics = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        drawn_seeds = rng.integers(0, seeds, size=(stop - start, seeds))
        drawn_photos = rng.integers(0, units, size=(stop - start, units))
        total = sums[drawn_seeds[:, :, None], drawn_photos[:, None, :]].sum(axis=(1, 2))
        statistics[start:stop] = total / (seeds * counts[drawn_photos].sum(axis=1))
    return _percentile_interval(mean, statistics, confidence)


def _cluster_ids(labels) -> tuple[np.ndarray, int]:
    """(one integer id per label, in order of first appearance; the number of distinct labels)."""
    index: dict = {}
    ids = np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)
    return ids, len(index)


def _percentile_interval(mean: float, statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of resampled deviations from `mean`, shifted back to the mean."""
    alpha = 1.0 - confidence
    low, high = np.quantile(statistics, [alpha / 2, 1 - alpha / 2])
    return mean + float(low), mean + float(high)


def photo_label(row: dict) -> str:
    """The resampling unit of a record's row: its `photo` key, else photo_of(its name)."""
    return str(row["photo"]) if row.get("photo") is not None else photo_of(str(row["name"]))


def compare_records(record: dict, reference_record: dict, metrics=COMPARED_METRICS, *, resamples: int = RESAMPLES,
                    seed: int = 0, confidence: float = CONFIDENCE) -> dict:
    """{metric: paired_bootstrap(record's values, reference's values)} over the images both were scored on,
    matched by name, resampling photos. A metric that some row of either record lacks (a record written before
    the metric existed) is left out. Differing image names are a ComparisonError naming both runs."""
    run, reference = record.get("run", "?"), reference_record.get("run", "?")
    rows = {row["name"]: row for row in record["evaluation"]["images"]}
    reference_rows = {row["name"]: row for row in reference_record["evaluation"]["images"]}
    if set(rows) != set(reference_rows):
        only = sorted(set(rows) - set(reference_rows))
        only_reference = sorted(set(reference_rows) - set(rows))
        raise ComparisonError(
            f"runs {run!r} and {reference!r} were scored on different images and cannot be compared: "
            f"only in {run!r}: {only[:5] or 'none'}{' ...' if len(only) > 5 else ''}; only in {reference!r}: "
            f"{only_reference[:5] or 'none'}{' ...' if len(only_reference) > 5 else ''}")
    names = sorted(rows)
    clusters = [photo_label(rows[name]) for name in names]
    out = {}
    for metric in metrics:
        if not all(metric in rows[n] and metric in reference_rows[n] for n in names):
            continue
        out[metric] = paired_bootstrap([rows[n][metric] for n in names], [reference_rows[n][metric] for n in names],
                                       clusters=clusters, resamples=resamples, seed=seed, confidence=confidence,
                                       names=names)
    return out


def agreement_worth_comparison(record: dict, metric: str = "lpips_alex", *, resamples: int = RESAMPLES,
                               seed: int = 0) -> dict | None:
    """What perfect index agreement would buy a DictSR record: paired_bootstrap of the per-image `<metric>` of the
    SR decoded from the clean LR's content indices against the degraded LR's own (evaluation.index_consistency
    WORTH_KEYS), resampling photos; None when the record's rows do not all have both."""
    clean, own = f"{metric}_clean_indices", f"{metric}_own_indices"
    rows = record["evaluation"]["images"]
    if not rows or not all(row.get(clean) is not None and row.get(own) is not None for row in rows):
        return None
    return paired_bootstrap([row[clean] for row in rows], [row[own] for row in rows],
                            clusters=[photo_label(row) for row in rows], resamples=resamples, seed=seed,
                            names=[row["name"] for row in rows])
