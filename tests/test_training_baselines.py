import json
import shutil

import numpy as np
import pytest
import torch

from dictsr_core.config import ConfigError, get_config
from dictsr_core.data.datasets import DegradedPairs
from dictsr_core.data.degradations import make_degradation
from dictsr_core.inference.tiled import super_resolve
from dictsr_core.model import PlainSR
from dictsr_core.performance.cost import model_cost
from dictsr_core.training.batches import baseline_degradation
from dictsr_core.training.checkpoint import load_inference_model
from dictsr_core.training.trainer import train


def test_baseline_costs_what_dictsr_inference_costs():
    ours, plain = model_cost(get_config("paper")), model_cost(get_config("paper", method="paired-bicubic"))
    assert plain["inference_conv_layers"] == ours["inference_conv_layers"] == 18
    assert abs(plain["gmacs_128"] - ours["gmacs_128"]) / ours["gmacs_128"] < 0.01


def test_degraded_pairs_are_the_degradation_of_their_own_crop(tiny_data):
    degrade = make_degradation("aim")
    pairs = DegradedPairs(tiny_data / "train_hr", degrade, hr_patch=32, seed=3)
    a, b = pairs[5], pairs[5]
    assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])  # a pure function of (seed, index)
    assert a["hr"].shape == (3, 32, 32) and a["lr"].shape == (3, 8, 8)
    hr = a["hr"].permute(1, 2, 0).numpy()
    clean = make_degradation("aim", noise_sigma=0.0, jpeg_quality=None)(hr, 0)
    lr = a["lr"].permute(1, 2, 0).numpy().astype(int)
    assert 2 < np.abs(lr - clean.astype(int)).mean() < 30  # the aim noise and JPEG of this very crop


def test_paired_bicubic_makes_plain_bicubic_lr(tiny_data):
    degrade = baseline_degradation("paired-bicubic", tiny_data)
    hr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    from dictsr_core.data.resize import imresize_np

    assert np.array_equal(degrade(hr, 0), imresize_np(hr, 0.25))


def test_oracle_needs_a_synthetic_degradation(tiny_data):
    with pytest.raises(ConfigError, match="manifest.json"):
        baseline_degradation("oracle", tiny_data)


@pytest.mark.parametrize("method", ["paired-bicubic", "oracle", "plain-realesrgan-deg", "plain-noise-injection"])
def test_baselines_train_and_super_resolve(tiny_data, tmp_path, method):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "manifest.json").write_text(json.dumps({"degradation": make_degradation("aim").recipe()}))
    cfg = get_config("tiny", method=method)
    records = []
    summary = train(cfg, data, tmp_path / "run", progress=False, on_log=records.append)
    assert summary["step"] == 20 and "activated" not in records[-1]
    assert set(records[-1]) >= {"total", "l1_hr", "perceptual", "lr"}
    model, loaded, step = load_inference_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert isinstance(model, PlainSR) and loaded.method == method and step == 20
    out = super_resolve(model, np.zeros((12, 20, 3), np.uint8))
    assert out.shape == (48, 80, 3)


def test_evaluate_labels_a_baseline_checkpoint_by_its_method(tiny_data, tmp_path):
    from PIL import Image

    from dictsr_core.cli import main
    from dictsr_core.data.resize import imresize_np

    train(get_config("tiny", method="paired-bicubic"), tiny_data, tmp_path / "run", progress=False)
    hr = np.asarray(Image.open(next((tiny_data / "train_hr").iterdir())).convert("RGB"))[:64, :64]
    (tmp_path / "lr").mkdir()
    (tmp_path / "hr").mkdir()
    Image.fromarray(hr).save(tmp_path / "hr" / "a.png")
    Image.fromarray(imresize_np(hr, 0.25)).save(tmp_path / "lr" / "a.png")
    code = main(["evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.pt"), "--lr", str(tmp_path / "lr"),
                 "--hr", str(tmp_path / "hr"), "--json", str(tmp_path / "r.json"), "--device", "cpu"])
    assert code == 0
    assert json.loads((tmp_path / "r.json").read_text())["method"] == "paired-bicubic"


def test_the_equal_budget_peers_make_their_own_lr():
    """plain-realesrgan-deg draws Real-ESRGAN's pipeline per crop; plain-noise-injection estimates its kernels, noise
    and JPEG from the LR-domain photos (here the data's train_lr); both give a quarter-size uint8 LR."""
    from dictsr_core.data.realesrgan_degradation import RealESRGANDegradation

    assert isinstance(baseline_degradation("plain-realesrgan-deg", None), RealESRGANDegradation)


def test_noise_injection_is_estimated_from_the_lr_photos(tiny_data):
    from dictsr_core.data.noise_injection import NoiseInjectionDegradation

    degrade = baseline_degradation("plain-noise-injection", tiny_data, hr_crop=32, log=lambda message: None)
    assert isinstance(degrade, NoiseInjectionDegradation) and degrade.patches.shape[1:] == (8, 8, 3)
    hr = np.zeros((32, 32, 3), np.uint8) + 100
    assert degrade(hr, 0).shape == (8, 8, 3)
