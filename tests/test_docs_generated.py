"""The generated blocks of docs/results.md regenerate byte for byte from the committed records: Tables 1-4 of each
dataset (`dictsr table --readme`) and every training-seed comparison (`dictsr seeds --readme`, from the folders its
JSON names), and docs/speed.md's bench blocks (`dictsr bench --from-json --readme`). Nothing in them was typed by
hand or left stale. (The README's verdict and departures blocks:
test_evaluation_verdict.py, test_evaluation_departures.py.)"""

import json
import re
from pathlib import Path

import pytest

from dictsr_core.evaluation.seeds import SEED_METRICS, pooled_comparison, seed_records
from dictsr_core.evaluation.tables import seeds_table, update_readme, write_tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "docs" / "results.md"
# the rows of docs/results.md's tables, in their order (`dictsr table --runs` order)
TABLE_RUNS = ("bicubic", "paired-bicubic", "oracle", "dictsr", "dictsr-l1", "dictsr-c8", "dictsr-c8s", "dictsr-c8g")
SEEDS_BLOCK = re.compile(r"<!-- dictsr seeds (\S+) (\S+): start -->\n(.*?)<!-- dictsr seeds \1 \2: end -->", re.S)


@pytest.mark.parametrize("dataset,paper", [("photos-aim", "aim"), ("photos-ntire", "ntire")])
def test_the_validation_tables_regenerate_from_the_records(dataset, paper, tmp_path):
    records = [json.loads((ROOT / "results" / dataset / f"{run}.json").read_text(encoding="utf-8")) for run in TABLE_RUNS]
    _, markdown = write_tables(records, tmp_path / "tables", paper=paper)
    page = tmp_path / "results.md"
    page.write_text(RESULTS_MD.read_text(encoding="utf-8"), encoding="utf-8")
    update_readme(page, dataset, markdown)
    assert page.read_text(encoding="utf-8") == RESULTS_MD.read_text(encoding="utf-8")


def test_every_seeds_block_regenerates_from_the_folders_its_json_names(monkeypatch):
    monkeypatch.chdir(ROOT)  # the JSONs name folders relative to the project
    blocks = SEEDS_BLOCK.findall(RESULTS_MD.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    for dataset, stem, block in blocks:
        run, reference = stem.split("_vs_")
        made = []
        for path in sorted(ROOT.glob(f"results/**/{stem}.json")):
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("dataset") != dataset:
                continue
            pooled = seed_records(saved["folders"], run, reference)
            found = {metric: pooled_comparison(pooled, metric) for metric in SEED_METRICS}
            made.append(seeds_table(found, run, reference, dataset).markdown().strip())
        assert block.strip() in made, f"{dataset} {stem}: no results/**/{stem}.json regenerates the block"


@pytest.mark.parametrize("card", ["cpu", "H200"])
def test_the_bench_blocks_of_speed_md_regenerate_from_the_saved_results(card, tmp_path):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from dictsr_core.cli import main

    speed = ROOT / "docs" / "speed.md"
    page = tmp_path / "speed.md"
    page.write_text(speed.read_text(encoding="utf-8"), encoding="utf-8")
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["bench", "--from-json", str(ROOT / "results" / "bench" / f"{card}.json"), "--readme", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == speed.read_text(encoding="utf-8")
    assert f"<!-- dictsr bench {card}: start -->" in page.read_text(encoding="utf-8")
