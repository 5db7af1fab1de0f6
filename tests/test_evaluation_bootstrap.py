"""The bootstrap intervals every Δ column rests on, against independent computations: a brute-force loop over
resamples (photos drawn whole), a coverage simulation (about 95 % of intervals hold the true mean difference), and
the two-stage seeds x photos interval on data that is not degenerate."""

import numpy as np
import pytest

from dictsr_core.evaluation.comparison import paired_bootstrap, two_stage_bootstrap


def brute_force_interval(diffs, photos, resamples, rng, confidence=0.95):
    """Draw photos with replacement, take the mean over every crop of the drawn photos; percentile interval."""
    labels = sorted(set(photos))
    by_photo = {label: [d for d, p in zip(diffs, photos) if p == label] for label in labels}
    stats = []
    for _ in range(resamples):
        drawn = rng.choice(len(labels), size=len(labels), replace=True)
        values = [v for i in drawn for v in by_photo[labels[i]]]
        stats.append(np.mean(values))
    alpha = 1 - confidence
    return tuple(np.quantile(stats, [alpha / 2, 1 - alpha / 2]))


def clustered_data(rng, photos=12, crops=4, effect=0.03, photo_sd=0.04, crop_sd=0.02):
    """Per-crop differences with a shared per-photo part (crops of one photo are correlated)."""
    photo_effect = rng.normal(effect, photo_sd, photos)
    diffs = np.concatenate([photo_effect[p] + rng.normal(0, crop_sd, crops) for p in range(photos)])
    labels = [f"p{p}" for p in range(photos) for _ in range(crops)]
    return diffs, labels


def test_the_clustered_interval_matches_a_brute_force_loop():
    rng = np.random.default_rng(0)
    diffs, labels = clustered_data(rng, photos=10, crops=3)
    found = paired_bootstrap(diffs, np.zeros_like(diffs), clusters=labels, resamples=20000, seed=1)
    low, high = brute_force_interval(diffs, labels, 20000, np.random.default_rng(2))
    width = high - low
    assert found["mean_diff"] == pytest.approx(diffs.mean())
    assert found["ci_low"] == pytest.approx(low, abs=0.04 * width) and found["ci_high"] == pytest.approx(high, abs=0.04 * width)
    # resampling crops one by one would ignore the photos' shared part and give a narrower interval: not what we do
    naive = paired_bootstrap(diffs, np.zeros_like(diffs), resamples=20000, seed=1)
    assert naive["ci_high"] - naive["ci_low"] < 0.8 * (found["ci_high"] - found["ci_low"])


def test_about_95_percent_of_intervals_hold_the_true_mean_difference():
    rng = np.random.default_rng(3)
    effect, simulations = 0.03, 300
    held = 0
    for _ in range(simulations):
        diffs, labels = clustered_data(rng, photos=40, crops=4, effect=effect)
        found = paired_bootstrap(diffs, np.zeros_like(diffs), clusters=labels, resamples=2000,
                                 seed=int(rng.integers(1 << 30)))
        held += found["ci_low"] <= effect <= found["ci_high"]
    assert 0.92 <= held / simulations <= 0.98


def test_the_two_stage_interval_matches_a_brute_force_loop_over_seeds_then_photos():
    rng = np.random.default_rng(4)
    seeds, photos, crops = 4, 8, 3
    seed_effect = rng.normal(0.0, 0.02, seeds)  # seeds differ as much as photos do
    photo_effect = rng.normal(0.03, 0.03, photos)
    diffs = np.array([[seed_effect[s] + photo_effect[p] + rng.normal(0, 0.01)
                       for p in range(photos) for _ in range(crops)] for s in range(seeds)])
    labels = [f"p{p}" for p in range(photos) for _ in range(crops)]
    low, high = two_stage_bootstrap(diffs, labels, resamples=20000, seed=5)
    loop = np.random.default_rng(6)
    stats = []
    for _ in range(20000):
        drawn_seeds = loop.integers(0, seeds, seeds)
        drawn_photos = loop.integers(0, photos, photos)
        columns = [p * crops + c for p in drawn_photos for c in range(crops)]
        stats.append(diffs[np.ix_(drawn_seeds, columns)].mean())
    ref_low, ref_high = np.quantile(stats, [0.025, 0.975])
    width = ref_high - ref_low
    assert low == pytest.approx(ref_low, abs=0.05 * width) and high == pytest.approx(ref_high, abs=0.05 * width)
    # the seeds' spread widens it beyond photos alone (one seed's row resampled by photos)
    one_seed = paired_bootstrap(diffs.mean(0), np.zeros(diffs.shape[1]), clusters=labels, resamples=20000, seed=5)
    assert high - low > one_seed["ci_high"] - one_seed["ci_low"]
