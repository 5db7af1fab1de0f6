"""train.ema_decay / ema_sigma_rel: the weight average folds in the steps after the L1 phase, resumes exactly, never feeds back into
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
    for t, value in enumerate((1.0, 2.0, 3.0), start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model, t)
    model.running_mean.fill_(7.0)
    state = average.state_dict(model)
    assert torch.allclose(state["weight"], torch.full((2,), 2.25))  # 1 -> 0.5*1 + 0.5*2 -> 0.5*1.5 + 0.5*3
    assert torch.equal(state["running_mean"], torch.full((2,), 7.0))
    assert torch.equal(model.weight, torch.full((2,), 3.0))  # the live weights are untouched
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(model, decay=1.0)
    with pytest.raises(ValueError, match="set exactly one"):
        WeightAverage(model, decay=0.5, sigma_rel=0.1)


@pytest.mark.parametrize("bad", [1.0, -0.1, math.nan])
def test_ema_decay_is_validated(bad):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        get_config("tiny", overrides={"train.ema_decay": bad})


def _ema_config(decay=0.8):
    # 20 steps, perceptual phase (and so the average) from step 10
    return get_config("tiny", overrides={"train.ema_decay": decay, "train.perceptual_weight": 0.1,
                                         "train.perceptual_from": 0.5, "train.checkpoint_every": 100})


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.parametrize("in_average,restarted", [(False, [2, 4, 6, 8, 10]), (True, list(range(2, 21, 2)))])
@pytest.mark.slow
def test_dead_entries_restart_only_before_the_weight_average_starts(tiny_data, tmp_path, monkeypatch, in_average,
                                                                    restarted):
    """The method issue's bug: restarts inside the average's window blend a restarted entry's old and new rows into
    points no step trained. They stop at the average's start (step 10 here), unless asked (old runs)."""
    import dictsr_core.training.trainer as trainer

    steps = []
    real = trainer.restart_dead_entries
    monkeypatch.setattr(trainer, "restart_dead_entries", lambda model, *a: steps.append(len(steps)) or real(model, *a))
    cfg = get_config("tiny", overrides={"train.ema_decay": 0.8, "train.perceptual_weight": 0.1,
                                        "train.perceptual_from": 0.5, "train.restart_every": 2,
                                        "train.restarts_in_average": in_average})
    calls = []
    monkeypatch.setattr(trainer.Trainer, "log", lambda self: calls.append(self.step) or None, raising=True)
    seen = []
    original = trainer.Trainer.train_step

    def step_and_note(self, batch):
        before = len(steps)
        out = original(self, batch)
        if len(steps) > before:
            seen.append(self.step)
        return out

    monkeypatch.setattr(trainer.Trainer, "train_step", step_and_note)
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False)
    assert seen == restarted
    assert cfg.train.restarts_until == (None if in_average else 10)


def test_a_derived_run_whose_restarts_would_differ_is_refused(tiny_data, tmp_path):
    from dataclasses import replace

    from dictsr_core.config import with_ablation
    from dictsr_core.training.run_folder import derive_average_run

    ours = get_config("tiny", overrides={"train.ema_decay": 0.8, "train.perceptual_weight": 0.1,
                                         "train.perceptual_from": 0.5, "train.restart_every": 5})
    train(ours, tiny_data, tmp_path / "Ours", device="cpu", progress=False)
    r6 = with_ablation(ours, "R6")  # no average at all: its restarts would go on to the end
    assert ours.train.restarts_until == 10 and r6.train.restarts_until is None
    with pytest.raises(ConfigError, match="restarts would stop at step None instead of 10"):
        derive_average_run(tmp_path / "Ours", tmp_path / "R6", r6)
    tracked = replace(r6, train=replace(r6.train, ema_track_decay=(0.8,)))  # R6 beside a tracked average: the same
    assert derive_average_run(tmp_path / "Ours", tmp_path / "R6", tracked)


@pytest.mark.slow
def test_a_run_without_the_average_is_derived_bit_for_bit_from_the_run_with_it(tiny_data, tmp_path):
    from dataclasses import replace

    from dictsr_core.config import with_ablation
    from dictsr_core.training.run_folder import derive_average_run

    ours = _ema_config()
    train(ours, tiny_data, tmp_path / "Ours", device="cpu", progress=False)
    r6 = with_ablation(ours, "R6")
    train(r6, tiny_data, tmp_path / "trained-R6", device="cpu", progress=False)
    assert derive_average_run(tmp_path / "Ours", tmp_path / "R6", r6)
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

    assert not derive_average_run(tmp_path / "Ours", tmp_path / "R6", r6)  # up to date: nothing written
    # the config as a function of the source's (read from its checkpoint): the same derivation
    seen = []
    assert not derive_average_run(tmp_path / "Ours", tmp_path / "R6", lambda source: seen.append(source) or r6)
    assert seen == [ours]
    assert derive_average_run(tmp_path / "Ours", tmp_path / "R6", r6, force=True)
    other_seed = with_ablation(replace(ours, train=replace(ours.train, seed=1)), "R6")
    with pytest.raises(ConfigError, match=r"R6 cannot be derived .*train\.seed"):
        derive_average_run(tmp_path / "Ours", tmp_path / "R6", other_seed)
    with pytest.raises(ConfigError, match=r"R6 cannot be derived .*did not keep .*decay=0\.5 \(it kept decay=0\.8\)"):
        derive_average_run(tmp_path / "Ours", tmp_path / "R6", replace(r6, train=replace(r6.train, ema_decay=0.5)))


def test_the_power_function_average_weights_every_update_as_its_closed_form_says():
    from dictsr_core.training.weight_average import sigma_rel_to_gamma

    gamma = sigma_rel_to_gamma(0.1)
    assert gamma == pytest.approx(6.94, abs=0.01)  # Karras et al. 2024: sigma_rel 0.1 <-> gamma ~6.94
    assert (gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)) == pytest.approx(0.1 ** 2)
    model = torch.nn.Linear(1, 1, bias=False).double()
    average = WeightAverage(model, sigma_rel=0.1)
    steps = 50
    for t in range(1, steps + 1):
        with torch.no_grad():
            model.weight.fill_(float(t))
        average.update(model, t)
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    weights = (t / steps) ** (gamma + 1) - ((t - 1) / steps) ** (gamma + 1)
    assert average.state_dict(model)["weight"].item() == pytest.approx((weights * t).sum().item(), rel=1e-12)
    # its mean lags T / (gamma + 2) updates: its window grows with the run (~67 of the cpu recipe's 600)
    lag = steps - (weights * t).sum().item()
    assert 5 < lag < 8 and average.label == "sigma_rel=0.1"


@pytest.mark.parametrize("overrides, field", [
    ({"train.ema_sigma_rel": 0.5}, "train.ema_sigma_rel"),
    ({"train.ema_sigma_rel": 0.1, "train.ema_decay": 0.99}, "train.ema_sigma_rel"),
    ({"train.ema_track_sigma_rel": "0.1,0.1"}, "train.ema_track_sigma_rel"),
    ({"train.ema_track_sigma_rel": "0.1", "train.ema_sigma_rel": 0.1}, "train.ema_track_sigma_rel"),
    ({"train.ema_track_sigma_rel": "0.001"}, "train.ema_track_sigma_rel"),
    ({"train.ema_track_decay": "0.9,0.9"}, "train.ema_track_decay"),
    ({"train.ema_track_decay": "1.0"}, "train.ema_track_decay"),
    ({"train.ema_track_decay": "0.9", "train.ema_decay": 0.9}, "train.ema_track_decay"),
])
def test_power_function_averages_are_validated(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        get_config("tiny", overrides=overrides)


@pytest.mark.slow
def test_tracked_averages_resume_exactly_and_derive_the_run_that_uses_one_bit_for_bit(tiny_data, tmp_path, capsys):
    from dataclasses import replace

    from dictsr_core.training.run_folder import derive_average_run

    ours = replace(_ema_config(), train=replace(_ema_config().train, ema_track_sigma_rel=(0.1, 0.2), ema_track_decay=(0.5,)))
    train(ours, tiny_data, tmp_path / "Ours", device="cpu", progress=False)
    train(ours, tiny_data, tmp_path / "resumed", device="cpu", progress=False, stop_after=13)
    train(ours, tiny_data, tmp_path / "resumed", device="cpu", progress=False, resume=True)
    straight = load_checkpoint(tmp_path / "Ours" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert straight["model_averages"].keys() == {"sigma_rel=0.1", "sigma_rel=0.2", "decay=0.5"}
    for label in straight["model_averages"]:
        assert states_equal(straight["model_averages"][label], resumed["model_averages"][label])
    assert not states_equal(straight["model_averages"]["sigma_rel=0.1"], straight["model_averages"]["sigma_rel=0.2"])

    power = replace(ours, train=replace(ours.train, ema_decay=0.0, ema_sigma_rel=0.1, ema_track_sigma_rel=(),
                                        ema_track_decay=()))
    train(power, tiny_data, tmp_path / "trained", device="cpu", progress=False)
    trained = load_checkpoint(tmp_path / "trained" / "checkpoints" / "last.pt")
    assert states_equal(trained["model"], straight["model"])  # tracking averages changes no step
    assert derive_average_run(tmp_path / "Ours", tmp_path / "derived", power)
    derived = load_checkpoint(tmp_path / "derived" / "checkpoints" / "last.pt")
    assert states_equal(derived["model_ema"], trained["model_ema"]) and "model_averages" not in derived
    assert derived["config"] == power and derived["derived_from"]["run"] == str(tmp_path / "Ours")
    fixed = replace(power, train=replace(power.train, ema_decay=0.5, ema_sigma_rel=0.0))  # a tracked fixed decay
    train(fixed, tiny_data, tmp_path / "trained-fixed", device="cpu", progress=False)
    assert derive_average_run(tmp_path / "Ours", tmp_path / "derived-fixed", fixed)
    assert states_equal(load_checkpoint(tmp_path / "derived-fixed" / "checkpoints" / "last.pt")["model_ema"],
                        load_checkpoint(tmp_path / "trained-fixed" / "checkpoints" / "last.pt")["model_ema"])
    with pytest.raises(ConfigError, match=r"did not keep .*sigma_rel=0\.05 \(it kept sigma_rel=0\.1, "
                                          r"sigma_rel=0\.2, decay=0\.5, decay=0\.8\)"):
        derive_average_run(tmp_path / "Ours", tmp_path / "other",
                           replace(power, train=replace(power.train, ema_sigma_rel=0.05)))

    from dictsr_core.cli import main

    to_power = ["--set", "train.ema_decay=0", "--set", "train.ema_sigma_rel=0.1", "--set", "train.ema_track_sigma_rel=",
                "--set", "train.ema_track_decay="]
    assert main(["derive", "--from", str(tmp_path / "Ours"), "--out", str(tmp_path / "cli"), *to_power]) == 0
    by_cli = load_checkpoint(tmp_path / "cli" / "checkpoints" / "last.pt")
    assert states_equal(by_cli["model_ema"], trained["model_ema"]) and by_cli["config"] == power
    assert main(["derive", "--from", str(tmp_path / "Ours"), "--out", str(tmp_path / "cli-seed"), *to_power,
                 "--set", "train.seed=3"]) == 2
    assert "differs in more than the weight averages and the inference lookup (train.seed)" in capsys.readouterr().err
    assert not (tmp_path / "cli-seed").exists()  # refused before anything is written


def test_a_resume_from_an_average_that_does_not_fit_the_model_names_it(tiny_data, tmp_path):
    from dataclasses import replace

    from dictsr_core.training.checkpoint import save_checkpoint

    cfg = replace(_ema_config(), train=replace(_ema_config().train, ema_track_sigma_rel=(0.1,)))
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False, stop_after=13)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    for broken in ("model_ema", "model_averages"):
        payload = load_checkpoint(path)
        state = payload[broken] if broken == "model_ema" else payload[broken]["sigma_rel=0.1"]
        state.pop(next(iter(state)))
        save_checkpoint(tmp_path / broken / "checkpoints" / "last.pt", model_state=payload.pop("model"),
                        config=payload.pop("config"), step=payload.pop("step"),
                        **{k: v for k, v in payload.items() if k != "format"})
        where = "model_ema" if broken == "model_ema" else r"model_averages\['sigma_rel=0.1'\]"
        with pytest.raises(CheckpointError, match=rf"{broken}.*last\.pt: {where} does not match the model"):
            train(cfg, tiny_data, tmp_path / broken, device="cpu", progress=False, resume=True)


@pytest.mark.slow
def test_the_l1_only_model_is_kept_at_the_start_of_the_perceptual_phase_and_derived_from_it(tiny_data, tmp_path, capsys):
    from dictsr_core.cli import main
    from dictsr_core.training.run_folder import checkpoint_file, derive_average_run

    cfg = _ema_config()  # 20 steps, the perceptual phase from step 10
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False)
    train(cfg, tiny_data, tmp_path / "ten", device="cpu", progress=False, stop_after=10)
    kept = load_checkpoint(checkpoint_file(tmp_path / "run", "before-perceptual"))
    ten = load_checkpoint(checkpoint_file(tmp_path / "ten"))
    assert kept["step"] == 10 and states_equal(kept["model"], ten["model"])  # 10 L1 steps, nothing after
    assert "model_ema" not in kept  # the average starts with the perceptual phase
    assert not states_equal(kept["model"], load_checkpoint(checkpoint_file(tmp_path / "run"))["model"])
    # a run stopped before the phase has none yet; resumed, it writes the same one
    train(cfg, tiny_data, tmp_path / "resumed", device="cpu", progress=False, stop_after=4)
    assert not checkpoint_file(tmp_path / "resumed", "before-perceptual").exists()
    train(cfg, tiny_data, tmp_path / "resumed", device="cpu", progress=False, resume=True)
    assert states_equal(load_checkpoint(checkpoint_file(tmp_path / "resumed", "before-perceptual"))["model"], kept["model"])

    assert derive_average_run(tmp_path / "run", tmp_path / "l1", cfg, snapshot="before-perceptual")
    derived = load_checkpoint(checkpoint_file(tmp_path / "l1"))
    assert derived["step"] == 10 and states_equal(derived["model"], kept["model"]) and derived["config"] == cfg
    assert derived["derived_from"]["checkpoint"] == "before-perceptual.pt"
    import json
    steps = [json.loads(line)["step"] for line in (tmp_path / "l1" / "metrics.jsonl").read_text().splitlines()]
    assert steps and max(steps) == 10  # its log ends where its steps do
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():  # inference runs its (last) weights: there is no average yet
        assert torch.equal(load_inference_model(checkpoint_file(tmp_path / "l1"))[0](x),
                           load_inference_model(checkpoint_file(tmp_path / "ten"))[0](x))
    assert not derive_average_run(tmp_path / "run", tmp_path / "l1", cfg, snapshot="before-perceptual")  # up to date
    assert main(["derive", "--from", str(tmp_path / "run"), "--out", str(tmp_path / "cli"), "--before-perceptual"]) == 0
    assert states_equal(load_checkpoint(checkpoint_file(tmp_path / "cli"))["model"], kept["model"])

    plain = get_config("tiny")  # no perceptual phase: nothing kept, and a named error asking for it
    train(plain, tiny_data, tmp_path / "plain", device="cpu", progress=False)
    assert sorted(p.name for p in (tmp_path / "plain" / "checkpoints").iterdir()) == ["last.pt"]
    with pytest.raises(ConfigError, match=r"cannot be derived from .*plain: it has no before-perceptual\.pt"):
        derive_average_run(tmp_path / "plain", tmp_path / "plain-l1", plain, snapshot="before-perceptual")
    assert main(["derive", "--from", str(tmp_path / "plain"), "--out", str(tmp_path / "x"), "--before-perceptual"]) == 2
    assert "before-perceptual.pt: no such checkpoint" in capsys.readouterr().err


def test_a_checkpoint_step_at_the_end_of_the_l1_phase_is_serialised_once_for_both_files(tiny_data, tmp_path, monkeypatch):
    import dictsr_core.training.trainer as trainer
    from dictsr_core.training.run_folder import checkpoint_file

    saved = []
    real_save = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint",
                        lambda path, **kw: saved.append((kw["step"], path)) or real_save(path, **kw))
    cfg = get_config("tiny", overrides={"train.ema_decay": 0.8, "train.perceptual_weight": 0.1,
                                        "train.perceptual_from": 0.5, "train.checkpoint_every": 10})
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False, stop_after=12)
    assert saved == [(10, checkpoint_file(tmp_path / "run")), (12, checkpoint_file(tmp_path / "run"))]  # one save at 10
    kept = checkpoint_file(tmp_path / "run", "before-perceptual")  # a copy of that save's bytes
    kept = load_checkpoint(kept)
    assert kept["step"] == 10 and "optimizer" in kept
    assert load_checkpoint(checkpoint_file(tmp_path / "run"))["step"] == 12
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp*"))
