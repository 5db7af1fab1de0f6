"""`dictsr seeds`: a run against its reference per training seed and pooled, on synthetic records with known answers."""

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from dictsr_core.cli import main
from dictsr_core.evaluation.comparison import ComparisonError, two_stage_bootstrap
from dictsr_core.evaluation.seeds import SeedsError, pooled_comparison, seed_records

NAMES = [f"p{p}__c{c}" for p in range(5) for c in range(2)]  # 5 photos, 2 crops each


def _record(run, seed, lpips, psnr=25.0, names=NAMES):
    rows = [{"name": n, "lpips_alex": float(v), "psnr_rgb": psnr} for n, v in zip(names, lpips)]
    return {"run": run, "dataset": "synthetic", "config": {"train": {"seed": seed}}, "evaluation": {"images": rows}}


def _folders(tmp_path, run_lpips, reference_lpips, seeds=(0, 1, 2), names=NAMES):
    folders = []
    for seed, mine, theirs in zip(seeds, run_lpips, reference_lpips):
        folder = tmp_path / f"seed-{seed}" / "synthetic"
        folder.mkdir(parents=True)
        (folder / "dictsr.json").write_text(json.dumps(_record("dictsr", seed, mine, names=names)))
        (folder / "paired-bicubic.json").write_text(json.dumps(_record("paired-bicubic", seed, theirs, names=names)))
        folders.append(folder)
    return folders


def test_a_constant_difference_is_exact_in_every_interval(tmp_path):
    rng = np.random.default_rng(0)
    reference = [rng.uniform(0.3, 0.6, len(NAMES)) for _ in range(3)]
    found = pooled_comparison(seed_records(_folders(tmp_path, [r - 0.05 for r in reference], reference),
                                           "dictsr", "paired-bicubic"), "lpips_alex")
    assert found["seeds"] == 3 and [s["seed"] for s in found["per_seed"]] == [0, 1, 2]
    for value in (found["photos"]["mean_diff"], found["photos"]["ci_low"], found["photos"]["ci_high"],
                  found["seeds_photos"]["ci_low"], found["seeds_photos"]["ci_high"],
                  *(s["diff"]["mean_diff"] for s in found["per_seed"])):
        assert value == pytest.approx(-0.05)


def test_seed_to_seed_swings_widen_only_the_seeds_interval(tmp_path):
    reference = [np.full(len(NAMES), 0.5)] * 3
    run = [np.full(len(NAMES), 0.5 + offset) for offset in (-0.1, 0.0, 0.1)]  # seeds disagree, photos do not
    found = pooled_comparison(seed_records(_folders(tmp_path, run, reference), "dictsr", "paired-bicubic"), "lpips_alex")
    assert found["photos"]["mean_diff"] == pytest.approx(0.0)
    assert found["photos"]["ci_low"] == pytest.approx(0.0) and found["photos"]["ci_high"] == pytest.approx(0.0)
    low, high = found["seeds_photos"]["ci_low"], found["seeds_photos"]["ci_high"]
    assert -0.1 <= low < -0.03 and 0.03 < high <= 0.1  # resampled seeds: means of 3 draws from {-0.1, 0, +0.1}
    assert [s["diff"]["mean_diff"] for s in found["per_seed"]] == pytest.approx([-0.1, 0.0, 0.1])


def test_two_stage_bootstrap_resamples_whole_photos():
    diffs = np.array([[1.0, 1.0, 0.0, 0.0]])  # one seed; photo a: both crops 1, photo b: both 0
    low, high = two_stage_bootstrap(diffs, ["a", "a", "b", "b"], resamples=2000)
    assert (low, high) == (0.0, 1.0)  # a resample is all-a, all-b or half: never a crop alone


def test_errors_name_the_folder_or_file(tmp_path):
    folders = _folders(tmp_path, [np.full(len(NAMES), 0.4)] * 2, [np.full(len(NAMES), 0.5)] * 2, seeds=(0, 1))
    with pytest.raises(SeedsError, match="seed-0.*seed-0|training seed 0"):
        seed_records([folders[0], folders[0]], "dictsr", "paired-bicubic")
    with pytest.raises(SeedsError, match=r"oracle\.json: no such result record"):
        seed_records(folders, "dictsr", "oracle")
    other = _folders(tmp_path / "other", [np.full(4, 0.4)], [np.full(4, 0.5)], seeds=(2,), names=NAMES[:4])
    with pytest.raises(ComparisonError, match="other images"):
        seed_records([*folders, *other], "dictsr", "paired-bicubic")
    (folders[1] / "dictsr.json").write_text("{not json")
    with pytest.raises(SeedsError, match=r"seed-1/synthetic/dictsr\.json: not a result record"):
        seed_records(folders, "dictsr", "paired-bicubic")


def test_cli_writes_the_table_json_and_readme_block(tmp_path):
    reference = [np.full(len(NAMES), 0.5)] * 2
    folders = _folders(tmp_path, [r - 0.1 for r in reference], reference, seeds=(0, 1))
    readme = tmp_path / "README.md"
    readme.write_text("# title\n")
    with redirect_stdout(io.StringIO()) as out, redirect_stderr(io.StringIO()) as err:
        code = main(["seeds", "--results", *map(str, folders), "--out", str(tmp_path / "out"), "--readme", str(readme)])
    assert code == 0, err.getvalue()
    markdown = (tmp_path / "out" / "dictsr_vs_paired-bicubic.md").read_text()
    assert markdown == out.getvalue() and markdown in readme.read_text()
    last = markdown.strip().splitlines()[-1]
    assert last.startswith("| mean of 2 |") and "-0.1000 [-0.1000, -0.1000]" in last
    stored = json.loads((tmp_path / "out" / "dictsr_vs_paired-bicubic.json").read_text())
    assert stored["metrics"]["lpips_alex"]["photos"]["mean_diff"] == pytest.approx(-0.1)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        assert main(["seeds", "--results", str(folders[0]), "--reference", "oracle"]) == 2
    assert "oracle.json" in err.getvalue()
