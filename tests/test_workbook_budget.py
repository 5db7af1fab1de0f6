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
