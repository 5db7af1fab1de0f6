"""The prepared device call and its scorer, end to end on the CPU (tiny preset, eager): the GPU session
runs exactly this code, so a mistake here would cost a device lease."""

import importlib.util
import json
import tarfile
from pathlib import Path

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


@pytest.mark.slow
def test_session_then_results_on_the_cpu(tmp_path):
    data = tmp_path / "sample-aim"
    prepare_dataset(data, source="sample", degradation="aim", seed=0)
    out = tmp_path / "OUT"
    summary = _script("gpu_session").main([
        "--data", str(data), "--out", str(out), "--preset", "tiny", "--device", "cpu", "--no-compile",
        "--skip-bench", "--step-ms", "50", "--train-s", "2", "--budget-s", "200",
    ])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "sr.tar", "train.json"]
    train = json.loads((out / "train.json").read_text())
    assert train["step"] == summary["step"] == train["config"]["train"]["steps_per_epoch"] * train["config"]["train"]["epochs"]
    assert train["step"] >= 10 and train["train_step_ms_run"] > 0
    with tarfile.open(out / "sr.tar") as archive:
        names = sorted(Path(n).name for n in archive.getnames() if n.endswith(".png"))
    assert names == sorted(p.name for p in (data / "val_lr").iterdir())

    results = tmp_path / "results"
    record = _script("gpu_results").main(["--session", str(out), "--data", str(data), "--name", "gpu", "--results", str(results)])
    written = json.loads((results / "sample-aim" / "gpu.json").read_text())
    assert written["steps"] == train["step"] and written["entries"] == get_config("tiny").model.entries
    for key in ("device", "train_wall_s", "activated_entries"):
        assert written[key] == record[key] is not None
    for method in ("dictsr", "dictsr_wavelet", "bicubic"):
        summary = written[method]["summary"]
        assert 10 < summary["psnr_rgb"] < 40 and 0 < summary["lpips_alex"] < 1
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
