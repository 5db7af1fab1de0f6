"""The training recipe's options beyond the paper: each off in the `paper` preset, each tested for what it does."""

import pytest

from dictsr_core.config import ConfigError, get_config
from dictsr_core.training.step import perceptual_weight_at


def test_perceptual_phase_starts_at_its_fraction_of_the_schedule():
    cfg = get_config("tiny", overrides={"train.perceptual_weight": 0.5, "train.perceptual_from": 0.75})
    total = cfg.train.total_steps  # 20
    assert [perceptual_weight_at(cfg.train, s) for s in (0, 14, 15, total - 1)] == [0.0, 0.0, 0.5, 0.5]
    assert perceptual_weight_at(get_config("paper").train, 0) == 1.0  # the paper: LPIPS from the first step
    with pytest.raises(ConfigError, match="train.perceptual_from"):
        get_config("tiny", overrides={"train.perceptual_from": 1.0})


def test_bf16_only_in_the_perceptual_phase_and_only_where_it_is_native():
    from dictsr_core.training.step import bf16_autocast

    assert [bf16_autocast("perceptual", w, False, True) for w in (0.0, 1.0)] == [False, True]
    assert not bf16_autocast("perceptual", 1.0, False, False)  # emulated bf16 on this CPU: stays fp32
    assert bf16_autocast("auto", 0.0, True, True) and not bf16_autocast("auto", 1.0, False, True)
    assert bf16_autocast("bf16", 0.0, False, False) and not bf16_autocast("off", 1.0, True, True)


def test_cpu_recipe_and_its_baselines_get_the_same_600_perceptual_steps_at_the_end(tmp_path):
    from dictsr_core.workbook.profiles import context
    from dictsr_core.workbook.stages import training_config

    # the written schedules, before workbook/budget.py sizes the baselines in a run folder (tests/test_workbook_budget.py)
    ctx = context("cpu-full", data_dir="data/photos-aim", run_root=tmp_path, device="cpu")
    for method, steps in (("dictsr", 3600), ("paired-bicubic", 15120), ("oracle", 15120)):
        t = training_config(ctx, method).train
        first = next(s for s in range(t.total_steps) if perceptual_weight_at(t, s) > 0)
        assert (t.total_steps, t.total_steps - first, t.amp) == (steps, 600, "perceptual"), method
        assert t.halve_every * t.steps_per_epoch == (2400 if method == "dictsr" else 10800)  # 2/3, 5/7 of the way
        # the last weights for all three (the average left the recipe: docs/recipe.md item 19), the averages tracked
        # beside them from the perceptual phase on, where the dead-entry restarts stop
        assert (t.ema_decay, t.ema_sigma_rel, t.ema_start, t.restarts_until) == (0.0, 0.0, steps - 600, steps - 600), method
        assert (t.ema_track_sigma_rel, t.consistency_weight) == ((0.05, 0.1, 0.2), 0.0), method
    ablation = training_config(ctx, "dictsr", schedule="ablation").train
    assert (ablation.total_steps, ablation.ema_start, ablation.ema_sigma_rel) == (600, 500, 0.0)
    r9, r10 = (training_config(ctx, "dictsr", i, schedule="ablation").train for i in ("R9", "R10"))
    assert (r9.consistency_weight, r9.ema_sigma_rel, r9.total_steps) == (10.0, 0.0, 600)  # one departure added back
    assert (r10.ema_sigma_rel, r10.ema_track_sigma_rel, r10.restarts_until, r10.total_steps) == (0.2, (0.05, 0.1), 500, 600)
    for ident in ("A1", "R1", "R3", "R4", "R8", "R9"):
        cfg = training_config(ctx, "dictsr", ident, schedule="ablation")
        assert cfg == get_config("cpu", ident, {"train.epochs": 1, "train.seed": 0}), ident
    assert training_config(ctx, "dictsr", "R3", schedule="ablation").train.perceptual_weight == 0.0


@pytest.mark.parametrize("profile,trains", [("cpu", "R1, R3, R4, R9"), ("cpu-full", "A1, R1, R3, R4, R9, R8")])
def test_the_cpu_plan_trains_every_ablation_but_r10_which_it_derives_from_ours(tmp_path, profile, trains):
    from dictsr_core.config import DERIVED_ABLATIONS
    from dictsr_core.workbook.plan import plan
    from dictsr_core.workbook.profiles import context

    ctx = context(profile, data_dir="data/photos-aim", run_root=tmp_path, device="cpu")
    stage = next(s for s in plan(ctx) if s.key == "04_ablations")
    assert DERIVED_ABLATIONS == ("R6", "R7", "R10") and "R10" in stage.parameters["variants"]
    assert not {"R2", "R6", "R7"} & set(stage.parameters["variants"])  # the rows of departures no longer in the recipe
    trained = {cfg.ablation for _, cfg in stage.runs}
    assert trained == {None, *trains.split(", ")}  # None: Ours on the ablation schedule
    # but the stage must leave it
    assert ctx.run_dir("ablation-R10") / "checkpoints" / "last.pt" in stage.outputs
    assert stage.about == f"train Ours, {trains} (R10: made from Ours' checkpoint), evaluate, Table 3"


def test_the_cpu_plan_makes_and_scores_the_l1_only_model_of_the_main_dictsr_run(tmp_path):
    from dictsr_core.workbook.plan import plan
    from dictsr_core.workbook.profiles import context

    ctx = context("cpu-full", data_dir="data/photos-aim", run_root=tmp_path / "fresh", device="cpu")
    stages = {s.key: s for s in plan(ctx)}
    train = stages["02_train-dictsr"]
    assert train.parameters["l1_run"] == "dictsr-l1"
    assert ctx.run_dir("dictsr-l1") / "checkpoints" / "last.pt" in train.outputs
    assert train.about == ("train dictsr: 3600 steps (dictsr-l1: its L1-only model at step 3000) (dictsr-c8: its code "
                           "in 8 entries, the best of 8 k-means draws on the training images) (dictsr-c8s: that code "
                           "grown by greedy splits while its training agreement holds) (dictsr-c8g: the coarse code for flat "
                           "LR cells, all entries for textured ones)")
    assert (train.parameters["coarse_run"], train.parameters["coarse_entries"], train.parameters["coarse_restarts"],
            train.parameters["split_run"]) == ("dictsr-c8", 8, 8, "dictsr-c8s")
    from dataclasses import replace

    once = replace(ctx, profile=replace(ctx.profile, coarse_restarts=1, coarse_split=False,
                                        coarse_gates=None))  # as the profile says
    train1 = next(s for s in plan(once) if s.key == "02_train-dictsr")
    assert train1.parameters["coarse_restarts"] == 1 and train1.about.endswith("(dictsr-c8: its code in 8 entries)")
    assert train1.parameters["split_run"] is None and train1.parameters["gated_run"] is None
    assert {ctx.run_dir(run) / "checkpoints" / "last.pt" for run in ("dictsr-c8", "dictsr-c8s", "dictsr-c8g")} <= set(train.outputs)
    assert stages["02_train-oracle"].parameters["l1_run"] is None  # the baselines keep theirs in their own folder only
    assert "coarse_run" not in stages["02_train-oracle"].parameters  # a baseline has no code
    assert stages["03_evaluate"].parameters["runs"] == ["dictsr", "dictsr-l1", "dictsr-c8", "dictsr-c8s",
                                                         "dictsr-c8g", "paper-cpu", "paired-bicubic", "oracle",
                                                         "plain-realesrgan-deg", "plain-noise-injection"]
    # photos data has a test split: 03_evaluate's outputs include its Table 1, so a stage made before is made again
    assert ctx.table_dir / "test" / "table1.md" in stages["03_evaluate"].outputs
    # a run that finished before the L1-only model was kept has none to make: the plan leaves it out (a forced
    # plan retrains it, and so keeps one)
    finished = context("cpu-full", data_dir="data/photos-aim", run_root=tmp_path / "runs", device="cpu")
    (finished.run_dir("dictsr") / "checkpoints").mkdir(parents=True)
    (finished.run_dir("dictsr") / "checkpoints" / "last.pt").write_bytes(b"")
    # a finished run of another recipe is trained again, so it will keep its L1-only model
    from dictsr_core.workbook.plan import training_config

    other = training_config(finished, "dictsr", overrides={"train.epochs": 12})
    _finished_folder(finished.run_dir("dictsr"), other)
    assert {s.key: s for s in plan(finished)}["02_train-dictsr"].parameters["l1_run"] == "dictsr-l1"
    # a partial run of this config, short of the L1 phase's end, keeps it when it resumes
    _finished_folder(finished.run_dir("dictsr"), training_config(finished, "dictsr"), step=2400)
    assert {s.key: s for s in plan(finished)}["02_train-dictsr"].parameters["l1_run"] == "dictsr-l1"
    _finished_folder(finished.run_dir("dictsr"), training_config(finished, "dictsr"))
    before = {s.key: s for s in plan(finished)}
    assert before["02_train-dictsr"].parameters["l1_run"] is None and "L1-only" not in before["02_train-dictsr"].about
    assert before["03_evaluate"].parameters["runs"] == ["dictsr", "dictsr-c8", "dictsr-c8s", "dictsr-c8g", "paper-cpu",
                                                      "paired-bicubic",
                                                      "oracle", "plain-realesrgan-deg", "plain-noise-injection"]
    assert {s.key: s for s in plan(finished, force=True)}["02_train-dictsr"].parameters["l1_run"] == "dictsr-l1"
    (finished.run_dir("dictsr") / "checkpoints" / "before-perceptual.pt").write_bytes(b"")
    assert {s.key: s for s in plan(finished)}["02_train-dictsr"].parameters["l1_run"] == "dictsr-l1"
    # make main's profile: what the verdict needs, and the recipe's departures as ablation rows (cpu-full: the rest)
    main_job = {s.key: s for s in plan(context("cpu", data_dir="data/photos-aim", run_root=tmp_path / "main",
                                               device="cpu"))}
    assert main_job["03_evaluate"].parameters["runs"] == ["dictsr", "dictsr-l1", "dictsr-c8", "dictsr-c8g", "paper-cpu",
                                                          "plain-realesrgan-deg", "plain-noise-injection"]
    # make main scores the test split only (its time); cpu-full and a data folder without a test split: validation too
    main_ctx = context("cpu", data_dir="data/photos-aim", run_root=tmp_path / "main", device="cpu")
    assert main_job["03_evaluate"].parameters["validation"] is False
    assert main_ctx.table_dir / "table1.md" not in main_job["03_evaluate"].outputs
    assert main_ctx.table_dir / "test" / "table1.md" in main_job["03_evaluate"].outputs
    assert main_job["03_evaluate"].about.startswith("bicubic, the published peers and 7 runs on the test split")
    assert stages["03_evaluate"].parameters["validation"] is True and ctx.table_dir / "table1.md" in stages["03_evaluate"].outputs
    paper = main_job["02_train-paper-cpu"]  # the paper's method: its own preset, none of the recipe's departures
    (run_dir, cfg), = paper.runs
    assert run_dir.name == "paper-cpu" and cfg.preset == "paper-cpu" and cfg.method == "dictsr"
    assert paper.parameters["l1_run"] is None and "coarse_run" not in paper.parameters
    assert main_job["02_train-dictsr"].parameters["split_run"] is None
    smoke = {s.key: s for s in plan(context("smoke", data_dir="data/sample-aim", device="cpu"))}
    assert smoke["02_train-dictsr"].parameters["l1_run"] is None  # tiny preset: no perceptual phase, no L1-only model
    assert smoke["03_evaluate"].parameters["runs"] == ["dictsr", "paper-tiny", "paired-bicubic", "oracle",
                                                       "plain-realesrgan-deg", "plain-noise-injection"]  # no coarse run
    assert not any("test" in str(path) for path in smoke["03_evaluate"].outputs)  # the sample has no test split
    assert smoke["03_evaluate"].parameters["validation"] is True  # ... so validation is scored whatever the profile says
    assert "coarse_run" not in smoke["02_train-dictsr"].parameters


def _finished_folder(run_dir, cfg, step=None):
    """A run folder as the trainer leaves it at `step` (default: finished), for the plan's eyes: config.yaml and a
    last metrics line beside last.pt."""
    import json

    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": step or cfg.train.total_steps}) + "\n", encoding="utf-8")


def test_paper_preset_keeps_the_papers_method():
    m, t = get_config("paper").model, get_config("paper").train
    assert m.base_sigma == 0.0 and t.perceptual_from == 0.0 and t.perceptual_weight == 1.0


def test_training_logs_no_perceptual_term_before_its_phase(tiny_data, tmp_path):
    import json

    from dictsr_core.training.trainer import train

    cfg = get_config("tiny", overrides={"train.perceptual_weight": 0.1, "train.perceptual_from": 0.5})
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [5, 10, 15, 20]
    assert [r["perceptual"] for r in logged[:2]] == [0.0, 0.0]
    assert all(r["perceptual"] > 0 for r in logged[2:])


def test_noise_patches_come_from_flat_windows_and_are_zero_mean():
    import numpy as np

    from dictsr_core.data.noise_bank import extract_noise_patches

    rng = np.random.default_rng(0)
    image = np.zeros((64, 128, 3))
    image[:, :64] = 120 + rng.normal(0, 6, (64, 64, 3))  # flat grey with noise: the only source of patches
    image[:, 64:] = np.linspace(0, 255, 64)[None, :, None] + rng.normal(0, 6, (64, 64, 3))  # a ramp: content
    patches = extract_noise_patches([np.clip(image, 0, 255).astype(np.uint8)], 16)
    assert patches.dtype == np.int16 and patches.shape[1:] == (16, 16, 3)
    assert np.abs(patches.reshape(len(patches), -1, 3).mean(1)).max() <= 0.5  # zero mean per channel
    assert 5 < patches.std() < 7  # the noise, not the ramp's 255 levels
    import pytest

    with pytest.raises(ValueError, match="flat enough"):
        extract_noise_patches([np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3))], 16)


def test_consistency_term_trains_the_encoder_toward_the_clean_code(tiny_data, tmp_path):
    import json

    import torch

    from dictsr_core.model import DictSR
    from dictsr_core.training.trainer import train

    cfg = get_config("tiny", overrides={"train.consistency_weight": 10.0})
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["consistency"] > 0 for r in logged)
    # off (the paper): the term is neither computed nor logged as anything but 0
    net = DictSR(get_config("tiny").model)
    hr = torch.rand(2, 3, 32, 32)
    hr_down = torch.nn.functional.avg_pool2d(hr, 4)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, hr_down))
    assert net(hr, hr_down, torch.rand(2, 3, 8, 8)).consistency is None
    out = net(hr, hr_down, torch.rand(2, 3, 8, 8), injected=hr_down)
    # the injected copy equal to HR-down: the term is the clean embedding's own distance to its entry
    z = net.dictionaries.lr_in(net.enc_lr(hr_down * 2 - 1)).permute(0, 2, 3, 1).reshape(-1, cfg.model.dim)
    expected = torch.nn.functional.mse_loss(z, net.dictionaries.d_lr[out.lookups[1].indices.reshape(-1)])
    assert torch.allclose(out.consistency, expected, atol=1e-6)
    out.consistency.backward()
    assert net.dictionaries.d_lr.grad is None and net.enc_lr[0].weight.grad is not None


def test_cross_entropy_consistency_is_scale_free_and_pulls_toward_the_clean_cell():
    import torch

    from dictsr_core.model.dictionaries import cell_cross_entropy

    torch.manual_seed(0)
    entries = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([0, 0, 3])
    inside = torch.tensor([[0.1, 0.1], [0.2, 0.0], [0.9, 0.8]])
    outside = torch.tensor([[0.9, 0.1], [0.0, 0.9], [0.1, 0.2]])  # each nearer another entry than its target
    loss_in, loss_out = cell_cross_entropy(inside, entries, target), cell_cross_entropy(outside, entries, target)
    assert loss_in < loss_out
    # the MSE form weakens 100x when the lookup space shrinks 10x; this one does not change
    assert torch.allclose(cell_cross_entropy(inside * 0.1, entries * 0.1, target), loss_in, rtol=1e-5)
    # its gradient moves a misplaced row into its target's cell, and never reaches the entries
    z = outside.clone().requires_grad_(True)
    table = entries.clone().requires_grad_(True)
    for _ in range(50):
        z.grad = None
        cell_cross_entropy(z, table, target).backward()
        z.data -= 0.1 * z.grad
    assert torch.equal(torch.cdist(z.detach(), entries).argmin(1), target)
    assert table.grad is None


def test_consistency_form_is_validated_and_reaches_the_model(tiny_data, tmp_path):
    import json

    from dictsr_core.model import DictSR
    from dictsr_core.training.trainer import train

    with pytest.raises(ConfigError, match="model.consistency_form"):
        get_config("tiny", overrides={"model.consistency_form": "l2"})
    cfg = get_config("tiny", overrides={"train.consistency_weight": 0.1, "model.consistency_form": "cross_entropy"})
    assert DictSR(cfg.model).dictionaries.consistency_form == "cross_entropy"
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["consistency"] > 0 for r in logged)  # a cross-entropy over 64 cells: about log(64) at the start
    assert max(r["consistency"] for r in logged) > 0.5


def test_hr_grad_entries_lets_d_hr_learn_from_the_reconstruction_alone():
    """'entries': the coupled D_hr gets the reconstruction gradient and no codebook pull toward E_hr's
    embeddings (whose collapse took D_hr with it: per-dimension std 0.002 after 3750 cpu steps)."""
    import torch

    from dictsr_core.model import DictSR

    torch.manual_seed(0)
    hr = torch.rand(2, 3, 32, 32)
    hr_down = torch.nn.functional.avg_pool2d(hr, 4)
    losses, grads = {}, {}
    for mode in ("both", "entries"):
        net = DictSR(get_config("tiny", overrides={"model.hr_grad": mode}).model)
        torch.manual_seed(1)
        net.dictionaries.initialize(*net.coupled_embeddings(hr, hr_down))
        out = net(hr, hr_down, torch.rand(2, 3, 8, 8))
        b1 = out.lookups[0]
        z = b1.z
        q = net.dictionaries.d_hr[b1.indices.reshape(-1)]
        losses[mode] = b1.loss.item()
        expected_commit = 0.25 * torch.nn.functional.mse_loss(z, q).item()
        if mode == "entries":
            assert losses[mode] == pytest.approx(expected_commit, rel=1e-5)  # commitment only
        else:
            assert losses[mode] == pytest.approx(torch.nn.functional.mse_loss(q, z).item() + expected_commit, rel=1e-5)
        b1.loss.backward(retain_graph=True)
        grads[mode] = net.dictionaries.d_hr.grad
        net.zero_grad()
        (out.hr - hr).abs().mean().backward()
        assert net.dictionaries.d_hr.grad.abs().sum() > 0  # the reconstruction reaches the used entries
    assert grads["entries"] is None or grads["entries"].abs().sum() == 0  # no codebook pull on D_hr
    assert grads["both"].abs().sum() > 0


def test_recipe_ablations_remove_one_departure_each():
    cpu = get_config("cpu")
    # consistency and the weight average left the recipe (docs/recipe.md item 19)
    assert (cpu.model.base_sigma, cpu.model.hr_grad, cpu.train.consistency_weight) == (1.5, "entries", 0.0)
    r1, r9, r4 = (get_config("cpu", ident) for ident in ("R1", "R9", "R4"))
    assert r1.model.base_sigma == 0.0 and r1.model.hr_grad == "entries" and r1.train.consistency_weight == 0.0
    assert r9.train.consistency_weight == 10.0 and r9.model.base_sigma == 1.5 and r9.train.ema_sigma_rel == 0.0
    assert r4.model.hr_grad == "both" and r4.model.base_sigma == 1.5 and r4.ablation == "R4"
    r10, r7, paper = get_config("cpu", "R10"), get_config("cpu", "R7"), get_config("paper")
    assert (cpu.train.ema_sigma_rel, r10.train.ema_sigma_rel, paper.train.ema_sigma_rel, paper.train.ema_decay) == (0, 0.2, 0, 0)
    assert (r10.train.ema_decay, r10.train.ema_track_decay) == (0.0, (0.995,))  # still tracked: they change no step
    assert r10.train.ema_track_sigma_rel == (0.05, 0.1) and cpu.train.ema_track_sigma_rel == (0.05, 0.1, 0.2)
    assert (r7.train.ema_decay, r7.train.ema_sigma_rel, r7.train.ema_track_decay) == (0.995, 0.0, ())
    assert get_config("cpu", "R6").to_dict() == {**cpu.to_dict(), "ablation": "R6"}  # nothing left to remove
    r5 = get_config("cpu", "R5")  # an addition: the cross-entropy form at its own weight, nothing else changed
    assert (r5.model.consistency_form, r5.train.consistency_weight, cpu.model.consistency_form) == ("cross_entropy", 0.1, "mse")
    assert r5.model.base_sigma == 1.5 and r5.model.hr_grad == "entries"
    # on the paper preset R1 and R2 change nothing but the label: it has none of the departures
    paper, paper_r1 = get_config("paper").to_dict(), get_config("paper", "R1").to_dict()
    assert {k: v for k, v in paper_r1.items() if k != "ablation"} == {k: v for k, v in paper.items() if k != "ablation"}


def test_a_coarse_run_only_for_a_dictsr_code_finer_than_asked():
    from dictsr_core.workbook.plan import coarse_run_name

    cpu = get_config("cpu")
    assert coarse_run_name("dictsr", cpu, 8) == "dictsr-c8"
    assert coarse_run_name("dictsr", cpu, None) is None
    assert coarse_run_name("dictsr", get_config("cpu", "R8"), 8) is None  # already 8 entries
    assert coarse_run_name("oracle", get_config("cpu", method="oracle"), 8) is None
