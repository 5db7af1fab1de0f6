"""`dictsr targets`: the peers issue's targets per training seed and pooled, on synthetic records with known answers."""

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from dictsr_core.cli import main
from dictsr_core.evaluation.seeds import SeedsError
from dictsr_core.evaluation.targets import dataset_targets, targets_table

NAMES = [f"p{p}__c{c}" for p in range(6) for c in range(2)]  # 6 photos, 2 crops each
PEERS = ("plain-realesrgan-deg", "plain-noise-injection")


def _record(run, seed, lpips, psnr, summary=None, wall_s=None):
    rows = [{"name": n, "lpips_alex": float(v), "psnr_rgb": float(p)} for n, v, p in zip(NAMES, lpips, psnr)]
    return {"run": run, "dataset": "synthetic", "split": "test", "config": {"train": {"seed": seed}},
            "train_wall_s": wall_s, "evaluation": {"images": rows, "summary": summary or {}}}


def _folder(tmp_path, seed, run_lpips, peer_lpips, *, kappa=0.3, cost=0.05, run_psnr=25.0, wall_s=1200.0,
            peer_wall_s=(1300.0, 1250.0)):
    folder = tmp_path / f"seed-{seed}" / "synthetic"
    folder.mkdir(parents=True)
    n = len(NAMES)
    summary = {"index_kappa": kappa, "index_cost_lpips_alex": cost, "index_agreement": 1.0}
    records = {"dictsr": _record("dictsr", seed, run_lpips, np.full(n, run_psnr), summary, wall_s),
               "bicubic": _record("bicubic", seed, np.full(n, 0.6), np.full(n, 25.5))}
    for peer, lpips, wall in zip(PEERS, peer_lpips, peer_wall_s):
        records[peer] = _record(peer, seed, lpips, np.full(n, 24.0), None, wall)
    for run, record in records.items():
        (folder / f"{run}.json").write_text(json.dumps(record))
    return folder


def test_a_run_that_meets_every_target_is_marked_so_with_the_known_numbers(tmp_path):
    n = len(NAMES)
    folders = [_folder(tmp_path, seed, np.full(n, 0.42), (np.full(n, 0.50), np.full(n, 0.45))) for seed in (0, 1)]
    found = dataset_targets(folders, "dictsr")
    assert [row["label"] for row in found["rows"]] == ["seed 0", "seed 1", "pooled"]
    for row in found["rows"]:
        assert row["lpips_ratio"] == pytest.approx(0.7) and row["psnr_vs_bicubic"] == pytest.approx(-0.5)
        assert row["vs"]["plain-realesrgan-deg"]["mean_diff"] == pytest.approx(-0.08)
        assert row["vs"]["plain-noise-injection"]["ci_high"] == pytest.approx(-0.03)  # constant: a point interval
        assert row["kappa"] == pytest.approx(0.3) and row["index_cost"] == pytest.approx(0.05)
        assert row["met"] == {"ahead_of_plain-realesrgan-deg": True, "ahead_of_plain-noise-injection": True,
                              "psnr_vs_bicubic": True, "budget": True}
    assert found["images"] == n and found["photos"] == 6 and found["split"] == "test"
    markdown = targets_table([found]).markdown()
    assert markdown.count("4 of 4") == 3 and " ✗ |" not in markdown
    assert "-0.080 [-0.080, -0.080] ✓" in markdown and "-0.030 [-0.030, -0.030] ✓" in markdown
    assert "20.0 / 21.7 / 20.8 ✓" in markdown and "| 0.30 | +0.050 |" in markdown
    assert "agreement" not in markdown.split("\n")[0]  # raw agreement is no column: a one-entry code meets it


def test_each_target_is_missed_on_its_own_measure(tmp_path):
    n = len(NAMES)
    rng = np.random.default_rng(0)
    spread = rng.normal(0, 0.1, n)  # a lead of 0.02 on average, drowned in photo-to-photo spread
    folders = [_folder(tmp_path, 0, np.full(n, 0.50), (np.full(n, 0.51), np.full(n, 0.45)), run_psnr=24.0,
                       wall_s=2000.0),
               _folder(tmp_path, 1, 0.45 + spread - spread.mean(), (np.full(n, 0.47), np.full(n, 0.60)))]
    first, second, pooled = dataset_targets(folders, "dictsr")["rows"]
    assert first["met"] == {"ahead_of_plain-realesrgan-deg": True, "ahead_of_plain-noise-injection": False,
                            "psnr_vs_bicubic": False, "budget": False}  # behind noise injection; -1.5 dB; 33.3 min
    assert second["vs"]["plain-realesrgan-deg"]["ci_low"] < 0 < second["vs"]["plain-realesrgan-deg"]["ci_high"]
    assert second["met"]["ahead_of_plain-realesrgan-deg"] is False and second["met"]["budget"] is True
    assert pooled["minutes"] == pytest.approx(2000 / 60) and pooled["kappa"] == pytest.approx(0.3)
    markdown = targets_table([dataset_targets(folders, "dictsr")]).markdown()
    assert "-1.50 ✗" in markdown and "+0.050 [+0.050, +0.050] ✗" in markdown and "33.3 / 21.7 / 20.8 ✗" in markdown


def test_unmeasured_targets_are_neither_met_nor_missed(tmp_path):
    n = len(NAMES)
    folder = _folder(tmp_path, 0, np.full(n, 0.42), (np.full(n, 0.50), np.full(n, 0.50)), kappa=None, cost=None,
                     wall_s=None)
    (row,) = dataset_targets([folder], "dictsr")["rows"]  # one seed: no pooled row
    assert row["met"]["budget"] is None and row["kappa"] is None
    assert "3 of 3" in targets_table([dataset_targets([folder], "dictsr")]).markdown()


def test_the_command_writes_the_table_files_and_the_readme_block_and_names_a_missing_record(tmp_path):
    n = len(NAMES)
    peers = (np.full(n, 0.50), np.full(n, 0.50))
    aim = [_folder(tmp_path / "aim", seed, np.full(n, 0.42), peers) for seed in (0, 1)]
    ntire = [_folder(tmp_path / "ntire", 0, np.full(n, 0.45), peers)]
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    out = tmp_path / "targets"
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        code = main(["targets", "--results", *map(str, aim), "--results", *map(str, ntire), "--run", "dictsr",
                     "--out", str(out), "--readme", str(readme)])
    assert code == 0
    saved = json.loads((out / "dictsr.json").read_text())
    assert [len(d["rows"]) for d in saved["datasets"]] == [3, 1] and saved["references"] == list(PEERS)
    text = readme.read_text()
    assert "<!-- dictsr targets dictsr: start -->" in text and text.count("4 of 4") == 4
    assert (out / "dictsr.csv").read_text().count("\n") == 5  # header + 4 rows
    (ntire[0] / "plain-noise-injection.json").unlink()
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["targets", "--results", *map(str, ntire), "--out", str(out)]) == 2
    assert "plain-noise-injection.json" in err.getvalue()
    with pytest.raises(SeedsError, match="plain-noise-injection.json"):
        dataset_targets(ntire, "dictsr")
