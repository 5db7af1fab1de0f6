import numpy as np
import pytest
import torch

from dictsr_core.config import ConfigError, get_config
from dictsr_core.model import DictSR, PlainSR
from dictsr_core.model.lowpass_base import add_base, gaussian_lowpass, lowpass_base


def test_lowpass_keeps_constants_and_attenuates_white_noise():
    torch.manual_seed(0)
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(lowpass_base(flat, 1.5, scale=4), torch.full((1, 3, 128, 128), 0.3), atol=1e-6)
    noise = torch.randn(1, 1, 256, 256)
    # a 2-D Gaussian passes 1 / (2 sqrt(pi) sigma) of white noise's std: 0.188 at sigma 1.5
    ratio = float(gaussian_lowpass(noise, 1.5)[..., 8:-8, 8:-8].std())
    assert ratio == pytest.approx(1 / (2 * np.sqrt(np.pi) * 1.5), rel=0.1)


def test_add_base_is_the_papers_output_when_off():
    decoded = torch.randn(1, 3, 16, 16)
    assert torch.equal(add_base(decoded, None, 0.0, 4), (decoded + 1) * 0.5)
    lr = torch.rand(1, 3, 4, 4)
    assert torch.allclose(add_base(torch.zeros(1, 3, 16, 16), lr, 1.0, 4), lowpass_base(lr, 1.0, 4))


def test_config_field_is_validated():
    assert get_config("tiny", overrides={"model.base_sigma": 1.5}).model.base_sigma == 1.5
    with pytest.raises(ConfigError, match="model.base_sigma"):
        get_config("tiny", overrides={"model.base_sigma": -1})


def test_models_with_a_base_train_and_tile():
    from dictsr_core.inference.tiled import super_resolve

    cfg = get_config("tiny", overrides={"model.base_sigma": 1.5}).model
    torch.manual_seed(0)
    net = DictSR(cfg)
    hr = torch.rand(2, 3, 32, 32)
    hr_down = torch.nn.functional.avg_pool2d(hr, 4)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, hr_down))
    out = net(hr, hr_down, torch.rand(2, 3, 8, 8))
    assert out.hr.shape == hr.shape and out.lr.shape == (2, 3, 8, 8)
    out.hr.mean().backward()  # the decoder still learns through the base's sum
    assert net.dec_hr[0].conv1.weight.grad.abs().sum() > 0
    model = net.inference().eval()
    image = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    whole, tiled = super_resolve(model, image, tile=0), super_resolve(model, image, tile=8)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    folded = super_resolve(model.folded(), image, tile=0)
    assert np.abs(whole.astype(int) - folded.astype(int)).max() <= 1
    assert PlainSR(cfg)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
