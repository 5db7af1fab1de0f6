import csv
import io
import json
import math
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from dictsr_core.cli import main
from dictsr_core.data.io import read_rgb, write_rgb
from dictsr_core.data.resize import imresize_np
from dictsr_core.evaluation.evaluate import METRIC_KEYS, bicubic_upscale, non_finite_counts, report_record, summarize
from dictsr_core.evaluation.metrics import score_pair
from dictsr_core.evaluation.regions import REGION_KEYS, region_scores

NAMES = ("a", "b", "c")
REPORT_KEYS = {"method", "checkpoint", "step", "device", "seconds", "summary", "images"}


def synthetic_hr(seed: int, size: int = 64) -> np.ndarray:
    """Smooth colour ramps plus noise: enough structure that bicubic x4 is imperfect."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    ramps = np.stack([yy, xx, yy * xx], axis=-1) * 200 + 20
    return np.clip(ramps + rng.normal(0, 12, ramps.shape), 0, 255).round().astype(np.uint8)


def load_strict_json(path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path}: non-standard JSON constant {constant}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def run_quietly(argv) -> tuple[int, str]:
    with redirect_stdout(io.StringIO()) as stdout:
        code = main([str(arg) for arg in argv])
    return code, stdout.getvalue()


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    for seed, name in enumerate(NAMES):
        hr = synthetic_hr(seed)
        write_rgb(root / "hr" / f"{name}.png", hr)
        write_rgb(root / "lr" / f"{name}.png", imresize_np(hr, 0.25))
    return root


@pytest.fixture(scope="module")
def bicubic_run(pair_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bicubic")
    code, stdout = run_quietly(["evaluate", "--lr", pair_dirs / "lr", "--hr", pair_dirs / "hr", "--method", "bicubic",
                                "--json", out / "report.json", "--csv", out / "report.csv", "--save-sr", out / "sr",
                                "--device", "cpu"])
    assert code == 0
    return {"dir": out, "stdout": stdout, "report": load_strict_json(out / "report.json")}


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tmp_path_factory):
    from dictsr_core.config import get_config
    from dictsr_core.training.trainer import train

    summary = train(get_config("tiny"), tiny_data, tmp_path_factory.mktemp("tiny_run"), progress=False)
    return Path(summary["checkpoint"]), summary["step"]


def test_bicubic_evaluate_matches_score_pair_on_bicubic_upscale(pair_dirs, bicubic_run):
    rows = bicubic_run["report"]["images"]
    assert [row["name"] for row in rows] == list(NAMES)
    for row in rows:
        lr, hr = read_rgb(pair_dirs / "lr" / f"{row['name']}.png"), read_rgb(pair_dirs / "hr" / f"{row['name']}.png")
        expected = score_pair(bicubic_upscale(lr), hr, device="cpu")
        assert {key: row[key] for key in METRIC_KEYS} == pytest.approx(expected, rel=1e-9)
        assert 15 < row["psnr_rgb"] < 60 and 0 < row["lpips_alex"] < 1  # imperfect but finite
        assert np.array_equal(read_rgb(bicubic_run["dir"] / "sr" / f"{row['name']}.png"), bicubic_upscale(lr))


def test_rows_carry_the_flat_textured_split_of_the_reference(pair_dirs, bicubic_run):
    for row in bicubic_run["report"]["images"]:
        lr, hr = read_rgb(pair_dirs / "lr" / f"{row['name']}.png"), read_rgb(pair_dirs / "hr" / f"{row['name']}.png")
        expected = region_scores(bicubic_upscale(lr), hr)
        assert row["flat_fraction"] == expected["flat_fraction"] == 0.0  # noise std 12: no flat block
        assert row["psnr_rgb_flat"] is None  # NaN (no flat block) is null in the JSON
        assert row["psnr_rgb_textured"] == pytest.approx(row["psnr_rgb"], rel=1e-12)  # every pixel is textured


def test_summary_averages_region_keys_leaving_out_none_and_nan():
    rows = [{"name": "x", **dict.fromkeys(METRIC_KEYS, 0.5), "flat_fraction": 0.25, "psnr_rgb_flat": 40.0,
             "psnr_rgb_textured": 20.0},
            {"name": "y", **dict.fromkeys(METRIC_KEYS, 0.5), "flat_fraction": 0.75, "psnr_rgb_flat": math.nan,
             "psnr_rgb_textured": None},
            {"name": "z", **dict.fromkeys(METRIC_KEYS, 0.5), "flat_fraction": 0.5, "psnr_rgb_flat": 30.0,
             "psnr_rgb_textured": 24.0}]
    summary = summarize(rows)
    assert summary["flat_fraction"] == pytest.approx(0.5)
    assert summary["psnr_rgb_flat"] == pytest.approx(35.0) and summary["psnr_rgb_textured"] == pytest.approx(22.0)
    assert not set(REGION_KEYS) & set(summarize([{"name": "old", **dict.fromkeys(METRIC_KEYS, 0.5)}]))


def test_report_json_has_metadata_rows_and_means(pair_dirs, bicubic_run):
    report = bicubic_run["report"]
    assert set(report) == REPORT_KEYS | {"lr_dir", "hr_dir"}
    assert (report["method"], report["checkpoint"], report["step"], report["device"]) == ("bicubic", None, None, "cpu")
    assert report["lr_dir"] == str(pair_dirs / "lr") and report["hr_dir"] == str(pair_dirs / "hr")
    assert report["seconds"] > 0
    for row in report["images"]:
        assert set(row) == {"name", *METRIC_KEYS, *REGION_KEYS}
    summary = report["summary"]
    assert set(summary) == {*METRIC_KEYS, *REGION_KEYS, "count", "photos", "non_finite"}
    assert summary["count"] == len(NAMES) and summary["non_finite"] == {}
    assert summary["photos"] == len(NAMES)  # a, b, c: no crop suffix, so three photos
    for key in METRIC_KEYS:
        assert summary[key] == pytest.approx(np.mean([row[key] for row in report["images"]]), rel=1e-12)


def test_report_csv_has_a_row_per_image_and_a_mean_row(bicubic_run):
    with open(bicubic_run["dir"] / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    report = bicubic_run["report"]
    assert [row["name"] for row in table] == [*NAMES, "mean"]
    for csv_row, expected in zip(table, report["images"] + [report["summary"]]):
        assert {key: float(csv_row[key]) for key in METRIC_KEYS} == {key: expected[key] for key in METRIC_KEYS}


def test_evaluate_prints_a_markdown_summary(bicubic_run):
    lines = bicubic_run["stdout"].splitlines()
    summary = bicubic_run["report"]["summary"]
    assert lines[0].startswith("| method | images | PSNR (RGB) | SSIM (RGB, Measure.py) | SSIM (RGB, Gaussian 11) | "
                               "PSNR (Y, crop 4) |")
    assert lines[2].startswith(f"| bicubic | 3 | {summary['psnr_rgb']:.2f} | {summary['ssim_rgb']:.4f} | "
                               f"{summary['ssim_rgb_gauss']:.4f} |")
    assert lines[2].endswith(f"| {summary['lpips_vgg']:.4f} | {summary['hf_energy_ratio']:.2f} |")


def test_metrics_on_saved_sr_reproduces_evaluate(pair_dirs, bicubic_run, tmp_path):
    code, _ = run_quietly(["metrics", "--pred", bicubic_run["dir"] / "sr", "--ref", pair_dirs / "hr",
                           "--json", tmp_path / "m.json", "--device", "cpu"])
    assert code == 0
    report = load_strict_json(tmp_path / "m.json")
    assert set(report) == REPORT_KEYS | {"pred_dir", "ref_dir"}
    assert report["pred_dir"] == str(bicubic_run["dir"] / "sr") and report["method"] is None
    assert report["images"] == bicubic_run["report"]["images"]
    assert report["summary"] == bicubic_run["report"]["summary"]


def test_metrics_on_identical_folders_gives_ssim_1_and_null_psnr(pair_dirs, tmp_path):
    shutil.copytree(pair_dirs / "hr", tmp_path / "copy")
    code, stdout = run_quietly(["metrics", "--pred", tmp_path / "copy", "--ref", pair_dirs / "hr",
                                "--json", tmp_path / "m.json", "--csv", tmp_path / "m.csv", "--device", "cpu"])
    assert code == 0
    assert "Infinity" not in (tmp_path / "m.json").read_text()
    report = load_strict_json(tmp_path / "m.json")
    for row in report["images"] + [report["summary"]]:
        assert row["psnr_rgb"] is None and row["psnr_y"] is None
        assert row["ssim_rgb"] == pytest.approx(1.0, abs=1e-12) and row["ssim_y"] == pytest.approx(1.0, abs=1e-12)
        assert row["lpips_alex"] == pytest.approx(0.0, abs=1e-6) and row["lpips_vgg"] == pytest.approx(0.0, abs=1e-6)
    assert report["summary"]["non_finite"] == {"psnr_rgb": 3, "psnr_y": 3}
    assert "psnr_rgb 3 of 3, psnr_y 3 of 3" in stdout
    with open(tmp_path / "m.csv", newline="") as handle:
        assert {row["psnr_rgb"] for row in csv.DictReader(handle)} == {""}


def test_infinite_psnr_is_left_out_of_the_mean_and_counted():
    rows = [{"name": "x", **dict.fromkeys(METRIC_KEYS, 0.5), "psnr_rgb": 30.0},
            {"name": "y", **dict.fromkeys(METRIC_KEYS, 0.7), "psnr_rgb": math.inf}]
    summary = summarize(rows)
    assert summary["psnr_rgb"] == 30.0 and summary["ssim_rgb"] == pytest.approx(0.6)
    assert non_finite_counts(rows) == {"psnr_rgb": 1}
    record = report_record({"images": rows, "summary": summary, "seconds": 1.0}, method="test")
    assert record["images"][1]["psnr_rgb"] is None
    assert record["summary"]["count"] == 2 and record["summary"]["non_finite"] == {"psnr_rgb": 1}


def test_metrics_names_images_without_a_partner(tmp_path, capsys):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for folder, odd in ((pred, "only_pred"), (ref, "only_ref")):
        for name in ("a", odd):
            write_rgb(folder / f"{name}.png", synthetic_hr(0, 16))
    assert main(["metrics", "--pred", str(pred), "--ref", str(ref), "--json", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert str(pred / "only_pred.png") in err and str(ref / "only_ref.png") in err and "a.png" not in err
    assert not (tmp_path / "m.json").exists()


def test_metrics_names_two_files_with_one_stem(tmp_path, capsys):
    for folder in ("pred", "ref"):
        write_rgb(tmp_path / folder / "a.png", synthetic_hr(0, 16))
    write_rgb(tmp_path / "pred" / "a.jpg", synthetic_hr(0, 16))
    assert main(["metrics", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "pred" / "a.jpg") in err and str(tmp_path / "pred" / "a.png") in err


def test_metrics_names_both_files_of_a_size_mismatch(pair_dirs, tmp_path, capsys):
    shutil.copytree(pair_dirs / "hr", tmp_path / "pred")
    write_rgb(tmp_path / "pred" / "b.png", synthetic_hr(1)[:, :60])
    code = main(["metrics", "--pred", str(tmp_path / "pred"), "--ref", str(pair_dirs / "hr"), "--device", "cpu",
                 "--json", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 1  # the other pairs are scored and reported; b is listed as failed
    assert f"{tmp_path / 'pred' / 'b.png'} (60x64) and {pair_dirs / 'hr' / 'b.png'} (64x64) differ in size" in err
    report = load_strict_json(tmp_path / "m.json")
    assert [row["name"] for row in report["images"]] == ["a", "c"] and [row["name"] for row in report["failed"]] == ["b"]


def test_evaluate_names_unpaired_and_wrongly_sized_images(pair_dirs, tmp_path, capsys):
    lr, hr = tmp_path / "lr", tmp_path / "hr"
    shutil.copytree(pair_dirs / "lr", lr)
    shutil.copytree(pair_dirs / "hr", hr)
    write_rgb(lr / "extra.png", synthetic_hr(5, 16))
    assert main(["evaluate", "--lr", str(lr), "--hr", str(hr), "--method", "bicubic", "--device", "cpu"]) == 2
    assert str(lr / "extra.png") in capsys.readouterr().err
    write_rgb(hr / "extra.png", synthetic_hr(5, 60))
    assert main(["evaluate", "--lr", str(lr), "--hr", str(hr), "--method", "bicubic", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(lr / "extra.png") in err and str(hr / "extra.png") in err and "not exactly 1:4" in err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "dictsr"], "no --checkpoint given, and the main job has not trained one yet"),
        ([], "Run `make main` (or `dictsr main`) first, or pass --checkpoint CKPT"),
        (["--method", "bicubic", "--checkpoint", "model.pt"], "does not use a checkpoint"),
        (["--method", "bicubic", "--color-fix", "wavelet"], "nothing to colour-fix; drop --color-fix wavelet"),
    ],
)
def test_evaluate_method_and_checkpoint_must_agree(pair_dirs, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setenv("DICTSR_ROOT", str(tmp_path))  # a project folder where `make main` has not run
    argv = ["evaluate", "--lr", str(pair_dirs / "lr"), "--hr", str(pair_dirs / "hr"), "--json", str(tmp_path / "r.json")]
    assert main(argv + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_dictsr_evaluate_scores_and_saves_every_image(pair_dirs, tiny_checkpoint, tmp_path):
    checkpoint, step = tiny_checkpoint
    code, stdout = run_quietly(["evaluate", "--lr", pair_dirs / "lr", "--hr", pair_dirs / "hr", "--checkpoint", checkpoint,
                                "--json", tmp_path / "r.json", "--save-sr", tmp_path / "sr", "--tile", 8, "--device", "cpu"])
    assert code == 0 and "| dictsr | 3 |" in stdout
    report = load_strict_json(tmp_path / "r.json")
    assert (report["method"], report["checkpoint"], report["step"]) == ("dictsr", str(checkpoint), step)
    assert [row["name"] for row in report["images"]] == list(NAMES)
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == [f"{name}.png" for name in NAMES]
    first = report["images"][0]
    sr, hr = read_rgb(tmp_path / "sr" / "a.png"), read_rgb(pair_dirs / "hr" / "a.png")
    assert sr.shape == hr.shape
    assert {key: first[key] for key in METRIC_KEYS} == pytest.approx(score_pair(sr, hr, device="cpu"), rel=1e-9)


def test_color_fixed_evaluation_is_scored_under_its_own_name(pair_dirs, tiny_checkpoint, tmp_path):
    checkpoint, _ = tiny_checkpoint
    code, stdout = run_quietly(["evaluate", "--lr", pair_dirs / "lr", "--hr", pair_dirs / "hr", "--checkpoint", checkpoint,
                                "--json", tmp_path / "r.json", "--save-sr", tmp_path / "sr", "--color-fix", "wavelet",
                                "--device", "cpu"])
    assert code == 0 and "| dictsr+wavelet | 3 |" in stdout
    assert load_strict_json(tmp_path / "r.json")["method"] == "dictsr+wavelet"


def test_read_record_names_the_file_whatever_is_wrong_with_it(tmp_path):
    from dictsr_core.evaluation.results import ResultsError, is_record, read_record

    class Mine(ValueError):
        pass

    good = {"run": "x", "evaluation": {"images": [], "summary": {}}}
    (tmp_path / "good.json").write_text(json.dumps(good), encoding="utf-8")
    (tmp_path / "broken.json").write_text('{"run": "x", "evalu', encoding="utf-8")
    (tmp_path / "other.json").write_text(json.dumps({"folders": ["a"], "run": "x"}), encoding="utf-8")
    assert read_record(tmp_path / "good.json") == good and is_record(good)
    assert not is_record({"evaluation": {"images": []}}) and not is_record([good])
    with pytest.raises(ResultsError, match=r"missing\.json: no such result record \(score it first\)"):
        read_record(tmp_path / "missing.json", missing="score it first")
    with pytest.raises(Mine, match=r"broken\.json: not a result record \(JSONDecodeError"):
        read_record(tmp_path / "broken.json", Mine)
    with pytest.raises(Mine, match=r"other\.json: not a result record \(no evaluation\.images"):
        read_record(tmp_path / "other.json", Mine)
