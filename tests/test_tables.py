import csv
import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from dictsr_core.cli import main
from dictsr_core.data.io import write_rgb
from dictsr_core.data.resize import imresize_np
from dictsr_core.results import RECORD_KEYS, content_index_map
from dictsr_core.tables import (PAPER_ABLATIONS, PAPER_COMPARISON, ablation_table, comparison_table,
                                wants_ablation_table)

DATASET = "tiny-val"
VAL_SIZES = {"cat": (64, 80), "cup": (48, 64)}  # HR height, width; LR is a quarter of each
FEW_STEPS = {"train.steps_per_epoch": 4, "train.log_every": 2, "train.checkpoint_every": 4}  # seconds on 2 CPU cores


def run_cli(argv) -> tuple[int, str, str]:
    with redirect_stdout(io.StringIO()) as out, redirect_stderr(io.StringIO()) as err:
        code = main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def read_csv(path) -> list[dict]:
    return list(csv.DictReader(Path(path).read_text().splitlines()))


def strict_json(path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path}: non-standard JSON constant {constant}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from a second thread, and when the 2 cores are shared OpenMP's spinning
    makes two threads 10x slower than one (measured: a 4-step tiny training 16 s vs 1.4 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_dir(tiny_data, tmp_path_factory):
    """tiny_data's unpaired training folders plus two validation pairs (HR crops of photos, bicubic x1/4 LR)."""
    from skimage import data as skdata

    root = tmp_path_factory.mktemp("tables") / DATASET
    for folder in ("train_hr", "train_lr"):
        shutil.copytree(tiny_data / folder, root / folder)
    for (name, (h, w)), photo in zip(VAL_SIZES.items(), (skdata.chelsea(), skdata.coffee())):
        hr = np.ascontiguousarray(photo[100 : 100 + h, 120 : 120 + w])
        write_rgb(root / "val_hr" / f"{name}.png", hr)
        write_rgb(root / "val_lr" / f"{name}.png", imresize_np(hr, 0.25))
    return root


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """Two short tiny runs: the full model and ablation A1."""
    from dictsr_core.config import get_config
    from dictsr_core.train import train

    root = tmp_path_factory.mktemp("runs")
    out = {"ours": root / "ours", "a1": root / "a1"}
    train(get_config("tiny", None, FEW_STEPS), data_dir, out["ours"], device="cpu", progress=False)
    train(get_config("tiny", "A1", FEW_STEPS), data_dir, out["a1"], device="cpu", progress=False)
    return out


@pytest.fixture(scope="module")
def table_run(runs, data_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    code, stdout, stderr = run_cli(["table", "--runs", runs["ours"], runs["a1"], "--data", data_dir, "--out", results,
                                    "--device", "cpu", "--tile", 8])
    assert code == 0, stderr
    folder = results / DATASET
    records = {name: strict_json(folder / f"{name}.json") for name in ("bicubic", "ours", "a1")}
    return {"results": results, "folder": folder, "stdout": stdout, "stderr": stderr, "records": records}


def test_results_json_per_run_with_the_documented_keys(table_run, runs):
    records = table_run["records"]
    for name, record in records.items():
        assert list(record) == list(RECORD_KEYS), name
        assert [row["name"] for row in record["evaluation"]["images"]] == sorted(VAL_SIZES)
        assert record["evaluation"]["summary"]["count"] == len(VAL_SIZES)
        assert record["dataset"] == DATASET and record["eval_device"] == "cpu"
    ours, a1, bicubic = records["ours"], records["a1"], records["bicubic"]
    assert (ours["method"], ours["preset"], ours["ablation"], ours["steps"]) == ("dictsr", "tiny", None, 4)
    assert (a1["ablation"], a1["config"]["model"]["hierarchical"]) == ("A1", False)
    assert ours["device"] == "cpu" and ours["train_wall_s"] > 0
    assert ours["entries"] == 64 and 1 <= ours["activated_entries"] <= 64
    assert ours["cost"]["inference_conv_layers"] > 0 and ours["cost"]["gmacs_128"] > 0
    assert Path(ours["run_dir"]).resolve() == runs["ours"].resolve()
    assert (bicubic["method"], bicubic["run_dir"], bicubic["steps"], bicubic["activated_entries"]) == ("bicubic", None, None, None)
    assert set(bicubic["cost"].values()) == {None}


def test_bicubic_record_scores_match_a_direct_computation(table_run, data_dir):
    from dictsr_core.data.io import read_rgb
    from dictsr_core.evaluate import bicubic_upscale
    from dictsr_core.metrics import psnr_rgb, ssim_rgb

    row = table_run["records"]["bicubic"]["evaluation"]["images"][0]
    lr, hr = read_rgb(data_dir / "val_lr" / "cat.png"), read_rgb(data_dir / "val_hr" / "cat.png")
    assert row["name"] == "cat"
    assert row["psnr_rgb"] == pytest.approx(psnr_rgb(bicubic_upscale(lr), hr))
    assert row["ssim_rgb"] == pytest.approx(ssim_rgb(bicubic_upscale(lr), hr))


def test_activated_entries_count_the_distinct_indices_over_the_validation_images(table_run, runs, data_dir):
    from dictsr_core.checkpoint import load_inference_model
    from dictsr_core.data.io import read_rgb

    model, _, _ = load_inference_model(runs["ours"] / "checkpoints" / "last.pt")
    seen = set()
    for name in VAL_SIZES:
        lr = torch.from_numpy(read_rgb(data_dir / "val_lr" / f"{name}.png").copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            seen |= set(model.indices(lr).unique().tolist())
    assert table_run["records"]["ours"]["activated_entries"] == len(seen)


def test_tiled_index_map_equals_the_whole_image_index_map(runs):
    from dictsr_core.checkpoint import load_inference_model

    from skimage import data as skdata

    from dictsr_core.infer import receptive_margin, tile_plan

    model, _, _ = load_inference_model(runs["ours"] / "checkpoints" / "last.pt")
    lr = np.ascontiguousarray(skdata.astronaut()[::4, ::4][10:80, 20:95])  # 70 x 75: an odd width pads the last code column
    windows = [window for window, _ in tile_plan(70, 75, 16, receptive_margin(model))]
    assert any(t1 - t0 < 70 and l1 - l0 < 75 for t0, t1, l0, l1 in windows), "some tile must see only part of the image"
    whole = content_index_map(model, lr, tile=0)
    assert whole.shape == (35, 38) and len(whole.unique()) > 1
    assert torch.equal(content_index_map(model, lr, tile=16), whole)


def test_table1_rows_hold_our_numbers_and_the_papers_apart(table_run):
    rows = read_csv(table_run["folder"] / "table1.csv")
    by_method = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    assert list(by_method) == ["Bicubic", "Real-ESRGAN", "DeFlow", "DictSR"]
    assert len(by_method["DictSR"]) == 1, "the A1 run belongs to the ablation table only"
    for method, name in (("Bicubic", "bicubic"), ("DictSR", "ours")):
        row, summary = by_method[method][0], table_run["records"][name]["evaluation"]["summary"]
        assert float(row["LPIPS-Alex"]) == summary["lpips_alex"]
        assert float(row["PSNR (RGB)"]) == summary["psnr_rgb"]
        assert float(row["SSIM (RGB)"]) == summary["ssim_rgb"]
    dictsr = by_method["DictSR"][0]
    assert (dictsr["run"], dictsr["steps"]) == ("ours", "4")
    assert int(dictsr["#layers"]) == table_run["records"]["ours"]["cost"]["inference_conv_layers"]
    assert [dictsr[f"paper {m} (AIM-RWSR)"] for m in ("LPIPS", "PSNR", "SSIM")] == ["0.259", "22.46", "0.629"]
    assert (dictsr["paper #layers"], dictsr["paper GMACs"]) == ("18", "129")
    assert [by_method["Bicubic"][0][f"paper {m} (AIM-RWSR)"] for m in ("LPIPS", "PSNR", "SSIM")] == ["0.537", "22.35", "0.617"]
    esrgan = by_method["Real-ESRGAN"][0]
    assert esrgan["LPIPS-Alex"] == esrgan["run"] == "" and esrgan["paper LPIPS (AIM-RWSR)"] == "0.238"
    markdown = (table_run["folder"] / "table1.md").read_text()
    assert "| DictSR | ours | tiny | 4 |" in markdown and "| 0.259 | 22.46 | 0.629 |" in markdown
    assert markdown in table_run["stdout"]


def test_table3_has_ours_and_a1_beside_the_papers_rows(table_run):
    rows = {row["id"]: row for row in read_csv(table_run["folder"] / "table3.csv")}
    assert list(rows) == ["Ours", "A1"]
    for ident, name in (("Ours", "ours"), ("A1", "a1")):
        record = table_run["records"][name]
        assert rows[ident]["run"] == name
        assert int(rows[ident]["activated D_lr entries (validation)"]) == record["activated_entries"]
        assert float(rows[ident]["PSNR (RGB)"]) == record["evaluation"]["summary"]["psnr_rgb"]
    assert rows["A1"]["change"] == "no degradation dictionary"
    assert [rows["A1"][f"paper {m} (AIM-RWSR)"] for m in ("LPIPS", "PSNR", "SSIM")] == ["0.281", "22.4", "0.619"]
    assert rows["A1"]["paper activated D_lr entries (AIM-RWSR)"] == "3560"
    assert rows["Ours"]["paper activated D_lr entries (AIM-RWSR)"] == "4050"
    assert (table_run["folder"] / "table3.md").read_text() in table_run["stdout"]


def test_rerun_reuses_results_and_force_reevaluates(table_run, runs, data_dir):
    folder = table_run["folder"]
    files = [folder / f"{name}.json" for name in ("bicubic", "ours", "a1")]
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files]
    argv = ["table", "--runs", runs["ours"], runs["a1"], "--data", data_dir, "--out", table_run["results"], "--device", "cpu"]
    code, stdout, stderr = run_cli(argv)
    assert code == 0 and stderr.count("reusing") == 3
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files] == before
    assert stdout == table_run["stdout"]

    stale = strict_json(folder / "a1.json")
    stale["steps"] = 2  # as if written from an earlier checkpoint of the run
    (folder / "a1.json").write_text(json.dumps(stale))
    code, _, stderr = run_cli(argv)
    assert code == 0 and stderr.count("reusing") == 2 and strict_json(folder / "a1.json")["steps"] == 4

    retrained = strict_json(folder / "a1.json")
    retrained["train_wall_s"] = (retrained["train_wall_s"] or 0) + 1.0  # the run trained again to the same step
    (folder / "a1.json").write_text(json.dumps(retrained))
    code, _, stderr = run_cli(argv)
    assert code == 0 and stderr.count("reusing") == 2 and "a1: evaluating" in stderr

    code, _, stderr = run_cli(argv[:3] + argv[4:] + ["--force"])  # without the A1 run: two evaluations, not three
    assert code == 0 and "reusing" not in stderr
    assert [p.stat().st_ino != ino for p, (ino, _) in zip(files[:2], before)] == [True, True]


def test_paper_ntire_puts_table2_beside_ours(table_run, runs, data_dir, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(table_run["results"], results)
    code, stdout, stderr = run_cli(["table", "--runs", runs["ours"], "--data", data_dir, "--out", results,
                                    "--paper", "ntire", "--device", "cpu"])
    assert code == 0 and stderr.count("reusing") == 2
    dictsr = [row for row in read_csv(results / DATASET / "table1.csv") if row["method"] == "DictSR"][0]
    assert [dictsr[f"paper {m} (NTIRE-RWSR)"] for m in ("LPIPS", "PSNR", "SSIM")] == ["0.204", "25.9", "0.711"]
    assert "Table 2 style" in stdout and "AIM-RWSR" not in stdout.split("\n\n")[1]


def test_run_without_checkpoint_is_an_error_naming_it(runs, data_dir, tmp_path):
    empty = tmp_path / "not-trained"
    empty.mkdir()
    code, _, stderr = run_cli(["table", "--runs", runs["ours"], empty, "--data", data_dir, "--out", tmp_path / "r"])
    assert code == 2 and str(empty) in stderr and "checkpoint" in stderr
    assert not (tmp_path / "r").exists(), "nothing is evaluated before every run folder is checked"


def test_two_runs_with_one_name_are_an_error(runs, data_dir, tmp_path):
    twin = tmp_path / "ours"
    shutil.copytree(runs["ours"], twin)
    code, _, stderr = run_cli(["table", "--runs", runs["ours"], twin, "--data", data_dir, "--out", tmp_path / "r"])
    assert code == 2 and "two runs named 'ours'" in stderr


def test_data_folder_without_validation_pairs_is_an_error_naming_it(runs, tiny_data, tmp_path):
    code, _, stderr = run_cli(["table", "--runs", runs["ours"], "--data", tiny_data, "--out", tmp_path / "r"])
    assert code == 2 and str(tiny_data / "val_lr") in stderr


def test_ablation_table_only_when_there_is_an_ablation_or_several_dictsr_runs(table_run):
    records = table_run["records"]
    assert not wants_ablation_table([records["bicubic"], records["ours"]])
    assert wants_ablation_table([records["bicubic"], records["a1"]])
    assert wants_ablation_table([records["ours"], {**records["ours"], "run": "ours-2"}])
    assert ablation_table([records["a1"], records["ours"]]).rows[0][0] == "Ours"


def test_paper_numbers_are_the_papers():
    assert PAPER_COMPARISON["aim"]["dictsr"].psnr == 22.46 and PAPER_COMPARISON["ntire"]["deflow"].lpips == 0.218
    assert PAPER_ABLATIONS["E1"].psnr == 8.28 and PAPER_ABLATIONS["C2"].activated == 105
    assert PAPER_ABLATIONS["F2"].lpips == 0.256 and PAPER_ABLATIONS["F2"].activated is None
    with pytest.raises(ValueError, match="--paper 'div2k'"):
        comparison_table([], paper="div2k")


def test_update_readme_replaces_only_its_block(tmp_path):
    from dictsr_core.tables import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nintro\n")
    update_readme(readme, "sample-aim", "| a |\n|---|\n| 1 |\n")
    first = readme.read_text()
    assert first.startswith("# Title\n\nintro\n") and "| 1 |" in first
    readme.write_text(first + "\n## After\n\nkept\n")
    update_readme(readme, "sample-aim", "| a |\n|---|\n| 2 |\n")
    text = readme.read_text()
    assert "| 2 |" in text and "| 1 |" not in text
    assert text.count("dictsr table sample-aim: start") == 1 and text.endswith("## After\n\nkept\n")


def test_validation_codebook_health_counts_offsets(tiny_inference):
    from dictsr_core.results import validation_codebook_health

    model = tiny_inference
    rng = np.random.default_rng(0)
    pairs = [{"lr": rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)} for _ in range(3)]
    health = validation_codebook_health(model, pairs)
    assert health["offsets"] == 64 * 4
    assert 1 <= health["activated_offsets"] <= 3 * 5 * 7  # at most one (j, k) pair per code cell
    assert 1.0 <= health["perplexity"] <= 64
