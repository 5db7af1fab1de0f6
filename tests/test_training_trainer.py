import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dictsr_core.config import ConfigError, get_config
from dictsr_core.training.batches import StepBatches
from dictsr_core.training.checkpoint import CheckpointError, load_checkpoint, load_inference_model
from dictsr_core.training.trainer import NonFiniteLossError, train

ROOT = Path(__file__).resolve().parents[1]


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_step_batches_are_a_function_of_step_and_rank():
    assert list(StepBatches(0, 2, 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(StepBatches(5, 6, 2, rank=1, world=2)) == [[22, 23]]


@pytest.mark.slow
def test_tiny_batch_overfits():
    from dictsr_core.model import DictSR
    from dictsr_core.training.losses import DictSRLoss
    from dictsr_core.training.step import downscale_hr

    torch.manual_seed(0)
    cfg = get_config("tiny")
    model = DictSR(cfg.model)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    hr = torch.stack([yy, xx, (yy + xx) / 2]).unsqueeze(0).repeat(2, 1, 1, 1)
    hr[1] = hr[1].flip(-1)
    hr_down = downscale_hr(hr)
    lr = downscale_hr(hr.roll(8, dims=-1).flip(-2))  # unrelated smooth content
    model.dictionaries.initialize(*model.coupled_embeddings(hr, hr_down))
    criterion = DictSRLoss(None, perceptual_weight=0.0, dis_weight=10.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(250):
        terms = criterion(model(hr, hr_down, lr), hr, hr_down, lr)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(float(terms["total"].detach()))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_run_folder_contents(tiny_data, tmp_path):
    cfg = get_config("tiny")
    summary = train(cfg, tiny_data, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yaml").is_file()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 10, 15, 20]
    assert summary["step"] == 20
    assert not list((run / "checkpoints").glob("*.tmp")), "temporary files left behind"
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, tiny_data, run, progress=False)


def test_checkpoint_round_trip_gives_identical_outputs(tiny_data, tmp_path):
    from dictsr_core.model import DictSR

    cfg = get_config("tiny")
    train(cfg, tiny_data, tmp_path / "run", progress=False)
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    model = DictSR(payload["config"].model)
    model.load_state_dict(payload["model"])
    inference, _, step = load_inference_model(tmp_path / "run" / "checkpoints" / "last.pt")
    x = torch.rand(1, 3, 12, 16)
    assert step == 20
    assert torch.equal(model.inference().eval().folded()(x), inference(x))  # loading folds the code stem
    assert torch.allclose(model.inference().eval()(x), inference(x), atol=1e-5)


def test_wall_time_limit_stops_checkpointed_and_resumable(tiny_data, tmp_path):
    cfg = get_config("tiny")
    summary = train(cfg, tiny_data, tmp_path / "run", progress=False, max_wall_s=0)
    assert summary["step"] == 1 and summary["stopped_early"] and summary["total_steps"] == 20
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 1
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1]
    summary = train(cfg, tiny_data, tmp_path / "run", progress=False, resume=True, max_wall_s=600)
    assert summary["step"] == 20 and not summary["stopped_early"]


def test_interrupted_and_resumed_equals_uninterrupted(tiny_data, tmp_path):
    cfg = get_config("tiny", overrides={"train.restart_every": 4, "train.checkpoint_every": 100})
    train(cfg, tiny_data, tmp_path / "straight", progress=False)
    train(cfg, tiny_data, tmp_path / "resumed", progress=False, stop_after=7)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["step"] == 7
    train(cfg, tiny_data, tmp_path / "resumed", progress=False, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 20
    assert states_equal(a["model"], b["model"])
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 7, 10, 15, 20]


def test_a_schedule_resized_before_its_first_event_resumes_into_the_run_its_config_trains(tiny_data, tmp_path):
    """Rule 11's re-sizing (workbook/budget.calibrate): steps trained under one schedule length, resumed under
    another before either halves the lr, give the weights of the new schedule trained straight."""
    from dictsr_core.training.build import resume_conflicts, schedule_length_free

    short = get_config("tiny", overrides={"train.epochs": 2, "train.steps_per_epoch": 10, "train.checkpoint_every": 100})
    long = get_config("tiny", overrides={"train.epochs": 2, "train.steps_per_epoch": 14, "train.checkpoint_every": 100})
    assert schedule_length_free(short.train) == 10 and schedule_length_free(long.train) == 14
    train(long, tiny_data, tmp_path / "straight", progress=False)
    train(short, tiny_data, tmp_path / "resized", progress=False, stop_after=8)
    train(long, tiny_data, tmp_path / "resized", progress=False, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resized" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 28
    assert states_equal(a["model"], b["model"])  # the halving at step 14, not at the short schedule's 10
    assert b["scheduler"]["step_size"] == 14
    assert b["config"].to_dict() == long.to_dict()
    # past the short schedule's halving, its steps are not the long schedule's: refused, the fields named
    assert resume_conflicts(short, long, 11) == ["train.steps_per_epoch"]
    train(short, tiny_data, tmp_path / "past", progress=False, stop_after=12)
    with pytest.raises(ConfigError, match="train.steps_per_epoch"):
        train(long, tiny_data, tmp_path / "past", progress=False, resume=True)
    # a run with the perceptual term from its first step is not the run of one that starts without it
    paper = get_config("paper-tiny", overrides={"train.perceptual_weight": 1.0})
    later = get_config("paper-tiny", overrides={"train.perceptual_weight": 1.0, "train.perceptual_from": 0.5,
                                                "train.steps_per_epoch": 12})
    assert resume_conflicts(paper, later, 2) == ["train.steps_per_epoch", "train.perceptual_from"]
    # any other field still refuses, at any step
    assert resume_conflicts(short, get_config("tiny", overrides={"train.epochs": 2, "train.steps_per_epoch": 10,
                                                                 "train.checkpoint_every": 100, "train.lr": 2e-3}),
                            0) == ["train.lr"]


def test_resume_refuses_a_different_model(tiny_data, tmp_path):
    train(get_config("tiny"), tiny_data, tmp_path / "run", progress=False, stop_after=3)
    other = get_config("tiny", overrides={"model.entries": 32})
    with pytest.raises(ConfigError, match="model.entries"):
        train(other, tiny_data, tmp_path / "run", progress=False, resume=True)


def test_ctrl_c_saves_a_checkpoint(tiny_data, tmp_path):
    def interrupt(record):
        if record["step"] == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(get_config("tiny"), tiny_data, tmp_path / "run", progress=False, on_log=interrupt)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 10


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    import dictsr_core.training.losses as train_module

    real = train_module.DictSRLoss.forward
    calls = {"n": 0}

    def poisoned(self, *args):
        terms = real(self, *args)
        calls["n"] += 1
        if calls["n"] == 13:
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(train_module.DictSRLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 13.*last\.pt \(step 10\)"):
        train(get_config("tiny"), tiny_data, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 10


def test_corrupt_checkpoint_is_reported_by_name(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_perceptual_term_refuses_missing_weights(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("DICTSR_CACHE", str(tmp_path / "empty-cache"))
    cfg = get_config("tiny", overrides={"train.perceptual_weight": 1.0})
    with pytest.raises(Exception, match="dictsr weights"):
        train(cfg, tiny_data, tmp_path / "run", progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("wall", [None, "0"], ids=["full", "max-wall-s"])
def test_torchrun_two_gloo_processes(tiny_data, tmp_path, wall):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "dictsr_core", "train", "--preset", "tiny", "--set", "train.epochs=1", "--set", "train.restart_every=5",
        "--data", str(tiny_data), "--out", str(out), "--device", "cpu", *(["--max-wall-s", wall] if wall else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    summary = json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])
    assert summary["world_size"] == 2
    # out of time from the first step, the ranks agree at the first log step (tiny: every 5), not before
    assert payload["step"] == summary["step"] == (20 if wall is None else 5)
    assert summary["stopped_early"] == (wall is not None)


RANK_STATE_SCRIPT = """
import sys, torch, torch.distributed as dist
from dictsr_core.config import get_config
from dictsr_core.training.build import build_run
from dictsr_core.training.trainer import Trainer
dist.init_process_group("gloo")  # made here, so the trainer leaves it open for the comparison below
cfg = get_config("tiny", overrides=dict(arg.split("=", 1) for arg in sys.argv[3:]))
run = build_run(cfg, sys.argv[1], sys.argv[2], device="cpu")
initial = {k: v.clone() for k, v in run.model.state_dict().items()}
Trainer(run, progress=False).fit()
rank = dist.get_rank()
torch.save({"initial": initial, "final": run.model.state_dict()}, f"{sys.argv[2]}/rank{rank}.pt")
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [[], ["model.codebook_ema=0.9", "model.cosine_lookup=true"]],
                         ids=["paper-lookup", "ema-cosine"])
def test_two_ddp_ranks_hold_identical_weights_and_dictionaries_after_training(tiny_data, tmp_path, overrides):
    """Each rank trains on its own shard; DDP's gradient all-reduce, the merged dictionary usage, the broadcast
    restarts (every 5 steps here) and the all-reduced EMA codebook must leave every tensor equal on both ranks."""
    script = tmp_path / "ranks.py"
    script.write_text(RANK_STATE_SCRIPT)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tiny_data), str(out), "train.epochs=1", "train.restart_every=5", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    final0, final1 = ranks[0]["final"], ranks[1]["final"]
    assert final0.keys() == final1.keys() and any(k.endswith("d_lr") for k in final0)
    differing = [k for k in final0 if not torch.equal(final0[k], final1[k])]
    assert not differing, differing
    moved = [k for k in final0 if final0[k].is_floating_point() and not torch.equal(final0[k], ranks[0]["initial"][k])]
    assert any(k.endswith("d_lr") for k in moved) and any(k.startswith("enc_lr.") for k in moved), moved


def test_dictionary_entries_get_their_own_learning_rate():
    from dictsr_core.model import DictSR
    from dictsr_core.training.build import param_groups

    cfg = get_config("tiny", overrides={"train.dictionary_lr_scale": 10.0, "train.lr": 1e-3})
    model = DictSR(cfg.model)
    groups = param_groups(model, cfg.train)
    optimizer = torch.optim.Adam(groups, lr=cfg.train.lr)
    rest, entries = optimizer.param_groups
    d = model.dictionaries
    assert {id(p) for p in entries["params"]} == {id(d.d_hr), id(d.d_lr), id(d.d_deg)}
    assert entries["lr"] == 10 * rest["lr"] == 1e-2
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


class _BackwardFails(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("no backward compiler here")


@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.slow
def test_compile_failure_falls_back_to_eager(tiny_data, tmp_path, monkeypatch, capsys, where):
    """Compiling happens in the first step, the backward graph at the first backward: a failure in either
    falls back to eager, and training goes on exactly as an eager run."""

    def broken_compile(module, **kwargs):
        def compiled(*args):
            if where == "forward":
                raise RuntimeError("no compiler here")
            terms = module(*args)  # a forward that ran, with a backward that fails midway
            return {**terms, "total": _BackwardFails.apply(terms["total"]) + terms["l1_hr"]}

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    cfg = get_config("tiny", overrides={"train.compile": True})
    summary = train(cfg, tiny_data, tmp_path / "compiled", progress=False)
    assert summary["step"] == 20
    message = "no compiler here" if where == "forward" else "no backward compiler here"
    assert f"torch.compile failed (RuntimeError: {message}); running eager" in capsys.readouterr().out
    eager = train(get_config("tiny"), tiny_data, tmp_path / "eager", progress=False)
    assert summary["total"] == eager["total"]  # the fallback is the eager model, step for step


@pytest.mark.slow
def test_compiled_training_matches_eager(tiny_data, tmp_path):
    """torch.compile (CPU inductor here) trains the same model, LPIPS-VGG term included (it is compiled
    together with the network): same losses up to float reordering."""
    overrides = {"train.epochs": 1, "train.steps_per_epoch": 5, "train.log_every": 5, "train.perceptual_weight": 0.1}
    eager = train(get_config("tiny", overrides=overrides), tiny_data, tmp_path / "eager", progress=False)
    compiled = train(get_config("tiny", overrides={**overrides, "train.compile": True}), tiny_data, tmp_path / "c", progress=False)
    assert compiled["step"] == eager["step"] == 5
    assert compiled["total"] == pytest.approx(eager["total"], rel=1e-2)
    assert compiled["perceptual"] == pytest.approx(eager["perceptual"], rel=1e-3) and eager["perceptual"] > 0.1
