"""Paired bootstrap comparisons (dictsr_core.evaluation.comparison) and the flat / textured split (dictsr_core.evaluation.regions)."""

import math

import numpy as np
import pytest

from dictsr_core.evaluation.comparison import (ComparisonError, compare_records, paired_bootstrap, photo_of,
                                              photos_to_exclude_zero)
from dictsr_core.evaluation.regions import flat_blocks, region_scores


# ---- paired_bootstrap ---------------------------------------------------------------------

def test_constant_difference_gives_a_zero_width_interval_at_that_value():
    rng = np.random.default_rng(1)
    b = rng.normal(25, 3, 40)
    result = paired_bootstrap(b + 0.37, b, resamples=2000)
    assert result["mean_diff"] == pytest.approx(0.37, abs=1e-12)
    assert result["ci_low"] == pytest.approx(0.37, abs=1e-12) and result["ci_high"] == pytest.approx(0.37, abs=1e-12)
    assert (result["n"], result["clusters"], result["dropped"]) == (40, 40, 0)


def test_noisy_shift_interval_contains_the_true_mean_and_excludes_zero():
    rng = np.random.default_rng(2)
    b = rng.normal(0.5, 0.1, 200)
    noise = rng.normal(0, 0.05, 100)
    a = b + 0.2 + np.concatenate([noise, -noise])  # symmetric noise: the sample mean difference is exactly 0.2
    result = paired_bootstrap(a, b)
    assert result["mean_diff"] == pytest.approx(0.2, abs=1e-12)
    assert result["ci_low"] < 0.2 < result["ci_high"]
    assert result["ci_low"] > 0, "a shift of 4 standard errors must exclude 0"
    # about +-1.96 standard errors: sd 0.05 / sqrt(200)
    assert result["ci_high"] - result["ci_low"] == pytest.approx(2 * 1.96 * 0.05 / math.sqrt(200), rel=0.15)


def test_small_shift_in_large_noise_includes_zero():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1.0, 15)
    a = 0.01 + np.concatenate([noise, -noise])
    result = paired_bootstrap(a, np.zeros(30))
    assert result["ci_low"] < 0 < result["ci_high"]


def test_same_seed_same_interval_and_another_seed_differs():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=30), rng.normal(size=30)
    first, again = paired_bootstrap(a, b, seed=7), paired_bootstrap(a, b, seed=7)
    assert first == again
    assert paired_bootstrap(a, b, seed=8)["ci_low"] != first["ci_low"]


def test_photos_to_exclude_zero_is_where_the_same_spread_over_more_photos_first_excludes_zero():
    effects = np.array([-0.40, -0.31, -0.25, -0.24, -0.06, 0.07, 0.07, 0.10, 0.16, -0.09])  # mean -0.095
    photos = [f"p{i}" for i in range(10)]
    ten = paired_bootstrap(effects, np.zeros(10), clusters=photos)
    assert ten["ci_low"] < 0 < ten["ci_high"]
    needed = photos_to_exclude_zero(ten["mean_diff"], ten["ci_low"], ten["ci_high"], ten["clusters"])
    assert 10 < needed < 200

    def interval(copies):  # the same ten photo effects, each photo seen `copies` times: same mean and spread
        labels = [f"{p}-{k}" for k in range(copies) for p in photos]
        return paired_bootstrap(np.tile(effects, copies), np.zeros(10 * copies), clusters=labels)

    above, below = interval(math.ceil(needed / 10) + 1), interval(max(1, needed // 20))
    assert above["ci_high"] < 0, (needed, above)  # enough photos: excludes 0
    assert below["ci_low"] < 0 < below["ci_high"], (needed, below)  # half as many: still spans it
    assert photos_to_exclude_zero(above["mean_diff"], above["ci_low"], above["ci_high"], above["clusters"]) is None
    assert photos_to_exclude_zero(0.3, math.nan, math.nan, 10) is None and photos_to_exclude_zero(0.0, -1, 1, 10) is None
    assert photos_to_exclude_zero(0.5, -0.1, 1.1, 10) == 15  # mean > 0: the lower half reaches 0: 10 x (0.6/0.5)^2 = 14.4


def test_cluster_bootstrap_is_wider_when_crops_of_one_photo_are_perfectly_correlated():
    rng = np.random.default_rng(5)
    photo_effect = rng.normal(0, 1.0, 10)
    diff = np.repeat(photo_effect, 5)  # five crops per photo with the same difference
    clusters = np.repeat([f"photo{i}" for i in range(10)], 5)
    images = paired_bootstrap(diff, np.zeros(50))
    photos = paired_bootstrap(diff, np.zeros(50), clusters=clusters)
    assert photos["mean_diff"] == pytest.approx(images["mean_diff"])
    assert (images["clusters"], photos["clusters"]) == (50, 10)
    width = lambda r: r["ci_high"] - r["ci_low"]
    assert width(photos) > 1.8 * width(images)  # sqrt(5) ~ 2.24 in expectation


def test_non_finite_images_are_dropped_from_both_sides_and_named():
    a = [30.0, math.inf, 31.0, None, 32.0]
    b = [29.0, 28.0, math.nan, 27.0, 31.0]
    result = paired_bootstrap(a, b, names=["p", "q", "r", "s", "t"])
    assert result["n"] == 2 and result["dropped"] == 3 and result["dropped_names"] == ["q", "r", "s"]
    assert result["mean_diff"] == pytest.approx(1.0)


def test_one_resampling_unit_has_no_interval_and_mismatched_lengths_are_refused():
    result = paired_bootstrap([1.0, 2.0], [0.0, 0.0], clusters=["one", "one"])
    assert result["mean_diff"] == 1.5 and result["clusters"] == 1
    assert math.isnan(result["ci_low"]) and math.isnan(result["ci_high"])
    with pytest.raises(ComparisonError, match="matched"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ComparisonError, match="clusters has 1 labels for 2 images"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0], clusters=["x"])


# ---- compare_records ----------------------------------------------------------------------

def _record(run, rows):
    return {"run": run, "evaluation": {"images": rows}}


def test_photo_labels_strip_the_crop_suffix():
    assert photo_of("0801__c0") == "0801" and photo_of("0801__c12") == "0801"
    assert photo_of("cat") == "cat" and photo_of("a__cx") == "a__cx" and photo_of("a__c1b") == "a__c1b"


def test_compare_records_matches_by_name_and_resamples_photos():
    names = [f"img{p}__c{c}" for p in range(6) for c in range(3)]
    rng = np.random.default_rng(6)
    reference = [{"name": n, "psnr_rgb": float(v), "lpips_alex": 0.5} for n, v in zip(names, rng.normal(25, 2, 18))]
    shift = {f"img{p}": float(s) for p, s in enumerate(rng.normal(1.0, 0.5, 6))}
    mine = [{"name": r["name"], "psnr_rgb": r["psnr_rgb"] + shift[photo_of(r["name"])], "lpips_alex": 0.4}
            for r in reversed(reference)]  # another order: matched by name, not position
    result = compare_records(_record("dictsr", mine), _record("bicubic", reference), metrics=("psnr_rgb", "lpips_alex", "ssim_rgb"))
    assert set(result) == {"psnr_rgb", "lpips_alex"}, "a metric the rows lack is left out"
    assert result["psnr_rgb"]["mean_diff"] == pytest.approx(np.mean(list(shift.values())))
    assert result["psnr_rgb"]["clusters"] == 6 and result["psnr_rgb"]["n"] == 18
    assert result["lpips_alex"]["mean_diff"] == pytest.approx(-0.1)
    with_photo = [{**row, "photo": "all-one"} for row in mine]
    assert compare_records(_record("dictsr", with_photo), _record("bicubic", reference))["psnr_rgb"]["clusters"] == 1


def test_compare_records_with_different_images_names_both_runs():
    one = _record("dictsr-main", [{"name": "a", "psnr_rgb": 1.0}, {"name": "b", "psnr_rgb": 1.0}])
    other = _record("bicubic", [{"name": "a", "psnr_rgb": 1.0}, {"name": "c", "psnr_rgb": 1.0}])
    with pytest.raises(ComparisonError) as error:
        compare_records(one, other)
    message = str(error.value)
    assert "'dictsr-main'" in message and "'bicubic'" in message and "['b']" in message and "['c']" in message


# ---- regions ------------------------------------------------------------------------------

def test_half_flat_half_noisy_image_splits_in_two_with_the_right_masked_psnrs():
    rng = np.random.default_rng(7)
    ref = np.full((32, 48, 3), 120, dtype=np.uint8)
    ref[:, 24:] = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)  # right half: noisy (block std >> 3)
    pred = np.clip(ref.astype(int) + rng.integers(-6, 7, ref.shape), 0, 255).astype(np.uint8)
    scores = region_scores(pred, ref)
    assert scores["flat_fraction"] == 0.5
    flat = np.zeros((32, 48), dtype=bool)
    flat[:, :24] = True

    def psnr(mask):
        mse = np.mean((pred[mask].astype(np.float64) - ref[mask].astype(np.float64)) ** 2)
        return 10 * np.log10(255.0**2 / mse)

    assert scores["psnr_rgb_flat"] == pytest.approx(psnr(flat), rel=1e-12)
    assert scores["psnr_rgb_textured"] == pytest.approx(psnr(~flat), rel=1e-12)
    assert scores["psnr_rgb_flat"] != pytest.approx(scores["psnr_rgb_textured"], rel=1e-3)


def test_block_flatness_uses_the_luma_std_threshold_of_3():
    ref = np.zeros((8, 16, 3), dtype=np.uint8)
    ref[:, :8] = np.where(np.arange(8) % 2, 102, 98)[None, :, None]  # luma std exactly 2: flat
    ref[:, 8:] = np.where(np.arange(8) % 2, 104, 96)[None, :, None]  # luma std 4: textured
    assert flat_blocks(ref).tolist() == [[True, False]]
    coloured = np.full((8, 16, 3), 100, dtype=np.uint8)
    coloured[:, :8, 0] = np.where(np.arange(8) % 2, 20, 0)[None, :]  # red 0 / 20: luma std 0.299 * 10 = 2.99, flat
    coloured[:, 8:, 1] = np.where(np.arange(8) % 2, 12, 0)[None, :]  # green 0 / 12: luma std 0.587 * 6 = 3.52
    assert flat_blocks(coloured).tolist() == [[True, False]]


def test_images_without_flat_or_textured_blocks_give_nan_and_edges_form_smaller_blocks():
    flat = np.full((20, 20, 3), 50, dtype=np.uint8)  # 3 x 3 blocks, the last row / column 4 pixels wide
    assert flat_blocks(flat).shape == (3, 3)
    scores = region_scores(flat, flat)
    assert scores["flat_fraction"] == 1.0 and scores["psnr_rgb_flat"] == math.inf
    assert math.isnan(scores["psnr_rgb_textured"])
