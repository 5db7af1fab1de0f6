import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dictsr_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_python_m_entry_point_and_info_json():
    result = subprocess.run(
        [sys.executable, "-m", "dictsr_core", "info", "--preset", "paper", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["inference_conv_layers"] == 18
    assert 116 <= info["gmacs_128"] <= 142
    assert info["params"] > info["inference_params"] > 0
    assert info["train_step_tflop"] > info["train_step_perceptual_tflop"] > 0  # paper batch, LPIPS term on


@pytest.mark.parametrize(
    "argv,message",
    [
        (["info", "--preset", "nope"], "unknown preset"),
        (["info", "--preset", "tiny", "--set", "model.bogus=1"], "unknown config key 'model.bogus'"),
        (["info", "--preset", "tiny", "--ablation", "Z7"], "unknown ablation"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--preset", "tiny", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_train_writes_the_run_folder(trained_run):
    assert (trained_run / "checkpoints" / "last.pt").is_file()
    assert (trained_run / "metrics.jsonl").read_text().count("\n") == 4
    assert "preset: tiny" in (trained_run / "config.yaml").read_text()


def test_sr_skips_bad_inputs_and_reports_them(trained_run, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(good)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((17, 19), 128, np.uint8)).save(gray)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("this is not an image")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    out = tmp_path / "sr"
    code = main(["sr", "--checkpoint", str(trained_run / "checkpoints" / "last.pt"), str(good), str(truncated),
                 str(empty), str(text), str(tiny), str(gray), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    for name in ("truncated.png", "empty.png", "text.png", "tiny.png"):
        assert name in err, err
    assert "4 of 6 input(s) failed" in err
    assert Image.open(out / "good.png").size == (120, 80)
    assert Image.open(out / "gray.png").size == (76, 68)
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "gray.png"]


def test_sr_with_a_bad_checkpoint_names_it(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x04junk")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    assert main(["sr", "--checkpoint", str(bad), str(image), "--out", str(tmp_path / "o")]) == 2
    assert "model.pt" in capsys.readouterr().err


def _project(tmp_path):
    """An empty project folder (what DICTSR_ROOT names): no runs yet."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    return root


def test_sr_without_checkpoint_uses_the_main_jobs_and_says_which(trained_run, tmp_path, capsys, monkeypatch):
    import shutil

    from dictsr_core.workbook.profiles import resolve_profile

    root = _project(tmp_path)
    monkeypatch.setenv("DICTSR_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (12, 14, 3), dtype=np.uint8)).save(image)
    assert main(["sr", str(image), "--device", "cpu"]) == 2  # nothing trained yet: how to get a checkpoint
    err = capsys.readouterr().err
    assert "the main job has not trained one yet" in err and "make main" in err and "--checkpoint" in err
    assert not (tmp_path / "sr").exists()
    # where `make main` on the bundled sample leaves it (the photos could not be fetched)
    ckpt = root / "runs" / f"{resolve_profile('auto').name}-sample-aim" / "dictsr" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(trained_run / "checkpoints" / "last.pt", ckpt)
    assert main(["sr", str(image), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"using the main job's DictSR checkpoint {ckpt}" in err
    assert Image.open(tmp_path / "sr" / "photo.png").size == (56, 48)  # default --out: ./sr
    # the cpu profile ends with its texture-gated code: that model, once made, before the older codes and the run
    # they came from (in a project of cpu runs only, so that this holds where `auto` is the gpu profile too)
    cpu_root = _project(tmp_path / "cpu")
    monkeypatch.setenv("DICTSR_ROOT", str(cpu_root))
    for run in ("dictsr", "dictsr-c8", "dictsr-c8g"):
        made = cpu_root / "runs" / "cpu-sample-aim" / run / "checkpoints" / "last.pt"
        made.parent.mkdir(parents=True)
        shutil.copy(trained_run / "checkpoints" / "last.pt", made)
        assert main(["sr", str(image), "--device", "cpu", "--overwrite"]) == 0
        assert f"using the main job's DictSR checkpoint {made}" in capsys.readouterr().err


@pytest.mark.slow
def test_info_all_lists_every_preset_ablation_and_rrdbnet(capsys):
    from dictsr_core.config import ABLATIONS, PRESETS, ablations_for

    assert main(["info", "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    one_code_per_pixel = [a for a in ABLATIONS if a != "D1"]
    assert ablations_for("cpu") == ablations_for("gpu") == one_code_per_pixel and ablations_for("paper") == list(ABLATIONS)
    assert len(rows) == len(PRESETS) * (len(ABLATIONS) + 1) - 2 + 1  # every pair but cpu + D1 and gpu + D1, then RRDBNet
    paper = next(r for r in rows if r["preset"] == "paper" and r["ablation"] is None)
    assert paper["inference_conv_layers"] == 18 and abs(paper["gmacs_128"] - 129.1) < 0.1
    assert next(r for r in rows if r["preset"] == "paper" and r["ablation"] == "F2")["inference_conv_layers"] == 26
    rrdb = rows[-1]
    assert rrdb["preset"].startswith("RRDBNet") and abs(rrdb["gmacs_128"] - 293.7) < 0.1 and 16.6e6 < rrdb["params"] < 16.8e6
