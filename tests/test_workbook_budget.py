"""Equal wall-clock budgets (workbook/budget.py): the baselines' steps fill the DictSR run's time at their own step
times, the sizing is stored once and reused, and a changed DictSR config sizes again."""

import json

import pytest

from dictsr_core.workbook import budget, context
from dictsr_core.workbook.plan import training_config

# seconds per step, as if measured: each baseline's loader costs its own
STEP_S = {"dictsr": (0.15, 0.70), "paired-bicubic": (0.07, 0.62), "oracle": (0.08, 0.63),
          "plain-realesrgan-deg": (0.14, 0.66), "plain-noise-injection": (0.10, 0.64), "paper-cpu": (0.3, 0.9)}


def configs(ctx):
    return lambda method: training_config(ctx, method)


def kind(cfg):
    return "paper-cpu" if cfg.preset == "paper-cpu" else cfg.method


class FakeClock:
    def __init__(self):
        self.calls = []

    def __call__(self, cfg, perceptual):
        self.calls.append((kind(cfg), perceptual))
        return STEP_S[kind(cfg)][int(perceptual)]


def predicted_seconds(cfg, method):
    plain_s, perceptual_s = STEP_S[method]
    start = cfg.train.perceptual_start if cfg.train.perceptual_weight > 0 else cfg.train.total_steps
    return start * plain_s + (cfg.train.total_steps - start) * perceptual_s


@pytest.mark.parametrize("budget_s,plain_s,perceptual_s", [(1588.0, 0.14, 0.66), (600.0, 0.07, 0.6), (5000.0, 0.3, 1.2)])
def test_a_sized_schedule_fills_the_budget_and_keeps_the_perceptual_steps(budget_s, plain_s, perceptual_s):
    from dictsr_core.config import get_config

    overrides = budget.size_schedule(budget_s, plain_s, perceptual_s, epochs=7, perceptual_steps=600,
                                     halve_fraction=5 / 7)
    cfg = get_config("cpu", None, overrides, method="plain-realesrgan-deg").train
    assert cfg.total_steps - cfg.perceptual_start == 600
    assert cfg.halve_every == 5 and cfg.epochs == 7
    spent = cfg.perceptual_start * plain_s + 600 * perceptual_s
    assert abs(spent - budget_s) <= 3.5 * plain_s + 1e-6  # the steps rounded to whole epochs: 3.5 steps at most


@pytest.mark.parametrize("args,field", [((float("nan"), 0.1, 0.6), "budget"), ((600.0, 0.0, 0.6), "budget"),
                                        ((100.0, 0.1, 0.6), "does not hold")])
def test_a_budget_that_cannot_be_met_is_refused(args, field):
    with pytest.raises(ValueError, match=field):
        budget.size_schedule(*args, epochs=7, perceptual_steps=600, halve_fraction=5 / 7)


def test_the_workbook_sizes_each_baseline_once_to_the_predicted_dictsr_time(tmp_path):
    ctx = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    fixed = training_config(ctx, "plain-realesrgan-deg")
    # nothing sized yet: the profile's schedule
    assert budget.budget_overrides(ctx, "plain-realesrgan-deg", training_config(ctx, "dictsr")) == {}
    clock = FakeClock()
    stored = budget.ensure_budget(ctx, clock, configs(ctx), say=lambda line: None)
    dictsr = training_config(ctx, "dictsr")
    assert stored["budget_s"] == pytest.approx(predicted_seconds(dictsr, "dictsr"))
    assert stored["budget_from"].startswith("predicted")
    for method in ctx.profile.baselines:
        cfg = training_config(ctx, method)  # the stored sizing, read back by the plan's and notebooks' configs
        assert predicted_seconds(cfg, method) == pytest.approx(stored["budget_s"], rel=0.01)
        assert cfg.train.total_steps - cfg.train.perceptual_start == 600
    assert training_config(ctx, "plain-realesrgan-deg").train.total_steps != fixed.train.total_steps
    # a cheaper loader buys more steps
    assert (training_config(ctx, "paired-bicubic").train.total_steps
            > training_config(ctx, "plain-realesrgan-deg").train.total_steps)
    assert training_config(ctx, "dictsr").to_dict() == dictsr.to_dict()  # DictSR itself is never sized
    # the paper's method: LPIPS on every step, so the budget buys perceptual steps alone, and the lr is halved
    # after each quarter as the paper's 100 epochs halve every 25
    paper = training_config(ctx, "paper-cpu")
    assert paper.preset == "paper-cpu" and paper.train.perceptual_start == 0
    assert predicted_seconds(paper, "paper-cpu") == pytest.approx(stored["budget_s"], rel=0.01)
    assert paper.train.epochs == 4 and paper.train.halve_every == 1
    assert ("paper-cpu", False) not in clock.calls  # its plain step time is never needed
    calls = len(clock.calls)
    assert budget.ensure_budget(ctx, clock, configs(ctx), say=lambda line: None) == stored and len(clock.calls) == calls  # reused


def test_a_finished_dictsr_run_sets_the_budget_by_its_measured_wall_clock(tmp_path):
    ctx = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    cfg = training_config(ctx, "dictsr")
    run = ctx.run_dir("dictsr")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    import yaml

    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    total = cfg.train.total_steps
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "wall_s": s * 0.2}) for s in (25, total)) + "\n")
    stored = budget.ensure_budget(ctx, FakeClock(), configs(ctx), say=lambda line: None)
    assert stored["budget_s"] == pytest.approx(total * 0.2) and stored["budget_from"].startswith("measured")


def test_a_changed_dictsr_config_or_a_damaged_file_sizes_again(tmp_path):
    ctx = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    budget.ensure_budget(ctx, FakeClock(), configs(ctx), say=lambda line: None)
    other = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu", seed=1)
    # another seed is another DictSR config
    assert budget.stored_budget(other, training_config(other, "dictsr")) is None
    assert budget.budget_overrides(other, "oracle", training_config(other, "dictsr")) == {}
    budget.budget_path(ctx).write_text("{not json")
    assert budget.stored_budget(ctx, training_config(ctx, "dictsr")) is None
    assert budget.ensure_budget(ctx, FakeClock(), configs(ctx), say=lambda line: None)["methods"]


def test_cpu_full_adds_the_paired_baselines_at_the_budget_cpu_fixed(tmp_path):
    ctx = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    clock = FakeClock()
    first = budget.ensure_budget(ctx, clock, configs(ctx), say=lambda line: None)
    assert set(first["methods"]) == {"plain-realesrgan-deg", "plain-noise-injection", "paper-cpu"}
    peers = {m: dict(first["methods"][m]) for m in first["methods"]}
    full = context("cpu-full", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    calls = len(clock.calls)
    both = budget.ensure_budget(full, clock, configs(full), say=lambda line: None)
    assert set(both["methods"]) == {"paired-bicubic", "oracle", *peers} and both["budget_s"] == first["budget_s"]
    assert {m: both["methods"][m] for m in peers} == peers  # the peers' sizing is kept
    assert {method for method, _ in clock.calls[calls:]} == {"paired-bicubic", "oracle"}  # only the new ones measured
    cfg = training_config(full, "oracle")
    assert predicted_seconds(cfg, "oracle") == pytest.approx(first["budget_s"], rel=0.01)


def test_profiles_without_equal_budget_keep_their_written_schedule(tmp_path):
    ctx = context("smoke", data_dir=tmp_path / "sample-aim", run_root=tmp_path / "runs", device="cpu")
    assert budget.ensure_budget(ctx, FakeClock(), configs(ctx), say=lambda line: None) is None
    assert not budget.budget_path(ctx).exists()


class FakeRun:
    """train(cfg, steps, resume) as the workbook's calibration calls it: writes the run folder a real run would
    (config, checkpoint, log lines every log_every steps) at `step_s` seconds a step after `start_s` of start-up."""

    def __init__(self, ctx, method, step_s, start_s=4.0):
        self.run_dir, self.step_s, self.start_s, self.calls = ctx.run_dir(method), step_s, start_s, []

    def __call__(self, cfg, steps, resume):
        import yaml

        self.calls.append((steps, resume))
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
        every = cfg.train.log_every
        lines = [{"step": s, "wall_s": self.start_s + s * self.step_s} for s in (*range(every, steps, every), steps)]
        (self.run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def config_of(ctx):
    return lambda method, overrides=None: training_config(ctx, method, overrides=overrides)


def finished_dictsr(ctx, seconds):
    import yaml

    cfg = training_config(ctx, "dictsr")
    run = ctx.run_dir("dictsr")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    (run / "metrics.jsonl").write_text(json.dumps({"step": cfg.train.total_steps, "wall_s": seconds}) + "\n")


def test_rule_11_re_sizes_a_peer_at_its_own_step_time_to_the_measured_dictsr_time(tmp_path):
    ctx = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    budget.ensure_budget(ctx, FakeClock(), configs(ctx), say=lambda line: None)  # predicted, 0.14 s a plain step
    finished_dictsr(ctx, 900.0)  # DictSR trained since: its measured time is the budget now
    sized = training_config(ctx, "plain-realesrgan-deg")
    run = FakeRun(ctx, "plain-realesrgan-deg", step_s=0.16)  # slower than its probe said
    said = []
    resized = budget.calibrate(ctx, "plain-realesrgan-deg", sized, config_of(ctx), run, say=said.append)
    step = budget.calibration_step(sized.train)
    assert run.calls == [(step, False)] and step == round(budget.CALIBRATION_FRACTION * sized.train.total_steps)
    assert resized.to_dict() == training_config(ctx, "plain-realesrgan-deg").to_dict()  # stored: the plan reads it
    assert resized.train.total_steps < sized.train.total_steps  # slower steps: fewer of them
    t = resized.train
    assert t.total_steps - t.perceptual_start == 600  # the shape kept
    assert (t.epochs, t.halve_every) == (sized.train.epochs, sized.train.halve_every)
    perceptual_s = STEP_S["plain-realesrgan-deg"][1]  # the probe's: the run has shown none yet
    spent = run.start_s + t.perceptual_start * run.step_s + 600 * perceptual_s
    assert spent == pytest.approx(900.0, abs=3.5 * run.step_s + 1e-6)  # whole epochs: 3 steps at most off
    entry = budget.stored_budget(ctx, training_config(ctx, "dictsr"))["methods"]["plain-realesrgan-deg"]
    assert entry["calibration"]["step_s"] == pytest.approx(0.16)
    assert entry["calibration"]["budget_from"].startswith("measured") and entry["calibration"]["budget_s"] == 900.0
    assert "re-sized" in said[-1]
    # once only: the re-sized run resumes, and a second call (a resumed workbook) changes nothing
    assert budget.calibrate(ctx, "plain-realesrgan-deg", resized, config_of(ctx), run, say=said.append) is None
    assert len(run.calls) == 1


def test_rule_11_measures_the_paper_run_whose_every_step_is_perceptual(tmp_path):
    ctx = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    stored = budget.ensure_budget(ctx, FakeClock(), configs(ctx), say=lambda line: None)
    sized = training_config(ctx, "paper-cpu")
    run = FakeRun(ctx, "paper-cpu", step_s=0.75, start_s=0.0)
    resized = budget.calibrate(ctx, "paper-cpu", sized, config_of(ctx), run, say=lambda line: None)
    assert resized.train.perceptual_start == 0 and resized.train.epochs == 4 and resized.train.halve_every == 1
    # DictSR unfinished: the predicted budget, every step at the rate the run showed
    assert resized.train.total_steps * 0.75 == pytest.approx(stored["budget_s"], abs=2 * 0.75)
    assert budget.calibration_step(sized.train) <= sized.train.steps_per_epoch  # before its first halving


def test_rule_11_leaves_alone_what_it_cannot_re_size(tmp_path):
    ctx = context("cpu", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    budget.ensure_budget(ctx, FakeClock(), configs(ctx), say=lambda line: None)
    sized = training_config(ctx, "plain-noise-injection")
    run = FakeRun(ctx, "plain-noise-injection", step_s=0.1)
    # another config than the sized one (an override), DictSR itself, a profile without equal budgets: untouched
    other = training_config(ctx, "plain-noise-injection", overrides={"train.lr": 1e-4})
    assert budget.calibrate(ctx, "plain-noise-injection", other, config_of(ctx), run) is None
    assert budget.calibrate(ctx, "dictsr", training_config(ctx, "dictsr"), config_of(ctx), run) is None
    smoke = context("smoke", data_dir=tmp_path / "sample-aim", run_root=tmp_path / "smoke", device="cpu")
    assert budget.calibrate(smoke, "oracle", training_config(smoke, "oracle"), config_of(smoke), run) is None
    assert run.calls == []
    # a run already past the calibration step (trained before rule 11): kept as sized, the reason stored and said
    run(sized, budget.calibration_step(sized.train) + 25, False)
    said = []
    assert budget.calibrate(ctx, "plain-noise-injection", sized, config_of(ctx), run, say=said.append) is None
    entry = budget.stored_budget(ctx, training_config(ctx, "dictsr"))["methods"]["plain-noise-injection"]
    assert "past step" in entry["calibration"]["kept"] and "keeps its sizing" in said[0]
    assert training_config(ctx, "plain-noise-injection").to_dict() == sized.to_dict()
    # steps so slow that the rest of the budget ends before the calibration step, or a start-up that spent it: kept
    sized = training_config(ctx, "plain-realesrgan-deg")
    slow = FakeRun(ctx, "plain-realesrgan-deg", step_s=1.0)
    assert budget.calibrate(ctx, "plain-realesrgan-deg", sized, config_of(ctx), slow, say=said.append) is None
    assert "would change steps already trained" in said[-1]
    late = context("cpu-full", data_dir=tmp_path / "photos-aim", run_root=tmp_path / "runs", device="cpu")
    budget.ensure_budget(late, FakeClock(), configs(late), say=lambda line: None)
    sized = training_config(late, "oracle")
    stuck = FakeRun(late, "oracle", step_s=0.08, start_s=1e5)
    assert budget.calibrate(late, "oracle", sized, config_of(late), stuck, say=said.append) is None
    assert "the whole budget" in said[-1]


def test_a_log_too_short_for_a_step_time_says_none(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 150, "wall_s": 20.0}\n')
    assert budget.measured_step_seconds(tmp_path, 150) is None
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "wall_s": 3.0 + s * 0.2}) + "\n"
                                                    for s in (25, 50, 75, 100, 125, 150)))
    assert budget.measured_step_seconds(tmp_path, 150) == pytest.approx(0.2)
    assert budget.measured_step_seconds(tmp_path, 100) == pytest.approx(0.2)  # lines past the step are not read


def test_a_peer_re_sized_in_flight_is_the_run_its_final_config_trains_straight(tiny_data, tmp_path, monkeypatch):
    """stages.train_run with rule 11: the first steps under the sized config, the rest under the re-sized one, the
    run folder left as that config's run from scratch (weights, config, log), and the stage's configs re-planned."""
    import dataclasses

    import torch

    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.training.trainer import train
    from dictsr_core.workbook import stages
    from dictsr_core.workbook.runner import planned_configs

    smoke = context("smoke", data_dir=tiny_data, run_root=tmp_path / "runs", figure_dir=tmp_path / "figures",
                    device="cpu")
    ctx = dataclasses.replace(smoke, profile=dataclasses.replace(smoke.profile, equal_budget=True))
    budget.ensure_budget(ctx, lambda cfg, perceptual: 1.0, configs(ctx), say=lambda line: None)  # 20 s: 20 steps
    sized = training_config(ctx, "plain-realesrgan-deg")
    before = planned_configs(ctx, "02_train-plain-realesrgan-deg")
    monkeypatch.setattr(budget, "MIN_CALIBRATION_STEPS", 6)
    monkeypatch.setattr(budget, "measured_step_seconds", lambda run_dir, until: 0.5)  # as if the run went 2 steps/s
    stages.train_run(ctx, "plain-realesrgan-deg", sized, live=False)
    final = training_config(ctx, "plain-realesrgan-deg")
    assert final.train.total_steps > sized.train.total_steps  # faster than sized: more steps
    run = load_checkpoint(ctx.run_dir("plain-realesrgan-deg") / "checkpoints" / "last.pt")
    assert run["step"] == final.train.total_steps and run["config"].to_dict() == final.to_dict()
    steps = [json.loads(line)["step"] for line in
             (ctx.run_dir("plain-realesrgan-deg") / "metrics.jsonl").read_text().splitlines()]
    assert steps[:3] == [5, 6, 10] and steps[-1] == final.train.total_steps
    train(final, tiny_data, tmp_path / "straight", progress=False)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    assert all(torch.equal(straight["model"][k], run["model"][k]) for k in straight["model"])
    after = planned_configs(ctx, "02_train-plain-realesrgan-deg")
    assert after != before and final.to_dict() in after.values()  # what the stage's stamp records
