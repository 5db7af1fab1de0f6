"""The optional wavelet colour fix: low band from the bicubic LR, high bands from the SR image."""

import numpy as np
import pytest
import torch

from dictsr_core.data.resize import imresize_np
from dictsr_core.inference.color_fix import low_band, wavelet_color_fix
from dictsr_core.inference.tiled import super_resolve


def _lr(seed=0, h=24, w=20):
    rng = np.random.default_rng(seed)
    smooth = np.linspace(40, 200, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def test_low_band_keeps_constants_and_removes_fine_detail():
    flat = torch.full((1, 3, 32, 32), 77.0)
    assert torch.allclose(low_band(flat), flat)
    checker = torch.from_numpy((np.indices((32, 32)).sum(0) % 2 * 255.0).astype(np.float32))[None, None]
    assert float(low_band(checker).std()) < 0.02 * float(checker.std())


def test_fix_moves_a_colour_cast_back_and_keeps_the_detail():
    lr = _lr()
    reference = imresize_np(lr, 4).astype(np.int16)
    rng = np.random.default_rng(1)
    detail = rng.normal(0, 10, reference.shape)
    cast = np.array([25, -15, 30])  # a wrong colour over the whole image, plus fine detail
    sr = np.clip(reference + cast + detail, 0, 255).astype(np.uint8)
    fixed = wavelet_color_fix(sr, lr)
    assert fixed.dtype == np.uint8 and fixed.shape == sr.shape
    assert np.abs(fixed.reshape(-1, 3).mean(0) - reference.reshape(-1, 3).mean(0)).max() < 1.5
    assert np.abs(sr.reshape(-1, 3).mean(0) - reference.reshape(-1, 3).mean(0)).max() > 14
    high = lambda x: x.astype(float) - low_band(torch.from_numpy(x).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()  # noqa: E731
    assert np.corrcoef(high(fixed).ravel(), high(sr).ravel())[0, 1] > 0.95  # the SR's detail survives


def test_fix_checks_the_scale_and_super_resolve_checks_the_name(tiny_inference):
    with pytest.raises(ValueError, match=r"color fix: SR \(80, 80\) is not 4x the LR \(24, 20\)"):
        wavelet_color_fix(np.zeros((80, 80, 3), np.uint8), _lr())
    with pytest.raises(ValueError, match="color_fix: 'auto' is not one of none, wavelet"):
        super_resolve(tiny_inference, _lr(), color_fix="auto")
    tiled = super_resolve(tiny_inference, _lr(), tile=8, color_fix="wavelet")
    whole = super_resolve(tiny_inference, _lr(), tile=0, color_fix="wavelet")
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # the fix runs on the assembled image
