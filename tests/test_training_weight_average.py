"""train.ema_decay: the weight average folds in the steps after the L1 phase, resumes exactly, never feeds back into
training, and is what inference runs unless asked for the last weights."""

import math

import pytest
import torch

from dictsr_core.config import ConfigError, get_config
from dictsr_core.training.checkpoint import CheckpointError, load_checkpoint, load_inference_model
from dictsr_core.training.trainer import train
from dictsr_core.training.weight_average import WeightAverage


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_average_is_the_exponential_moving_average_and_buffers_stay_live():
    model = torch.nn.BatchNorm1d(2)
    average = WeightAverage(model, decay=0.5)
    assert average.state_dict(model) is None  # nothing folded in yet
    for value in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model)
    model.running_mean.fill_(7.0)
    state = average.state_dict(model)
    assert torch.allclose(state["weight"], torch.full((2,), 2.25))  # 1 -> 0.5*1 + 0.5*2 -> 0.5*1.5 + 0.5*3
    assert torch.equal(state["running_mean"], torch.full((2,), 7.0))
    assert torch.equal(model.weight, torch.full((2,), 3.0))  # the live weights are untouched
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(model, decay=1.0)


@pytest.mark.parametrize("bad", [1.0, -0.1, math.nan])
def test_ema_decay_is_validated(bad):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        get_config("tiny", overrides={"train.ema_decay": bad})


def _ema_config(decay=0.8):
    # 20 steps, perceptual phase (and so the average) from step 10
    return get_config("tiny", overrides={"train.ema_decay": decay, "train.perceptual_weight": 0.1,
                                         "train.perceptual_from": 0.5, "train.checkpoint_every": 100})


def test_average_starts_with_the_perceptual_phase_resumes_exactly_and_leaves_training_alone(tiny_data, tmp_path):
    cfg = _ema_config()
    assert cfg.train.ema_start == 10 and get_config("tiny").train.ema_start == 0
    train(cfg, tiny_data, tmp_path / "straight", device="cpu", progress=False)
    train(cfg, tiny_data, tmp_path / "l1", device="cpu", progress=False, stop_after=10)
    assert "model_ema" not in load_checkpoint(tmp_path / "l1" / "checkpoints" / "last.pt")  # L1 phase: no average
    train(cfg, tiny_data, tmp_path / "resumed", device="cpu", progress=False, stop_after=13)
    assert "model_ema" in load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    train(cfg, tiny_data, tmp_path / "resumed", device="cpu", progress=False, resume=True)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert states_equal(straight["model_ema"], resumed["model_ema"])
    assert not states_equal(straight["model_ema"], straight["model"])  # 10 steps averaged: not the last weights

    plain = get_config("tiny", overrides={"train.perceptual_weight": 0.1, "train.perceptual_from": 0.5,
                                          "train.checkpoint_every": 100})
    train(plain, tiny_data, tmp_path / "plain", device="cpu", progress=False)
    without = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")
    assert "model_ema" not in without
    assert states_equal(without["model"], straight["model"])  # averaging never feeds back into training


def test_inference_runs_the_average_unless_asked_for_the_last_weights(tiny_data, tmp_path):
    train(_ema_config(decay=0.5), tiny_data, tmp_path / "run", device="cpu", progress=False)
    train(get_config("tiny"), tiny_data, tmp_path / "plain", device="cpu", progress=False)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        auto, average, last = (load_inference_model(path, weights=w)[0](x) for w in ("auto", "average", "last"))
    assert torch.equal(auto, average) and not torch.allclose(average, last)
    plain = tmp_path / "plain" / "checkpoints" / "last.pt"
    with torch.no_grad():
        assert torch.equal(load_inference_model(plain)[0](x), load_inference_model(plain, weights="last")[0](x))
    with pytest.raises(CheckpointError, match=r"plain.*no weight average"):
        load_inference_model(plain, weights="average")


def test_a_run_without_the_average_is_derived_bit_for_bit_from_the_run_with_it(tiny_data, tmp_path):
    from dataclasses import replace

    from dictsr_core.config import with_ablation
    from dictsr_core.training.run_folder import derive_last_weights_run

    ours = _ema_config()
    train(ours, tiny_data, tmp_path / "Ours", device="cpu", progress=False)
    r6 = with_ablation(ours, "R6")
    train(r6, tiny_data, tmp_path / "trained-R6", device="cpu", progress=False)
    assert derive_last_weights_run(tmp_path / "Ours", tmp_path / "R6", r6)
    trained = load_checkpoint(tmp_path / "trained-R6" / "checkpoints" / "last.pt")
    derived = load_checkpoint(tmp_path / "R6" / "checkpoints" / "last.pt")
    assert states_equal(derived["model"], trained["model"]) and "model_ema" not in derived
    assert derived["config"] == r6 and derived["step"] == trained["step"] == 20
    assert derived["derived_from"]["run"] == str(tmp_path / "Ours") and derived["derived_from"]["step"] == 20
    assert (tmp_path / "R6" / "metrics.jsonl").read_text() == (tmp_path / "Ours" / "metrics.jsonl").read_text()
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        assert torch.equal(load_inference_model(tmp_path / "R6" / "checkpoints" / "last.pt")[0](x),
                           load_inference_model(tmp_path / "trained-R6" / "checkpoints" / "last.pt")[0](x))

    assert not derive_last_weights_run(tmp_path / "Ours", tmp_path / "R6", r6)  # up to date: nothing written
    assert derive_last_weights_run(tmp_path / "Ours", tmp_path / "R6", r6, force=True)
    other_seed = with_ablation(replace(ours, train=replace(ours.train, seed=1)), "R6")
    with pytest.raises(ConfigError, match=r"R6 cannot be derived .*train\.seed"):
        derive_last_weights_run(tmp_path / "Ours", tmp_path / "R6", other_seed)
    with pytest.raises(ConfigError, match=r"train\.ema_decay"):  # the average kept: not the source's last weights
        derive_last_weights_run(tmp_path / "Ours", tmp_path / "R6", replace(r6, train=replace(r6.train, ema_decay=0.5)))
