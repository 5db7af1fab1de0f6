import numpy as np
import pytest

from dictsr_core.data.degradations import make_degradation
from dictsr_core.evaluation.index_consistency import (agreement, agreement_map, clean_lr, image_agreement,
                                                      validation_agreement)


def test_agreement_counts_equal_cells():
    a = np.arange(20).reshape(4, 5)
    b = a.copy()
    assert agreement(a, b) == 1.0
    b[0, :] = -1  # 5 of 20 cells changed
    assert agreement(a, b) == pytest.approx(0.75)
    assert agreement_map(a, b).sum() == 15
    with pytest.raises(ValueError, match="shape"):
        agreement(a, b[:, :4])


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def test_clean_lr_is_the_degradation_without_noise_or_jpeg():
    hr = photo(64, 96)
    bicubic_only = make_degradation("aim", noise_sigma=0.0, jpeg_quality=None)
    assert np.array_equal(clean_lr(hr), bicubic_only(hr, [0, 1]))
    with pytest.raises(ValueError, match="multiple of 4"):
        clean_lr(hr[:63])


def test_known_answers_on_a_model(tiny_inference):
    hr = photo(64, 96, seed=3)
    # the degraded LR *is* the clean LR, and the "degradation" is deterministic: full agreement both ways
    same = image_agreement(tiny_inference, clean_lr(hr), hr, name="x",
                           degradation=make_degradation("aim", noise_sigma=0.0, jpeg_quality=None), tile=None)
    assert same["index_agreement"] == 1.0 and same["index_agreement_draws"] == 1.0
    # an unrelated LR image: the maps disagree somewhere; real noise draws differ from each other too
    other = image_agreement(tiny_inference, clean_lr(photo(64, 96, seed=9))[:, ::-1].copy(), hr, name="x",
                            degradation=make_degradation("aim", noise_sigma=40.0, jpeg_quality=None), tile=None,
                            keep_maps=True)
    assert other["index_agreement"] < 1.0
    assert other["index_agreement_draws"] < 1.0
    assert other["maps"]["clean"].shape == (8, 12)  # one cell per 2x2 LR pixels of the tiny preset


def test_validation_agreement_means_and_tiling(tiny_inference):
    hr_a, hr_b = photo(64, 64, seed=1), photo(64, 64, seed=2)
    pairs = [{"name": "a", "lr": clean_lr(hr_a), "hr": hr_a},
             {"name": "b", "lr": clean_lr(hr_b)[::-1].copy(), "hr": hr_b}]
    whole = validation_agreement(tiny_inference, pairs, tile=None)
    tiled = validation_agreement(tiny_inference, pairs, tile=8)
    assert whole["images"]["a"]["index_agreement"] == 1.0
    assert whole["images"]["b"]["index_agreement"] < 1.0
    assert whole["summary"]["index_agreement"] == pytest.approx(
        (1.0 + whole["images"]["b"]["index_agreement"]) / 2)
    assert whole["summary"]["index_agreement_draws"] is None  # no degradation recipe given
    assert tiled["summary"] == whole["summary"]


def test_agreement_figure_shows_both_maps_and_where_they_agree():
    from dictsr_core.analysis.figures.index_agreement import index_agreement_figure

    lr = np.zeros((8, 8, 3), np.uint8)
    clean = np.arange(16).reshape(4, 4)
    degraded = clean.copy()
    degraded[:, :1] = 99  # 4 of 16 cells differ
    rows = [{"name": "a", "index_agreement": 0.75}, {"name": "b", "index_agreement": 0.2}]
    figure = index_agreement_figure(lr, lr, clean, degraded, entries=100, name="a", rows=rows)
    titles = [ax.get_title() for ax in figure.axes]
    assert "agreement 75% of cells" in titles
    assert len(figure.axes) == 6  # two LR images, two index maps, the agreement map, the per-image bars
    shown = figure.axes[4].images[0].get_array()
    assert shown.sum() == 12 and shown[:, 0].sum() == 0


def test_agreement_worth_is_zero_when_the_maps_agree(tiny_inference):
    from dictsr_core.evaluation.index_consistency import agreement_worth

    hr = photo(64, 64, seed=4)
    same = agreement_worth(tiny_inference, clean_lr(hr), hr)
    assert same["index_agreement"] == 1.0 and same["agreement_near8"] == 1.0
    assert same["psnr_own_indices"] == same["psnr_clean_indices"]
    noisy = np.clip(clean_lr(hr).astype(int) + np.random.default_rng(0).normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
    moved = agreement_worth(tiny_inference, noisy, hr)
    assert moved["index_agreement"] <= moved["agreement_near8"] <= 1.0 and moved["index_agreement"] < 1.0
    # a window smaller than the pair: the central 8x8 LR pixels on the 4-pixel grid, and their 32x32 HR
    central = agreement_worth(tiny_inference, noisy, hr, window=8)
    assert central == agreement_worth(tiny_inference, noisy[4:12, 4:12], hr[16:48, 16:48])
    assert central["psnr_own_indices"] != moved["psnr_own_indices"]
    with pytest.raises(ValueError, match="not 4x"):
        agreement_worth(tiny_inference, noisy, hr[:60])


def test_cell_geometry_measures_shift_and_margin_in_entry_spacings():
    import torch

    from dictsr_core.evaluation.index_consistency import cell_geometry, entry_spacing

    grid = torch.stack(torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    entries = grid * 0.02  # spacing 0.02: the answers below are in spacings, whatever the scale
    assert entry_spacing(entries) == pytest.approx(0.02)
    inner = entries[(grid[:, 0] % 4 != 0) & (grid[:, 1] % 4 != 0)]  # the 9 entries with all four neighbours
    clean = inner + torch.tensor([0.1, 0.0]) * 0.02  # 0.4 spacings from the boundary toward x+1
    found = cell_geometry(clean, clean + torch.tensor([0.3, 0.4]) * 0.02, entries)
    assert found["index_shift"] == pytest.approx(0.5, rel=1e-4)
    assert found["index_margin"] == pytest.approx(0.4, rel=1e-4)
    one_row_at_a_time = cell_geometry(clean, clean + torch.tensor([0.3, 0.4]) * 0.02, entries, chunk_elements=1)
    assert one_row_at_a_time == pytest.approx(found)
    with pytest.raises(ValueError, match="shape"):
        cell_geometry(clean, clean[:3], entries)


def test_image_agreement_reports_the_cell_geometry(tiny_inference):
    hr = photo(64, 64, seed=4)
    same = image_agreement(tiny_inference, clean_lr(hr), hr, tile=None)
    assert same["index_shift"] == 0.0 and same["index_margin"] > 0
    # what perfect agreement would buy: nothing when the maps already agree
    assert same["index_agreement_near8"] == 1.0
    assert same["psnr_rgb_own_indices"] == same["psnr_rgb_clean_indices"]
    assert same["lpips_alex_own_indices"] == same["lpips_alex_clean_indices"] >= 0
    noisy = make_degradation("aim", noise_sigma=40.0, jpeg_quality=None)(hr, [0, 1])
    moved = image_agreement(tiny_inference, noisy, hr, tile=None)
    assert moved["index_shift"] > 0
    assert moved["lpips_alex_own_indices"] != moved["lpips_alex_clean_indices"]
    assert image_agreement(tiny_inference, noisy, hr, tile=None, worth=False).get("lpips_alex_own_indices") is None


# ---------------------------------------------------------------- kappa and mutual information (peers issue)

def _brute_force_mi(a, b) -> float:
    """Mutual information in bits by a loop over the joint table (an independent computation)."""
    a, b = list(np.asarray(a).reshape(-1)), list(np.asarray(b).reshape(-1))
    n = len(a)
    joint, pa, pb = {}, {}, {}
    for x, y in zip(a, b):
        joint[(x, y)] = joint.get((x, y), 0) + 1
        pa[x] = pa.get(x, 0) + 1
        pb[y] = pb.get(y, 0) + 1
    return sum(c / n * np.log2((c / n) / (pa[x] / n * pb[y] / n)) for (x, y), c in joint.items())


def test_kappa_and_mi_of_identical_maps():
    from dictsr_core.evaluation.index_consistency import cohen_kappa, mutual_information_bits

    a = np.repeat(np.arange(8), 16)  # 8 entries used equally: 3 bits
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert mutual_information_bits(a, a) == pytest.approx(3.0)


def test_independent_maps_with_skewed_usage_have_kappa_near_zero_though_agreement_is_high():
    from dictsr_core.evaluation.index_consistency import agreement, cohen_kappa, mutual_information_bits

    rng = np.random.default_rng(0)
    usage = [0.9, 0.05, 0.03, 0.02]  # one entry takes 90 % of the cells in both maps
    a, b = rng.choice(4, 20000, p=usage), rng.choice(4, 20000, p=usage)
    assert agreement(a, b) > 0.8  # what raw agreement would report
    assert abs(cohen_kappa(a, b)) < 0.03
    assert mutual_information_bits(a, b) < 0.01
    assert mutual_information_bits(a, b) == pytest.approx(_brute_force_mi(a, b), abs=1e-12)


def test_a_one_entry_code_has_no_kappa_and_no_information():
    from dictsr_core.evaluation.index_consistency import agreement, cohen_kappa, mutual_information_bits

    a = np.zeros(100, int)
    assert agreement(a, a) == 1.0  # the gameable number
    assert cohen_kappa(a, a) is None  # chance agreement is 1: undefined, not 1
    assert mutual_information_bits(a, a) == 0.0


def test_kappa_by_hand_and_mi_against_a_loop():
    from dictsr_core.evaluation.index_consistency import cohen_kappa, mutual_information_bits

    a = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    b = np.array([0, 1, 1, 1, 2, 0, 2, 0])
    observed = 6 / 8
    chance = (3 / 8) * (3 / 8) + (2 / 8) * (3 / 8) + (3 / 8) * (2 / 8)
    assert cohen_kappa(a, b) == pytest.approx((observed - chance) / (1 - chance))
    assert mutual_information_bits(a, b) == pytest.approx(_brute_force_mi(a, b), abs=1e-12)
    with pytest.raises(ValueError):
        cohen_kappa(a, b[:-1])
