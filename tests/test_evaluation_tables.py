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
from dictsr_core.evaluation.results import RECORD_KEYS
from dictsr_core.evaluation.tables import (PAPER_ABLATIONS, PAPER_COMPARISON, ablation_table, comparison_table,
                                           wants_ablation_table)
from dictsr_core.inference.index_maps import content_index_map

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
    from dictsr_core.training.trainer import train

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
        # every documented key in order; a trained run's record also names the checkpoint it scored
        assert list(record) == list(RECORD_KEYS) + ([] if name == "bicubic" else ["checkpoint_checksum"]) + ["split"], name
        assert record["split"] == "val"
        assert [row["name"] for row in record["evaluation"]["images"]] == sorted(VAL_SIZES)
        assert record["evaluation"]["summary"]["count"] == len(VAL_SIZES)
        assert record["dataset"] == DATASET and record["eval_device"] == "cpu"
    ours, a1, bicubic = records["ours"], records["a1"], records["bicubic"]
    assert (ours["method"], ours["preset"], ours["ablation"], ours["steps"]) == ("dictsr", "tiny", None, 4)
    assert (a1["ablation"], a1["config"]["model"]["hierarchical"]) == ("A1", False)
    assert ours["device"] == "cpu" and ours["train_wall_s"] > 0
    assert (ours["weights"], bicubic["weights"]) == ("last", None)  # trained without a weight average
    assert ours["entries"] == 64 and 1 <= ours["activated_entries"] <= 64
    assert ours["cost"]["inference_conv_layers"] > 0 and ours["cost"]["gmacs_128"] > 0
    assert Path(ours["run_dir"]).resolve() == runs["ours"].resolve()
    assert (bicubic["method"], bicubic["run_dir"], bicubic["steps"], bicubic["activated_entries"]) == ("bicubic", None, None, None)
    assert set(bicubic["cost"].values()) == {None}
    assert bicubic["comparison"] is None and set(ours["comparison"]) == set(a1["comparison"]) == {"bicubic"}
    for name in ("ours", "a1"):
        rows = {row["name"]: row for row in records[name]["evaluation"]["images"]}
        reference = {row["name"]: row for row in bicubic["evaluation"]["images"]}
        versus = records[name]["comparison"]["bicubic"]["psnr_rgb"]
        assert versus["mean_diff"] == pytest.approx(np.mean([rows[n]["psnr_rgb"] - reference[n]["psnr_rgb"] for n in rows]))
        assert (versus["n"], versus["clusters"], versus["dropped"]) == (2, 2, 0)  # cat and cup: two photos
        assert versus["ci_low"] <= versus["mean_diff"] <= versus["ci_high"]
        assert {"flat_fraction", "psnr_rgb_flat", "psnr_rgb_textured"} <= set(rows["cat"])


@pytest.mark.slow
def test_a_run_with_a_weight_average_is_scored_with_it_unless_asked_for_the_last_weights(data_dir, runs, tmp_path):
    from dictsr_core.config import get_config
    from dictsr_core.training.trainer import train

    run = tmp_path / "ema"
    train(get_config("tiny", None, {**FEW_STEPS, "train.ema_decay": 0.5}), data_dir, run, device="cpu", progress=False)
    scored = {}
    for weights in ("auto", "last"):
        code, _, stderr = run_cli(["table", "--runs", run, "--data", data_dir, "--out", tmp_path / weights,
                                   "--device", "cpu", "--tile", 8, "--weights", weights])
        assert code == 0, stderr
        scored[weights] = strict_json(tmp_path / weights / DATASET / "ema.json")
    assert (scored["auto"]["weights"], scored["last"]["weights"]) == ("average", "last")
    assert scored["auto"]["evaluation"]["summary"]["psnr_rgb"] != scored["last"]["evaluation"]["summary"]["psnr_rgb"]
    # a record of the average is not reused for the last weights
    code, _, stderr = run_cli(["table", "--runs", run, "--data", data_dir, "--out", tmp_path / "auto", "--device", "cpu",
                               "--tile", 8, "--weights", "last"])
    assert code == 0 and "ema: evaluating" in stderr and "ema: reusing" not in stderr, stderr
    assert strict_json(tmp_path / "auto" / DATASET / "ema.json")["weights"] == "last"
    code, _, stderr = run_cli(["table", "--runs", runs["ours"], "--data", data_dir, "--out", tmp_path / "none",
                               "--device", "cpu", "--tile", 8, "--weights", "average"])
    assert code != 0 and "ours" in stderr and "no weight average" in stderr, stderr


def test_bicubic_record_scores_match_a_direct_computation(table_run, data_dir):
    from dictsr_core.data.io import read_rgb
    from dictsr_core.evaluation.evaluate import bicubic_upscale
    from dictsr_core.evaluation.metrics import psnr_rgb, ssim_rgb

    row = table_run["records"]["bicubic"]["evaluation"]["images"][0]
    lr, hr = read_rgb(data_dir / "val_lr" / "cat.png"), read_rgb(data_dir / "val_hr" / "cat.png")
    assert row["name"] == "cat"
    assert row["psnr_rgb"] == pytest.approx(psnr_rgb(bicubic_upscale(lr), hr))
    assert row["ssim_rgb"] == pytest.approx(ssim_rgb(bicubic_upscale(lr), hr))


def test_activated_entries_count_the_distinct_indices_over_the_validation_images(table_run, runs, data_dir):
    from dictsr_core.data.io import read_rgb
    from dictsr_core.training.checkpoint import load_inference_model

    model, _, _ = load_inference_model(runs["ours"] / "checkpoints" / "last.pt")
    seen = set()
    for name in VAL_SIZES:
        lr = torch.from_numpy(read_rgb(data_dir / "val_lr" / f"{name}.png").copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            seen |= set(model.indices(lr).unique().tolist())
    assert table_run["records"]["ours"]["activated_entries"] == len(seen)


def test_tiled_index_map_equals_the_whole_image_index_map(runs):
    from dictsr_core.training.checkpoint import load_inference_model

    from skimage import data as skdata

    from dictsr_core.inference.tiled import receptive_margin, tile_plan

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
    versus = table_run["records"]["ours"]["comparison"]["bicubic"]["psnr_rgb"]
    assert dictsr["ΔPSNR vs bicubic [95% CI]"] == f"{versus['mean_diff']:+} [{versus['ci_low']:+}, {versus['ci_high']:+}]"
    assert dictsr["ΔLPIPS-Alex vs bicubic [95% CI]"].endswith("]") and dictsr["ΔLPIPS-Alex vs paired-bicubic [95% CI]"] == ""
    assert by_method["Bicubic"][0]["ΔPSNR vs bicubic [95% CI]"] == ""
    markdown = (table_run["folder"] / "table1.md").read_text()
    assert "| DictSR | ours | tiny | 4 |" in markdown and "| 0.259 | 22.46 | 0.629 |" in markdown
    assert f"| {versus['mean_diff']:+.2f} [{versus['ci_low']:+.2f}, {versus['ci_high']:+.2f}] |" in markdown
    images = read_csv(table_run["folder"] / "table1_images.csv")
    assert [row["image"] for row in images] == [*sorted(VAL_SIZES), "mean"]
    assert float(images[0]["PSNR (RGB) DictSR (ours)"]) == table_run["records"]["ours"]["evaluation"]["images"][0]["psnr_rgb"]
    assert markdown in table_run["stdout"]


def test_table3_has_ours_and_a1_beside_the_papers_rows(table_run):
    rows = {row["id"]: row for row in read_csv(table_run["folder"] / "table3.csv")}
    assert list(rows) == ["Ours", "A1"]
    for ident, name in (("Ours", "ours"), ("A1", "a1")):
        record = table_run["records"][name]
        assert rows[ident]["run"] == name
        assert int(rows[ident]["activated D_lr entries"]) == record["activated_entries"]
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
    # rewritten (a record is written when evaluated and again with its comparison: the inode alone may come back)
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) != stamp for p, stamp in zip(files[:2], before)] == [True, True]


def test_the_plan_counts_only_the_records_it_must_make(table_run, runs, data_dir, tmp_path):
    import shutil

    from dictsr_core.evaluation.results import stored_record
    from dictsr_core.workbook.estimate import records_to_make

    results = tmp_path / "results"
    shutil.copytree(table_run["results"], results)
    assert stored_record(runs["ours"], data_dir, results_root=results)["run"] == "ours"
    assert records_to_make([runs["ours"], runs["a1"]], data_dir, results) == 0  # all stored: nothing to score
    assert records_to_make([runs["ours"], runs["a1"]], data_dir, results, stale={runs["a1"]}) == 1  # to be retrained
    assert records_to_make([runs["ours"], tmp_path / "untrained"], data_dir, results) == 1  # no checkpoint yet
    retrained = strict_json(results / DATASET / "ours.json")
    retrained["train_wall_s"] += 1.0  # the record of another training of the run
    (results / DATASET / "ours.json").write_text(json.dumps(retrained))
    (results / DATASET / "bicubic.json").unlink()
    assert stored_record(runs["ours"], data_dir, results_root=results) is None
    assert records_to_make([runs["ours"], runs["a1"]], data_dir, results) == 2  # ours and bicubic


def test_a_run_derived_again_is_scored_again_though_it_keeps_its_sources_step(table_run, runs, data_dir, tmp_path):
    from dictsr_core.evaluation.results import stored_record
    from dictsr_core.training.code_coarsening import derive_coarse_run

    results, coarse = tmp_path / "results", tmp_path / "coarse"
    assert derive_coarse_run(runs["ours"], coarse, 4, data_dir, log=lambda line: None)
    code, _, stderr = run_cli(["table", "--runs", coarse, "--data", data_dir, "--out", results, "--device", "cpu"])
    assert code == 0 and "coarse: evaluating" in stderr
    record = strict_json(results / DATASET / "coarse.json")
    assert record["entries"] == 4 and len(record["checkpoint_checksum"]) == 64
    assert stored_record(coarse, data_dir, results_root=results)["entries"] == 4
    # another code in the same folder: same step and training time as before, another checkpoint
    assert derive_coarse_run(runs["ours"], coarse, 2, data_dir, log=lambda line: None)
    assert stored_record(coarse, data_dir, results_root=results) is None
    code, _, stderr = run_cli(["table", "--runs", coarse, "--data", data_dir, "--out", results, "--device", "cpu"])
    assert code == 0 and "coarse: evaluating" in stderr
    assert strict_json(results / DATASET / "coarse.json")["entries"] == 2
    # a record written before the checksum existed: reused for a trained run, scored again for a derived one
    old = strict_json(results / DATASET / "coarse.json")
    del old["checkpoint_checksum"]
    (results / DATASET / "coarse.json").write_text(json.dumps(old))
    assert stored_record(coarse, data_dir, results_root=results) is None
    trained = strict_json(table_run["folder"] / "ours.json")
    del trained["checkpoint_checksum"]
    (results / DATASET / "ours.json").write_text(json.dumps(trained))
    assert stored_record(runs["ours"], data_dir, results_root=results)["run"] == "ours"


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
    from dictsr_core.evaluation.tables import update_readme

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
    from dictsr_core.evaluation.results import validation_codebook_health

    model = tiny_inference
    rng = np.random.default_rng(0)
    pairs = [{"lr": rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)} for _ in range(3)]
    health = validation_codebook_health(model, pairs)
    assert health["offsets"] == 64 * 4
    assert 1 <= health["activated_offsets"] <= 3 * 5 * 7  # at most one (j, k) pair per code cell
    assert 1.0 <= health["perplexity"] <= 64


def test_codebook_health_reads_the_code_the_model_decodes_not_the_training_lookup():
    """A gated code whose gate no cell reaches decodes with its 2 coarse entries alone: the health must say so (it
    read the training lookup over all N entries before, and reported the fine model's numbers for dictsr-c8g)."""
    from dictsr_core.config import get_config
    from dictsr_core.evaluation.results import validation_codebook_health
    from dictsr_core.inference.index_maps import content_index_map
    from dictsr_core.model import DictSR

    torch.manual_seed(0)
    net = DictSR(get_config("tiny", overrides={"model.coarse_entries": 2, "model.texture_gate": 1e6}).model)
    hr = torch.rand(2, 3, 64, 64)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, torch.nn.functional.avg_pool2d(hr, 4)))
    with torch.no_grad():
        net.dictionaries.coarse_keep.copy_(torch.tensor([3, 40]))
    model = net.inference().eval()
    rng = np.random.default_rng(0)
    pairs = [{"lr": rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)} for _ in range(3)]
    used = torch.cat([content_index_map(model, item["lr"]).reshape(-1) for item in pairs]).unique().tolist()
    assert set(used) <= {3, 40}
    health = validation_codebook_health(model, pairs)
    assert 1.0 <= health["perplexity"] <= 2.0 + 1e-6
    assert 1 <= health["activated_offsets"] <= 2 * 4  # only around the two entries it decodes


# ---- comparison columns, region PSNRs, index agreement, per-image table (synthetic records) ------------------------

def _synthetic_record(run, method, psnr, lpips, *, ablation=None, agreement=None, draws=None, worth=None):
    """A result record as results.collect_records leaves it, without evaluating anything."""
    names = [f"p{p}__c{c}" for p in range(4) for c in range(2)]
    rows = [{"name": n, "psnr_rgb": psnr + 0.1 * i, "ssim_rgb": 0.7, "lpips_alex": lpips - 0.001 * i,
             "flat_fraction": 0.25, "psnr_rgb_flat": psnr + 5, "psnr_rgb_textured": psnr - 1} for i, n in enumerate(names)]
    summary = {"psnr_rgb": float(np.mean([r["psnr_rgb"] for r in rows])), "ssim_rgb": 0.7,
               "lpips_alex": float(np.mean([r["lpips_alex"] for r in rows])), "flat_fraction": 0.25,
               "psnr_rgb_flat": psnr + 5, "psnr_rgb_textured": psnr - 1, "count": len(rows), "non_finite": {}}
    if agreement is not None:
        summary.update(index_agreement=agreement, index_agreement_draws=draws)
    if worth is not None:  # every crop: own worth[0], clean worth[1] - 0.01 * photo
        for row in rows:
            photo = int(row["name"][1])
            row.update(lpips_alex_own_indices=worth[0], lpips_alex_clean_indices=worth[1] - 0.01 * photo)
        summary.update(lpips_alex_own_indices=worth[0],
                       lpips_alex_clean_indices=float(np.mean([r["lpips_alex_clean_indices"] for r in rows])))
    return {**dict.fromkeys(RECORD_KEYS), "run": run, "method": method, "ablation": ablation, "dataset": DATASET,
            "run_dir": None if method == "bicubic" else f"/runs/{run}", "preset": "tiny", "steps": 4,
            "cost": dict.fromkeys(("inference_conv_layers", "gmacs_128", "gmacs_128_executed", "params")),
            "evaluation": {"summary": summary, "images": rows}}


@pytest.fixture()
def synthetic_records():
    from dictsr_core.evaluation.results import attach_comparisons

    records = [_synthetic_record("bicubic", "bicubic", 25.0, 0.60),
               _synthetic_record("paired-bicubic", "paired-bicubic", 25.5, 0.55),
               _synthetic_record("dictsr", "dictsr", 26.0, 0.45, agreement=0.62, draws=0.55, worth=(0.4512, 0.4)),
               _synthetic_record("ablation-A1", "dictsr", 24.0, 0.50, ablation="A1", agreement=0.4)]
    changed = attach_comparisons(records)
    assert [r["run"] for r in changed] == ["paired-bicubic", "dictsr", "ablation-A1"]
    assert attach_comparisons(records) == [], "the same records give the same comparisons (seeded)"
    return records


def test_comparisons_are_attached_against_bicubic_and_paired_bicubic(synthetic_records):
    bicubic, paired, dictsr, _ = synthetic_records
    assert bicubic["comparison"] is None
    assert set(paired["comparison"]) == {"bicubic"} and set(dictsr["comparison"]) == {"bicubic", "paired-bicubic"}
    versus = dictsr["comparison"]["bicubic"]["psnr_rgb"]
    assert versus["mean_diff"] == pytest.approx(1.0) and versus["clusters"] == 4 and versus["n"] == 8
    assert versus["ci_low"] == pytest.approx(1.0) and versus["ci_high"] == pytest.approx(1.0)  # constant difference
    assert dictsr["comparison"]["paired-bicubic"]["lpips_alex"]["mean_diff"] == pytest.approx(-0.10)
    assert dictsr["comparison"]["bicubic"]["psnr_rgb_flat"]["mean_diff"] == pytest.approx(1.0)
    json.dumps(dictsr["comparison"], allow_nan=False)  # standard JSON as stored


def test_mismatched_images_are_a_results_error_naming_both_runs(synthetic_records):
    from dictsr_core.evaluation.results import ResultsError, attach_comparisons

    bicubic, _, dictsr, _ = synthetic_records
    dictsr = {**dictsr, "evaluation": {**dictsr["evaluation"], "images": dictsr["evaluation"]["images"][1:]}}
    with pytest.raises(ResultsError, match="'dictsr' and 'bicubic'"):
        attach_comparisons([bicubic, dictsr])


def test_table1_shows_the_intervals_region_psnrs_and_index_agreement(synthetic_records):
    table = comparison_table(synthetic_records)
    rows = {row[0]: dict(zip(table.titles(), row)) for row in table.rows}
    dictsr = rows["DictSR"]
    assert dictsr["ΔPSNR vs bicubic [95% CI]"].markdown == "+1.00 [+1.00, +1.00]"
    assert dictsr["ΔLPIPS-Alex vs bicubic [95% CI]"].markdown == "-0.1500 [-0.1500, -0.1500]"
    assert dictsr["ΔLPIPS-Alex vs paired-bicubic [95% CI]"].markdown == "-0.1000 [-0.1000, -0.1000]"
    assert dictsr["PSNR flat / textured"].markdown == "31.00 / 25.00"
    assert dictsr["index agreement"].markdown == "0.62 / 0.55"
    assert dictsr["LPIPS-Alex own -> clean indices, Δ [95% CI]"].markdown.startswith("0.451 -> 0.385, -0.066")
    assert rows["paired-bicubic"]["ΔLPIPS-Alex vs paired-bicubic [95% CI]"] is None
    assert rows["paired-bicubic"]["index agreement"] is None
    assert rows["Bicubic"]["ΔPSNR vs bicubic [95% CI]"] is None
    markdown = table.markdown()
    assert "95 % percentile bootstrap interval of the mean paired difference, resampling photos" in markdown
    assert "| +1.00 [+1.00, +1.00] | -0.1500 [-0.1500, -0.1500] | -0.1000 [-0.1000, -0.1000] | 31.00 / 25.00 | 0.62 / 0.55 |" in markdown
    assert "| Real-ESRGAN | - |" in markdown
    csv_rows = {row["method"]: row for row in read_csv_text(table.csv())}
    low, high = csv_rows["DictSR"]["ΔPSNR vs bicubic [95% CI]"].split(" [")[1].rstrip("]").split(", ")
    assert float(low) == pytest.approx(1.0) and float(high) == pytest.approx(1.0)
    assert csv_rows["Bicubic"]["index agreement"] == ""


def test_interval_cells_with_a_real_spread_and_without_an_interval():
    from dictsr_core.evaluation.tables import delta_cell

    record = {"comparison": {"bicubic": {"psnr_rgb": {"mean_diff": 0.4213, "ci_low": 0.1, "ci_high": 0.7549},
                                         "lpips_alex": {"mean_diff": -0.02, "ci_low": None, "ci_high": None}}}}
    assert delta_cell(record, "bicubic", "psnr_rgb", 2).markdown == "+0.42 [+0.10, +0.75]"
    assert delta_cell(record, "bicubic", "psnr_rgb", 2).csv == "+0.4213 [+0.1, +0.7549]"
    assert delta_cell(record, "bicubic", "lpips_alex", 4).markdown == "-0.0200 [-]"
    assert delta_cell(record, "paired-bicubic", "psnr_rgb", 2) is None and delta_cell({}, "bicubic", "psnr_rgb", 2) is None
    spans = {"comparison": {"paired-bicubic": {"lpips_alex": {"mean_diff": -0.086, "ci_low": -0.237, "ci_high": 0.0675,
                                                              "clusters": 10}}}}
    cell = delta_cell(spans, "paired-bicubic", "lpips_alex", 4)  # spans 0: how many photos would exclude it
    assert cell.markdown == "-0.0860 [-0.2370, +0.0675] (~32 photos)" and cell.csv.endswith(" (~32 photos)")


def test_ablation_table_gains_the_lpips_interval_and_index_agreement(synthetic_records):
    table = ablation_table(synthetic_records)
    rows = {row[0]: dict(zip(table.titles(), row)) for row in table.rows}
    assert list(rows) == ["Ours", "A1"]
    assert rows["A1"]["ΔLPIPS-Alex vs bicubic [95% CI]"].markdown == "-0.1000 [-0.1000, -0.1000]"
    # against the run it changes (Ours: -0.15 to bicubic), not against bicubic; Ours has no base
    assert rows["A1"]["ΔLPIPS-Alex vs its base [95% CI]"].markdown == "+0.0500 [+0.0500, +0.0500]"
    assert rows["Ours"]["ΔLPIPS-Alex vs its base [95% CI]"] is None
    assert "Cohen's kappa" in table.caption and "index cost" in table.caption
    assert rows["A1"]["index agreement"].markdown == "0.40" and rows["Ours"]["index agreement"].markdown == "0.62 / 0.55"
    # clean - own per photo: -0.0512, -0.0612, -0.0712, -0.0812 (mean -0.0662); photo means bound the interval
    worth = rows["Ours"]["LPIPS-Alex own -> clean indices, Δ [95% CI]"].markdown
    assert worth.startswith("0.451 -> 0.385, -0.066 [") and worth != "0.451 -> 0.385, -0.066 [-]"
    low, high = (float(v) for v in worth.split("[")[1].rstrip("]").split(", "))
    assert -0.0812 <= low < -0.0662 < high <= -0.0512
    assert rows["A1"]["LPIPS-Alex own -> clean indices, Δ [95% CI]"] is None
    assert "resampling photos" in table.caption and "perfect agreement" in table.caption


def test_agreement_worth_csv_keeps_signed_bounds_and_says_when_there_is_no_interval(synthetic_records):
    from dictsr_core.evaluation.tables import agreement_worth_cell

    dictsr = synthetic_records[2]
    own_clean, interval = agreement_worth_cell(dictsr).csv.split(", ", 1)
    assert own_clean == "0.4512 -> " + repr(dictsr["evaluation"]["summary"]["lpips_alex_clean_indices"])
    mean, bounds = interval.split(" [")
    low, high = bounds.rstrip("]").split(", ")
    assert mean.startswith("-0.066") and low.startswith("-") and high.startswith("-")  # signed, as the Δ columns
    assert float(low) < float(mean) < float(high)
    one_photo = {**dictsr, "evaluation": {**dictsr["evaluation"],
                                          "images": [r for r in dictsr["evaluation"]["images"] if r["name"][1] == "0"]}}
    cell = agreement_worth_cell(one_photo)
    assert cell.markdown.endswith("-0.051 [-]") and cell.csv.endswith(" [-]"), "one photo: no interval, not [nan, nan]"


def test_write_tables_writes_a_per_image_table_next_to_table1(synthetic_records, tmp_path):
    from dictsr_core.evaluation.tables import write_tables

    written, markdown = write_tables(synthetic_records, tmp_path)
    assert {p.name for p in written} == {"table1.md", "table1.csv", "table1_images.md", "table1_images.csv",
                                         "table1_photos.md", "table1_photos.csv", "table3.md", "table3.csv"}
    assert "| p0__c0 |" not in markdown, "the per-image table is written, not printed"
    assert "| all photos (4) |" in markdown and "| p0 |" not in markdown  # the photo groups, not each photo
    assert "| p0 |" in (tmp_path / "table1_photos.md").read_text()
    assert "DictSR (CVPR 2024) Table 1, AIM-RWSR" in markdown
    rows = read_csv(tmp_path / "table1_images.csv")
    assert [row["image"] for row in rows] == [f"p{p}__c{c}" for p in range(4) for c in range(2)] + ["mean"]
    assert list(rows[0]) == ["image", "photo", "flat_fraction", "PSNR (RGB) Bicubic", "PSNR (RGB) paired-bicubic",
                             "PSNR (RGB) DictSR", "LPIPS-Alex Bicubic", "LPIPS-Alex paired-bicubic", "LPIPS-Alex DictSR"]
    assert (rows[3]["photo"], float(rows[3]["flat_fraction"])) == ("p1", 0.25)
    assert float(rows[3]["PSNR (RGB) DictSR"]) == pytest.approx(26.3)
    assert float(rows[-1]["LPIPS-Alex Bicubic"]) == synthetic_records[0]["evaluation"]["summary"]["lpips_alex"]
    assert "| p0__c0 | p0 | 0.250 | 25.00 | 25.50 | 26.00 | 0.6000 |" in (tmp_path / "table1_images.md").read_text()


def test_photo_table_splits_flat_from_textured_photos_and_agrees_with_table1_on_all_photos():
    from dictsr_core.evaluation.results import attach_comparisons
    from dictsr_core.evaluation.tables import photo_table

    records = [_synthetic_record("bicubic", "bicubic", 25.0, 0.60),
               _synthetic_record("paired-bicubic", "paired-bicubic", 25.5, 0.55),
               _synthetic_record("dictsr", "dictsr", 26.0, 0.45)]
    flat = {0: 0.1, 1: 0.8, 2: 0.9, 3: 0.2}  # photos 1 and 2 flat: DictSR 0.2 ahead there, 0.05 behind elsewhere
    for record in records:
        for row in record["evaluation"]["images"]:
            photo = int(row["name"][1])
            row["flat_fraction"] = flat[photo] + (0.02 if row["name"].endswith("c1") else 0.0)
            if record["run"] == "dictsr":
                paired = next(r for r in records[1]["evaluation"]["images"] if r["name"] == row["name"])
                row["lpips_alex"] = paired["lpips_alex"] + (-0.2 if flat[photo] >= 0.5 else 0.05)
    attach_comparisons(records)
    table = photo_table(records)
    rows = {row[0]: dict(zip(table.titles(), row)) for row in table.rows}
    assert list(rows) == ["p2", "p1", "p3", "p0", "flat photos (2)", "textured photos (2)", "all photos (4)"]
    assert rows["p2"]["flat_fraction"] == pytest.approx(0.91) and rows["p2"]["crops"] == 2
    delta = "ΔLPIPS-Alex DictSR vs paired-bicubic"
    assert rows["p1"][delta] == pytest.approx(-0.2) and rows["p0"][delta] == pytest.approx(0.05)
    assert rows["flat photos (2)"][delta].markdown == "-0.2000 [-0.2000, -0.2000]"  # constant: a zero-width interval
    assert rows["textured photos (2)"][delta].markdown == "+0.0500 [+0.0500, +0.0500]"
    everything = records[2]["comparison"]["paired-bicubic"]["lpips_alex"]  # Table 1's interval, the same draws
    assert rows["all photos (4)"][delta].markdown.startswith(
        f"{everything['mean_diff']:+.4f} [{everything['ci_low']:+.4f}, {everything['ci_high']:+.4f}]")
    assert rows["all photos (4)"][delta].markdown.endswith(" photos)")  # spans 0: how many photos would exclude it
    assert rows["flat photos (2)"]["LPIPS-Alex paired-bicubic"] == pytest.approx(
        np.mean([r["lpips_alex"] for r in records[1]["evaluation"]["images"] if r["name"][1] in "12"]))
    assert not any("vs paired-bicubic" in t and ("Bicubic" in t or "paired-bicubic vs" in t) for t in table.titles())
    assert photo_table(records[:1] + records[2:]).titles()[-1] == "LPIPS-Alex DictSR"  # no reference: no Δ columns


def read_csv_text(text) -> list[dict]:
    return list(csv.DictReader(text.splitlines()))
