"""The equal-budget peers' degradations: Real-ESRGAN's second-order pipeline against its published options, and the
noise-injection recipe's kernel estimator on photos blurred by a known amount."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skimage import data as skdata

from dictsr_core.data.noise_injection import NoiseInjectionDegradation, blurred_lr, estimate_sigmas
from dictsr_core.data.realesrgan_degradation import (KERNEL_TYPES, RealESRGANDegradation, anisotropic_kernel,
                                                     sinc_kernel)

# transcribed from Real-ESRGAN's options/train_realesrgan_x4plus.yml (an independent copy of the published values)
PUBLISHED = {
    "kernel_range": (7, 21), "kernel_prob": (0.45, 0.25, 0.12, 0.03, 0.12, 0.03), "sinc_prob": 0.1,
    "blur_sigma": (0.2, 3.0), "betag_range": (0.5, 4.0), "betap_range": (1.0, 2.0),
    "resize_prob": (0.2, 0.7, 0.1), "resize_range": (0.15, 1.5), "gaussian_noise_prob": 0.5,
    "noise_range": (1.0, 30.0), "poisson_scale_range": (0.05, 3.0), "gray_noise_prob": 0.4, "jpeg_range": (30, 95),
    "second_blur_prob": 0.8, "sinc_prob2": 0.1, "blur_sigma2": (0.2, 1.5), "betag_range2": (0.5, 4.0),
    "betap_range2": (1.0, 2.0), "resize_prob2": (0.3, 0.4, 0.3), "resize_range2": (0.3, 1.2),
    "gaussian_noise_prob2": 0.5, "noise_range2": (1.0, 25.0), "poisson_scale_range2": (0.05, 2.5),
    "gray_noise_prob2": 0.4, "jpeg_range2": (30, 95), "final_sinc_prob": 0.8,
}


def test_the_defaults_are_the_published_options():
    fields = {f.name: f.default for f in dataclasses.fields(RealESRGANDegradation)}
    assert {key: fields[key] for key in PUBLISHED} == PUBLISHED
    assert KERNEL_TYPES == ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def test_kernel_draws_stay_in_the_published_ranges_with_the_published_frequencies():
    deg = RealESRGANDegradation()
    rng = np.random.default_rng(0)
    draws = [deg.draw_kernel(rng)[1] for _ in range(3000)]
    sizes = {d["size"] for d in draws}
    assert sizes <= set(range(7, 22, 2)) and len(sizes) == 8
    sinc = [d for d in draws if d["type"] == "sinc"]
    assert abs(len(sinc) / len(draws) - 0.1) < 0.02
    assert all(np.pi / 5 <= d["cutoff"] <= np.pi for d in sinc)
    assert all(np.pi / 3 <= d["cutoff"] for d in sinc if d["size"] < 13)
    gaussian = [d for d in draws if d["type"] != "sinc"]
    for kind, p in zip(KERNEL_TYPES, PUBLISHED["kernel_prob"]):
        share = sum(d["type"] == kind for d in gaussian) / len(gaussian)
        assert abs(share - p) < 0.03, kind
    assert all(0.2 <= d["sigma_x"] <= 3.0 and 0.2 <= d["sigma_y"] <= 3.0 for d in gaussian)
    assert all(d["sigma_x"] == d["sigma_y"] and d["rotation"] == 0 for d in gaussian if d["type"].endswith("_iso")
               or d["type"] == "iso")
    assert all(0.5 <= d["beta"] <= 4.0 for d in gaussian if d["type"].startswith("generalized"))
    assert all(1.0 <= d["beta"] <= 2.0 for d in gaussian if d["type"].startswith("plateau"))
    second = [deg.draw_kernel(rng, second=True)[1] for _ in range(500)]
    assert all(0.2 <= d["sigma_x"] <= 1.5 for d in second if d["type"] != "sinc")


def test_resize_draws_follow_the_up_down_keep_split():
    deg = RealESRGANDegradation()
    rng = np.random.default_rng(1)
    first = np.array([deg.draw_scale(rng) for _ in range(4000)])
    assert first.min() >= 0.15 and first.max() <= 1.5
    assert abs(np.mean(first > 1) - 0.2) < 0.03 and abs(np.mean(first < 1) - 0.7) < 0.03
    assert abs(np.mean(first == 1) - 0.1) < 0.02
    second = np.array([deg.draw_scale(rng, second=True) for _ in range(4000)])
    assert second.min() >= 0.3 and second.max() <= 1.2 and abs(np.mean(second == 1) - 0.3) < 0.03


def test_kernels_are_normalised_and_match_their_formulas():
    iso = anisotropic_kernel(21, 2.0, 2.0, 0.0)
    x = np.arange(-10, 11)
    by_hand = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(iso, by_hand / by_hand.sum(), rtol=1e-12)
    rotated = anisotropic_kernel(21, 3.0, 1.0, np.pi / 2)
    np.testing.assert_allclose(rotated, anisotropic_kernel(21, 1.0, 3.0, 0.0), atol=1e-12)  # a quarter turn swaps axes
    np.testing.assert_allclose(anisotropic_kernel(21, 3.0, 1.0, 0.0), anisotropic_kernel(21, 1.0, 3.0, 0.0).T, atol=1e-15)
    for kernel in (anisotropic_kernel(15, 1.5, 0.7, 0.3, "generalized", 2.0),
                   anisotropic_kernel(15, 1.5, 0.7, 0.3, "plateau", 1.5), sinc_kernel(13, np.pi / 2)):
        assert kernel.sum() == pytest.approx(1.0) and kernel.shape in ((15, 15), (13, 13))
    wide = sinc_kernel(21, np.pi)
    assert np.argmax(wide) == wide.size // 2


def test_the_pipeline_gives_a_quarter_size_uint8_lr_deterministically():
    hr = skdata.astronaut()[:96, :128]
    deg = RealESRGANDegradation()
    first = deg(hr, np.random.default_rng(5))
    assert first.shape == (24, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, deg(hr, np.random.default_rng(5)))
    assert not np.array_equal(first, deg(hr, np.random.default_rng(6)))
    with pytest.raises(ValueError, match="multiple of 4"):
        deg(hr[:95], 0)


def _photos():
    return [skdata.astronaut(), skdata.coffee()[:, :512], skdata.chelsea(), skdata.rocket()]


@pytest.mark.slow
def test_the_kernel_estimator_finds_a_known_blur_and_sees_through_noise():
    hr = _photos()
    rng = np.random.default_rng(0)
    patches = np.round(rng.normal(0, 3, (64, 24, 24, 3))).astype(np.int16)
    patches -= np.round(patches.mean(axis=(1, 2), keepdims=True)).astype(np.int16)

    def lr_set(sigma, noise):
        out = []
        for image in hr:
            lr = blurred_lr(image, sigma) + rng.normal(0, noise, blurred_lr(image, 0).shape)
            out.append(np.clip(np.round(lr), 0, 255).astype(np.uint8))
        return out

    sharp, _ = estimate_sigmas(lr_set(0.0, 3.0), hr, patches)
    blurred, record = estimate_sigmas(lr_set(1.5, 3.0), hr, patches)
    assert np.median(sharp) <= 0.5
    assert 1.0 <= np.median(blurred) <= 2.0
    assert set(record) >= {"reference_falloff", "noise_energy", "falloff", "sigmas"} and record["fallback"] is None
    loud = np.round(rng.normal(0, 200, (64, 24, 24, 3))).astype(np.int16)  # noise that drowns every photo's signal
    assert estimate_sigmas(lr_set(1.5, 3.0), hr, loud)[0] == [0.0]
    assert "bicubic alone" in estimate_sigmas(lr_set(1.5, 3.0), hr, loud)[1]["fallback"]


def test_noise_injection_uses_its_kernels_noise_and_jpeg():
    hr = skdata.astronaut()[:96, :96]
    flat = np.zeros((4, 8, 8, 3), np.int16)
    clean = NoiseInjectionDegradation((0.0,), flat)(hr, 0)
    np.testing.assert_array_equal(clean, np.clip(np.floor(blurred_lr(hr, 0.0) + 0.5), 0, 255).astype(np.uint8))
    noisy = NoiseInjectionDegradation((0.0,), np.full((4, 8, 8, 3), 7, np.int16))(hr, 0)
    assert np.mean(noisy.astype(int) - clean) == pytest.approx(7, abs=0.5)
    jpeg = NoiseInjectionDegradation((0.0,), flat, jpeg_quality=10)(hr, 0)
    assert jpeg.shape == (24, 24, 3) and not np.array_equal(jpeg, clean)
    recipe = NoiseInjectionDegradation((0.5, 1.0), flat, 20).recipe()
    assert recipe["sigmas"] == [0.5, 1.0] and recipe["jpeg_quality"] == 20 and recipe["noise_patches"] == 4
