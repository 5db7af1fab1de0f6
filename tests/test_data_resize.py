"""MATLAB-compatible bicubic resize: hand-computed values, numpy/torch agreement, MATLAB output sizes."""

import numpy as np
import pytest
import torch
from PIL import Image

from dictsr_core.data.resize import contributions, imresize_np, imresize_torch, output_length

# Keys cubic, a = -0.5: cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625,
# cubic(1.25) = -0.0703125, cubic(1.75) = -0.0234375.


def test_downscale_by_two_matches_hand_computed_1d_values():
    # x1/2 of [1, 2, 3, 4]: output pixel 1 sits at u = 1.5; the kernel is widened to 8 and
    # scaled by 1/2, so taps k = -2..5 get 0.5*cubic((1.5 - k)/2):
    # [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875]
    # and the mirrored values at k = -2..5 are [3, 2, 1, 1, 2, 3, 4, 4]; the sum is 1.4609375.
    # The second output is the mirror image: 5 - 1.4609375.
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = imresize_np(row, (1.0, 0.5))
    np.testing.assert_allclose(out, [[1.4609375, 3.5390625]], atol=1e-12)


def test_upscale_by_two_matches_hand_computed_first_value():
    # x2 of [1, 2, 3, 4]: output pixel 1 sits at u = 0.75, taps k = -1..2 with weights
    # cubic(1.75), cubic(0.75), cubic(0.25), cubic(1.25) on mirrored values [2, 1, 1, 2].
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = imresize_np(row, (1.0, 2.0))
    assert out.shape == (1, 8)
    expected_first = -0.0234375 * 2 + 0.2265625 * 1 + 0.8671875 * 1 - 0.0703125 * 2
    assert out[0, 0] == pytest.approx(expected_first, abs=1e-12)
    assert out[0, 0] == pytest.approx(0.90625, abs=1e-12)


def test_weights_sum_to_one_and_indices_stay_in_range():
    indices, weights = contributions(37, output_length(37, 0.25), 0.25)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    assert indices.min() >= 0 and indices.max() < 37


def test_constant_image_stays_constant():
    img = np.full((33, 47, 3), 117, dtype=np.uint8)
    out = imresize_np(img, 0.25)
    assert out.dtype == np.uint8 and np.all(out == 117)


@pytest.mark.parametrize("size, scale, expected", [(256, 0.25, 64), (255, 0.25, 64), (257, 0.25, 65), (10, 1 / 3, 4), (7, 2, 14)])
def test_output_size_follows_matlab_ceil_rule(size, scale, expected):
    assert output_length(size, scale) == expected
    assert imresize_np(np.zeros((size, 5)), (scale, 1.0)).shape == (expected, 5)
    assert imresize_torch(torch.zeros(1, 1, size, 5), (scale, 1.0)).shape == (1, 1, expected, 5)


def test_interior_agrees_with_pillow_bicubic():
    # Pillow uses the same a = -0.5 antialiased kernel but another boundary rule, so only
    # pixels away from the border can be compared.
    rng = np.random.default_rng(1)
    img = rng.random((64, 80)) * 255
    ours = imresize_np(img, 0.25)
    pillow = np.asarray(Image.fromarray(img.astype(np.float32), "F").resize((20, 16), Image.BICUBIC), dtype=np.float64)
    np.testing.assert_allclose(ours[3:-3, 3:-3], pillow[3:-3, 3:-3], atol=1e-3)


@pytest.mark.parametrize("scale", [0.25, 0.5, 2.0, 1 / 3])
def test_numpy_and_torch_agree(scale):
    rng = np.random.default_rng(2)
    batch = rng.random((2, 3, 37, 50))
    expected = np.stack([np.stack([imresize_np(channel, scale) for channel in image]) for image in batch])
    got = imresize_torch(torch.tensor(batch, dtype=torch.float32), scale).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_torch_keeps_dtype_and_rejects_integers():
    x = torch.rand(2, 3, 32, 32, dtype=torch.bfloat16)
    y = imresize_torch(x, 0.25)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 3, 8, 8)
    with pytest.raises(TypeError):
        imresize_torch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 0.5)


def test_uint8_output_is_rounded_and_clipped():
    # A hard edge overshoots with a = -0.5; uint8 output must clip, float output must not.
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[:, 8:] = 255
    up_float = imresize_np(img.astype(np.float64), 2.0)
    assert up_float.max() > 255 and up_float.min() < 0
    up = imresize_np(img, 2.0)
    assert up.dtype == np.uint8
    np.testing.assert_array_equal(up, np.floor(np.clip(up_float, 0, 255) + 0.5).astype(np.uint8))
