"""The prepared device call and its scorer, end to end on the CPU (tiny preset, eager): the GPU session
runs exactly this code, so a mistake here would cost a device lease."""

import importlib.util
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dictsr_core.config import get_config
from dictsr_core.data.prepare import prepare_dataset

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_planned_steps_fit_the_time_and_keep_the_schedule():
    session = _script("gpu_session")
    plan = session.planned_steps("gpu", seconds=300, step_ms=25)
    cfg = get_config("gpu", overrides=plan)
    assert cfg.train.epochs == get_config("gpu").train.epochs  # same number of lr halvings
    assert 300 * 0.8 <= cfg.train.total_steps * 25 * 1.1 / 1000 <= 300
    assert cfg.train.checkpoint_every == cfg.train.total_steps
    assert session.steady_step_ms([{"it_s": 1.0}, {"it_s": 40.0}, {"it_s": 50.0}, {"it_s": 20.0}]) == 25.0


def test_planned_steps_time_the_perceptual_phase_at_its_own_step():
    session = _script("gpu_session")
    t = get_config("gpu").train
    share = 1 - t.perceptual_from
    plan = session.planned_steps("gpu", seconds=300, step_ms=30, perceptual_step_ms=60)
    steps = get_config("gpu", overrides=plan).train.total_steps
    seconds = steps * ((1 - share) * 30 + share * 60) * 1.1 / 1000
    assert 300 * 0.95 <= seconds <= 300
    assert steps < get_config("gpu", overrides=session.planned_steps("gpu", seconds=300, step_ms=30)).train.total_steps


def test_weights_come_back_in_parts_and_join_checked(tmp_path, monkeypatch):
    import torch

    from dictsr_core.model.dictsr import DictSR
    from dictsr_core.training.checkpoint import load_checkpoint, save_checkpoint

    session, results = _script("gpu_session"), _script("gpu_results")
    cfg = get_config("tiny")
    model = DictSR(cfg.model)
    average = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "last.pt", model_state=model.state_dict(), config=cfg, step=7, model_ema=average,
                    optimizer={"state": {}, "param_groups": []}, train_wall_s=3.0)
    out = tmp_path / "OUT"
    out.mkdir()
    monkeypatch.setattr(session, "PART_BYTES", 40_000)
    weights = session.write_weight_parts(load_checkpoint(tmp_path / "last.pt"), out)
    parts = sorted(out.glob("weights.pt.*"))
    assert weights["parts"] == len(parts) >= 2 and all(p.stat().st_size <= 40_000 for p in parts)
    (out / "metrics.jsonl").write_text('{"step": 7}\n')
    train = {"weights": weights}
    joined = results.join_weights(out, train, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    assert torch.equal(load_checkpoint(checkpoint)["model"]["dictionaries.d_lr"], joined["model"]["dictionaries.d_lr"])
    assert joined["step"] == 7 and "optimizer" not in joined and joined["train_wall_s"] == 3.0
    for key, value in model.state_dict().items():
        assert torch.equal(joined["model"][key], value) and torch.equal(joined["model_ema"][key], average[key])
    assert get_config("tiny").to_dict() == load_checkpoint(checkpoint)["config"].to_dict()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"step": 7}\n'
    assert (tmp_path / "run" / "config.yaml").is_file()
    # a part lost or changed on the way: refused, and named
    parts[-1].write_bytes(parts[-1].read_bytes()[:-1] + b"x")
    with pytest.raises(SystemExit, match="do not join"):
        results.join_weights(out, train, tmp_path / "run2")
    assert results.join_weights(out, {}, tmp_path / "run3") is None  # a session without weights


@pytest.mark.slow
def test_session_then_results_on_the_cpu(tmp_path):
    data = tmp_path / "sample-aim"
    prepare_dataset(data, source="sample", degradation="aim", seed=0)
    out = tmp_path / "OUT"
    summary = _script("gpu_session").main([
        "--data", str(data), "--out", str(out), "--preset", "tiny", "--device", "cpu", "--no-compile",
        "--skip-bench", "--probe-steps", "8", "--train-s", "2", "--budget-s", "200",
    ])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "sr.tar", "train.json", "weights.pt.00"]
    train = json.loads((out / "train.json").read_text())
    assert train["step"] == summary["step"] == train["config"]["train"]["steps_per_epoch"] * train["config"]["train"]["epochs"]
    assert train["step"] >= 10 and train["train_step_ms_run"] > 0 and train["probe_step_ms"] > 0
    with tarfile.open(out / "sr.tar") as archive:
        names = sorted(Path(n).name for n in archive.getnames() if n.endswith(".png"))
    assert names == sorted(p.name for p in (data / "val_lr").iterdir())

    results = tmp_path / "results"
    record = _script("gpu_results").main(["--session", str(out), "--data", str(data), "--name", "gpu", "--results", str(results),
                                          "--run-dir", str(tmp_path / "run")])
    written = json.loads((results / "sample-aim" / "gpu.json").read_text())
    assert written["run_dir"] == str(tmp_path / "run") and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert 0 <= written["index_agreement"] <= 1 and 0 <= written["index_agreement_draws"] <= 1
    assert written["steps"] == train["step"] and written["entries"] == get_config("tiny").model.entries
    for key in ("device", "train_wall_s", "activated_entries"):
        assert written[key] == record[key] is not None
    for method in ("dictsr", "dictsr_wavelet", "bicubic"):
        summary = written[method]["summary"]
        assert 10 < summary["psnr_rgb"] < 40 and 0 < summary["lpips_alex"] < 1
    # bicubic's row against its own computation: the record holds the numbers of these very pairs
    from dictsr_core.data.datasets import PairedImages
    from dictsr_core.evaluation.evaluate import bicubic_upscale
    from dictsr_core.evaluation.metrics import psnr_rgb

    pairs = PairedImages(data / "val_lr", data / "val_hr")
    expected = np.mean([psnr_rgb(bicubic_upscale(pairs[i]["lr"]), pairs[i]["hr"]) for i in range(len(pairs))])
    assert written["bicubic"]["summary"]["psnr_rgb"] == pytest.approx(expected, abs=1e-6)
    assert written["ratios"]["lpips_alex_vs_bicubic"] == pytest.approx(
        written["dictsr"]["summary"]["lpips_alex"] / written["bicubic"]["summary"]["lpips_alex"])
    table = (results / "sample-aim" / "gpu.md").read_text()
    assert "| bicubic |" in table and "| dictsr |" in table and "| dictsr+wavelet (not the paper) |" in table
    assert not (results / "bench").exists()  # no bench ran: no card file is written


def test_carry_stores_training_photos_losslessly(tmp_path):
    import numpy as np

    from dictsr_core.data.io import read_rgb, write_rgb

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    write_rgb(tmp_path / "a.png", photo)
    _script("make_gpu_carry").lossless_webp(tmp_path / "a.png", tmp_path / "a.webp")
    assert np.array_equal(read_rgb(tmp_path / "a.webp"), photo)
