"""Metrics against independent computations: BasicSR's SSIM formula, hand-computed BT.601 luma, known histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from dictsr_core.evaluation.metrics import (
                                            codebook_usage,
                                            lpips_distance,
                                            psnr_rgb,
                                            psnr_y,
                                            rgb_to_y,
                                            score_pair,
                                            hf_energy_ratio,
                                            ssim_rgb,
                                            ssim_rgb_gauss,
                                            ssim_y,
                                            )


def _image_pair(seed: int = 0, shape=(37, 53, 3), noise: float = 12.0):
    """A structured reference (gradients + texture) and a noisy prediction, both uint8 RGB."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = np.stack([2 * rows + cols, 255 - 3 * cols, 128 + 60 * np.sin(rows / 3.0)], axis=-1)
    ref = np.clip(base + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)
    pred = np.clip(ref + rng.normal(0, noise, shape), 0, 255).astype(np.uint8)
    return pred, ref


# ---------------------------------------------------------------- independent references

def _reference_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10.0 * math.log10(255.0**2 / mse)


def _basicsr_ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR `_ssim`: 11x11 Gaussian (sigma 1.5) filter, 'valid' region only, written out with numpy."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()
    window = np.outer(taps, taps)

    def filtered(x):
        return np.einsum("ijkl,kl->ij", np.lib.stride_tricks.sliding_window_view(x, (11, 11)), window)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filtered(a), filtered(b)
    var_a = filtered(a * a) - mu_a**2
    var_b = filtered(b * b) - mu_b**2
    cov = filtered(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def _hand_y(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., c].astype(np.float64) for c in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


# ---------------------------------------------------------------- PSNR / SSIM

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_rgb_matches_the_mse_formula(seed):
    pred, ref = _image_pair(seed)
    assert psnr_rgb(pred, ref) == pytest.approx(_reference_psnr(pred, ref), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_rgb_gauss_matches_basicsr_formula_averaged_over_channels(seed):
    pred, ref = _image_pair(seed)
    expected = np.mean([_basicsr_ssim_channel(pred[..., c], ref[..., c]) for c in range(3)])
    assert ssim_rgb_gauss(pred, ref) == pytest.approx(expected, abs=1e-6)


def _measure_ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """DeFlow/SRFlow Measure.py's SSIM written out: scikit-image's defaults, a 7x7 uniform window, sample
    covariance (49/48), data range 255, the mean over the pixels 3 or more from the border."""
    a, b = a.astype(np.float64), b.astype(np.float64)

    def filtered(x):
        return np.lib.stride_tricks.sliding_window_view(x, (7, 7)).mean(axis=(-1, -2))

    c1, c2, norm = (0.01 * 255) ** 2, (0.03 * 255) ** 2, 49 / 48
    mu_a, mu_b = filtered(a), filtered(b)
    var_a, var_b = norm * (filtered(a * a) - mu_a**2), norm * (filtered(b * b) - mu_b**2)
    cov = norm * (filtered(a * b) - mu_a * mu_b)
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_rgb_follows_measure_py(seed):
    """The paper's tables follow Measure.py: skimage's structural_similarity with its defaults; against that call
    itself and against the formula written out."""
    from skimage.metrics import structural_similarity

    pred, ref = _image_pair(seed)
    assert ssim_rgb(pred, ref) == pytest.approx(structural_similarity(ref, pred, channel_axis=-1), abs=1e-12)
    expected = np.mean([_measure_ssim_channel(pred[..., c], ref[..., c]) for c in range(3)])
    assert ssim_rgb(pred, ref) == pytest.approx(expected, abs=1e-9)
    assert abs(ssim_rgb(pred, ref) - ssim_rgb_gauss(pred, ref)) > 1e-3  # the two conventions really differ


def test_ssim_rgb_refuses_float_images():
    pred, ref = _image_pair(0)
    with pytest.raises(ValueError, match="uint8"):
        ssim_rgb(pred.astype(np.float64), ref)


def test_hf_energy_ratio_flags_smoothing_and_noise():
    _, ref = _image_pair(0, shape=(64, 64, 3))
    blurred = np.asarray(Image.fromarray(ref).resize((16, 16), Image.BICUBIC).resize((64, 64), Image.BICUBIC))
    noisy = np.clip(ref + np.random.default_rng(3).normal(0, 30, ref.shape), 0, 255).astype(np.uint8)
    assert hf_energy_ratio(ref, ref) == pytest.approx(1.0)
    assert hf_energy_ratio(blurred, ref) < 0.5 < 1.5 < hf_energy_ratio(noisy, ref)
    # by hand: a single bright pixel has Laplacian energy 16 + 4 x 1 over the interior, scaled by its luma squared
    spot = np.zeros((5, 5, 3), np.uint8)
    spot[2, 2] = 100
    flat = np.zeros_like(spot)
    flat[2, 2] = 50
    assert hf_energy_ratio(spot, flat) == pytest.approx(4.0)
    assert math.isnan(hf_energy_ratio(spot, np.zeros_like(spot)))


def test_ssim_decreases_with_more_noise():
    _, ref = _image_pair(0)
    slightly, _ = _image_pair(0, noise=4.0)
    heavily, _ = _image_pair(0, noise=40.0)
    assert 1.0 > ssim_rgb(slightly, ref) > ssim_rgb(heavily, ref)
    assert ssim_y(slightly, ref) > ssim_y(heavily, ref)


def test_rgb_to_y_matches_hand_computed_bt601_values():
    pixels = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    expected = [235.0, 16.0, 81.481, 144.553, 40.966, 16.0 + 3974.85 / 255.0]
    y = rgb_to_y(pixels)
    assert y.dtype == np.float64 and y.shape == (1, 6)
    np.testing.assert_allclose(y[0], expected, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_y_metrics_crop_first_then_convert(seed):
    pred, ref = _image_pair(seed)
    pred_y, ref_y = _hand_y(pred[4:-4, 4:-4]), _hand_y(ref[4:-4, 4:-4])
    assert psnr_y(pred, ref) == pytest.approx(_reference_psnr(pred_y, ref_y), abs=1e-6)
    assert ssim_y(pred, ref) == pytest.approx(_basicsr_ssim_channel(pred_y, ref_y), abs=1e-6)


def test_y_crop_ignores_border_differences():
    _, ref = _image_pair(0)
    pred = ref.copy()
    pred[:4] = 255 - pred[:4]
    pred[:, -4:] = 0
    assert psnr_y(pred, ref, crop=4) == math.inf
    assert ssim_y(pred, ref, crop=4) == pytest.approx(1.0)
    assert psnr_y(pred, ref, crop=0) < 30
    assert psnr_rgb(pred, ref) < 30  # RGB metrics use the whole image


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    _, ref = _image_pair(3)
    assert psnr_rgb(ref, ref.copy()) == math.inf
    assert psnr_y(ref, ref.copy()) == math.inf
    assert ssim_rgb(ref, ref.copy()) == pytest.approx(1.0, abs=1e-12)
    assert ssim_y(ref, ref.copy()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("metric", [psnr_rgb, ssim_rgb, psnr_y, ssim_y, lpips_distance, score_pair])
def test_mismatched_shapes_are_reported_with_both_shapes(metric):
    pred = np.zeros((32, 40, 3), np.uint8)
    ref = np.zeros((32, 44, 3), np.uint8)
    with pytest.raises(ValueError) as info:
        metric(pred, ref)
    assert "(32, 40, 3)" in str(info.value) and "(32, 44, 3)" in str(info.value)


def test_non_uint8_input_is_refused_with_its_role():
    _, ref = _image_pair(0)
    with pytest.raises(ValueError, match=r"pred must be a uint8 HxWx3.*float32"):
        psnr_rgb(ref.astype(np.float32) / 255, ref)


def test_ssim_refuses_images_smaller_than_the_window():
    tiny = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="11x11"):
        ssim_rgb_gauss(tiny, tiny)
    with pytest.raises(ValueError, match="7x7"):
        ssim_rgb(tiny[:6, :6], tiny[:6, :6])


# ---------------------------------------------------------------- LPIPS and the JSON row

def _read_rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_lpips_distance_reproduces_a_published_value_from_uint8(weights_cache, calibration_dir):
    calibration = calibration_dir
    dist = _read_rgb(calibration / "dist" / "I03.bmp")
    ref = _read_rgb(calibration / "ref" / "I03.bmp")
    assert lpips_distance(dist, ref, net="alex", device="cpu") == pytest.approx(0.7237, abs=5e-4)


def test_lpips_distance_is_zero_for_identical_images_and_grows_with_noise(weights_cache):
    slightly, ref = _image_pair(0, shape=(64, 64, 3), noise=4.0)
    heavily, _ = _image_pair(0, shape=(64, 64, 3), noise=40.0)
    for net in ("alex", "vgg"):
        assert lpips_distance(ref, ref.copy(), net=net, device="cpu") == pytest.approx(0.0, abs=1e-6)
        assert 0 < lpips_distance(slightly, ref, net=net, device="cpu") < lpips_distance(heavily, ref, net=net, device="cpu")


def test_lpips_with_the_reference_features_kept_is_lpips_forward_exactly(weights_cache):
    from dictsr_core.evaluation.metrics import ReferenceFeatures, rgb_uint8_to_lpips_input
    from dictsr_core.perceptual.lpips_models import build_lpips

    preds = [_image_pair(seed, shape=(40, 56, 3), noise=noise)[0] for seed, noise in ((2, 6.0), (2, 30.0))]
    ref = _image_pair(2, shape=(40, 56, 3))[1]
    other = _image_pair(3, shape=(40, 56, 3))[1]
    kept = ReferenceFeatures()
    for net in ("alex", "vgg"):
        model = build_lpips(net, device="cpu")
        for pred in preds:
            with torch.no_grad():
                forward = float(model(rgb_uint8_to_lpips_input(pred, "cpu"), rgb_uint8_to_lpips_input(ref, "cpu")))
            # bit for bit: the same operations in the same order, whether the reference was kept or not
            assert lpips_distance(pred, ref, net=net, device="cpu", reference_cache=kept) == forward
            assert lpips_distance(pred, ref, net=net, device="cpu", reference_cache=None) == forward
        # another reference (same shape) is another key, and the two nets do not share features
        assert lpips_distance(preds[0], other, net=net, device="cpu", reference_cache=kept) != \
            lpips_distance(preds[0], ref, net=net, device="cpu", reference_cache=kept)
    assert len(kept.features) == 4 and kept.used > 0
    full = ReferenceFeatures(max_bytes=kept.used // 8)  # too small for one VGG reference: computed, not kept
    assert lpips_distance(preds[1], ref, net="vgg", device="cpu", reference_cache=full) == \
        lpips_distance(preds[1], ref, net="vgg", device="cpu", reference_cache=None)
    assert all(key[0] != id(build_lpips("vgg", device="cpu")) for key in full.features) and full.used <= full.max_bytes
    kept.clear()
    assert kept.features == {} and kept.used == 0


def test_score_pair_row_agrees_with_the_individual_metrics(weights_cache):
    pred, ref = _image_pair(1, shape=(48, 40, 3))
    row = score_pair(pred, ref, device="cpu")
    assert list(row) == ["psnr_rgb", "ssim_rgb", "ssim_rgb_gauss", "psnr_y", "ssim_y", "lpips_alex", "lpips_vgg",
                         "hf_energy_ratio"]
    assert all(isinstance(value, float) for value in row.values())
    assert row["psnr_rgb"] == psnr_rgb(pred, ref)
    assert row["ssim_rgb"] == ssim_rgb(pred, ref) and row["ssim_rgb_gauss"] == ssim_rgb_gauss(pred, ref)
    assert row["hf_energy_ratio"] == hf_energy_ratio(pred, ref)
    assert row["ssim_y"] == ssim_y(pred, ref)
    assert row["lpips_alex"] == pytest.approx(lpips_distance(pred, ref, net="alex", device="cpu"), abs=1e-7)
    assert row["lpips_vgg"] == pytest.approx(lpips_distance(pred, ref, net="vgg", device="cpu"), abs=1e-7)
    assert row["lpips_alex"] != row["lpips_vgg"]


# ---------------------------------------------------------------- codebook health

def test_codebook_usage_on_a_known_index_set():
    usage = codebook_usage(torch.tensor([[0, 0], [1, 3]]), num_entries=5)
    assert usage["activated"] == 3
    assert usage["histogram"].tolist() == [2, 1, 0, 1, 0]
    # p = (1/2, 1/4, 1/4): entropy 1.5 ln 2, so perplexity 2 ** 1.5
    assert usage["perplexity"] == pytest.approx(2**1.5, abs=1e-12)


def test_codebook_perplexity_is_the_count_of_equally_used_entries():
    usage = codebook_usage(torch.arange(7).repeat(3), num_entries=16)
    assert usage["activated"] == 7
    assert usage["perplexity"] == pytest.approx(7.0, abs=1e-9)
    collapsed = codebook_usage(torch.full((50,), 4), num_entries=16)
    assert collapsed["activated"] == 1 and collapsed["perplexity"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "indices, message",
    [
        (torch.tensor([0, 5]), r"\[0, 5\].*\[0, 4\]"),
        (torch.tensor([-1, 2]), r"\[-1, 2\]"),
        (torch.tensor([0.0, 1.0]), "integer"),
        (torch.tensor([], dtype=torch.long), "empty"),
    ],
)
def test_codebook_usage_rejects_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        codebook_usage(indices, num_entries=5)
