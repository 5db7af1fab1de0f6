"""Synthetic degradations: noise statistics, JPEG blocking, correlation, seeding."""

import numpy as np
import pytest

from dictsr_core.data.degradations import (DEGRADATIONS, AimDegradation, NtireDegradation, correlated_noise,
                                           degrade_aim, degrade_ntire, gaussian_noise)


def _flat(value=128, size=512):
    return np.full((size, size, 3), value, dtype=np.uint8)


def _lag1_correlation(noise):
    a = noise - noise.mean()
    return float(np.mean(a[:, 1:] * a[:, :-1]) / np.mean(a * a))


def _texture(size=512, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((size, size, 3)) * 255).astype(np.uint8)


def test_registry_names_both_recipes():
    assert set(DEGRADATIONS) == {"aim", "ntire"}
    assert DEGRADATIONS["aim"]().recipe()["noise_sigma"] == 8.0


def test_aim_noise_std_on_flat_image_matches_setting_without_jpeg():
    lr = degrade_aim(_flat(), rng=0, jpeg_quality=None)
    assert lr.shape == (128, 128, 3)
    measured = lr.astype(np.float64).std()
    assert measured == pytest.approx(8.0, rel=0.10)
    assert abs(_lag1_correlation(lr[..., 0].astype(np.float64))) < 0.1  # white


def test_ntire_noise_std_matches_setting_and_is_spatially_correlated():
    sigma = NtireDegradation().noise_sigma
    lr = degrade_ntire(_flat(), rng=0).astype(np.float64)
    assert lr.std() == pytest.approx(sigma, rel=0.10)
    white = degrade_aim(_flat(), rng=0, jpeg_quality=None).astype(np.float64)
    assert _lag1_correlation(lr[..., 1]) > 0.4
    assert _lag1_correlation(lr[..., 1]) > _lag1_correlation(white[..., 1]) + 0.3


def test_correlated_noise_channels_share_luminance():
    noise = correlated_noise((256, 256, 3), 10.0, 0.7, 0.3, np.random.default_rng(0))
    corr = np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]
    assert corr == pytest.approx(0.7, abs=0.05)
    assert noise.std() == pytest.approx(10.0, rel=0.05)


def test_gaussian_noise_std():
    assert gaussian_noise((400, 400), 8.0, np.random.default_rng(3)).std() == pytest.approx(8.0, rel=0.02)


def _blockiness(img):
    """Mean |horizontal gradient| across 8x8 block boundaries divided by that inside blocks."""
    grad = np.abs(np.diff(img.astype(np.float64).mean(axis=2), axis=1))
    columns = np.arange(grad.shape[1])
    at_boundary = (columns % 8) == 7  # between pixel 8k+7 and 8k+8
    return grad[:, at_boundary].mean() / grad[:, ~at_boundary].mean()


def test_aim_jpeg_leaves_8x8_blocking():
    # A smooth scene: q=30 flattens the noise inside each block but not across block edges.
    y, x = np.mgrid[0:512, 0:512]
    hr = np.repeat((128 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0)).astype(np.uint8)[..., None], 3, axis=2)
    blocky = degrade_aim(hr, rng=0)
    no_jpeg = degrade_aim(hr, rng=0, jpeg_quality=None)
    assert _blockiness(blocky) > 1.5
    assert _blockiness(no_jpeg) < 1.1


@pytest.mark.parametrize("recipe", [AimDegradation(), NtireDegradation()])
def test_same_seed_same_output_other_seed_differs(recipe):
    hr = _texture(64)
    np.testing.assert_array_equal(recipe(hr, 5), recipe(hr, 5))
    np.testing.assert_array_equal(recipe(hr, [1, 2]), recipe(hr, np.random.default_rng([1, 2])))
    assert not np.array_equal(recipe(hr, 5), recipe(hr, 6))


def test_degradation_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        degrade_aim(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        degrade_aim(np.zeros((64, 64), dtype=np.uint8))
