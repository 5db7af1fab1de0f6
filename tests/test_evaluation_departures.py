"""`dictsr departures`: each departure's record against the same training without it, and the rule that says which
ones earn their place, on made-up records with known answers; then the README's block against the committed ones."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dictsr_core.cli import main
from dictsr_core.evaluation.departures import (DEPARTURES, DeparturesError, departure_rows, departures_markdown,
                                              recipe_link)

ROOT = Path(__file__).resolve().parents[1]
# the README's generated block: the datasets' folders as the docs' command names them
README_GROUPS = [["results/ablations/photos-aim", "results/photos-aim"], ["results/ablations/photos-ntire", "results/photos-ntire"]]


def _record(run: str, lpips, psnr=None, photos: int = 5, crops: int = 4, steps: int = 1200) -> dict:
    lpips = np.asarray(lpips, dtype=float)
    psnr = np.full(lpips.size, 25.0) if psnr is None else np.asarray(psnr, dtype=float)
    images = [{"name": f"p{i // crops}_c{i % crops}", "photo": f"p{i // crops}", "lpips_alex": float(lpips[i]),
               "psnr_rgb": float(psnr[i])} for i in range(photos * crops)]
    return {"run": run, "steps": steps, "dataset": "photos-test",
            "evaluation": {"summary": {"lpips_alex": float(lpips.mean()), "psnr_rgb": float(psnr.mean()),
                                       "count": photos * crops}, "images": images}}


def _write(folder: Path, *records) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / f"{record['run']}.json").write_text(json.dumps(record))
    return folder


def test_the_rule_earns_costs_or_not_shown_by_where_the_interval_lies(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.6, 20)
    noise = rng.normal(0, 0.05, 20)
    folder = _write(tmp_path / "ablations",
                    _record("ablation-Ours", base, psnr=np.full(20, 26.0)),
                    _record("ablation-R1", base + 0.10, psnr=np.full(20, 24.5)),  # removing it costs 0.10: earns
                    _record("ablation-R6", base - 0.02),  # removing it helps: the departure costs
                    _record("ablation-R2", base + noise))  # no consistent difference
    rows = {row["departure"].ablation: row for row in departure_rows([folder])}
    assert set(rows) == {"R1", "R6", "R2"}  # departures whose records are missing are left out
    r1 = rows["R1"]["lpips_alex"]
    assert r1["mean_diff"] == pytest.approx(-0.10) and r1["ci_low"] == pytest.approx(-0.10)  # a constant difference
    assert rows["R1"]["verdict"] == "earns its place" and rows["R1"]["psnr_rgb"]["mean_diff"] == pytest.approx(1.5)
    assert rows["R6"]["verdict"] == "costs"
    assert rows["R2"]["lpips_alex"]["ci_low"] < 0 < rows["R2"]["lpips_alex"]["ci_high"]
    assert rows["R2"]["verdict"] == "not shown to help"
    assert rows["R1"]["photos"] == 5 and rows["R1"]["images"] == 20


def test_a_departure_that_left_the_recipe_is_scored_added_back_and_marked(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.6, 20)
    folder = _write(tmp_path / "ablations", _record("ablation-Ours", base),
                    _record("ablation-R9", base + 0.03),  # adding consistency back costs 0.03
                    _record("ablation-R10", base - 0.02))  # adding the average back helps: the rule would restore it
    rows = {row["departure"].ablation: row for row in departure_rows([folder])}
    assert set(rows) == {"R9", "R10"}
    assert rows["R9"]["lpips_alex"]["mean_diff"] == pytest.approx(0.03) and rows["R9"]["verdict"] == "costs"
    assert rows["R10"]["verdict"] == "earns its place"
    table = departures_markdown([[folder]])
    assert "| index consistency against real LR noise, added back *(left the recipe)* |" in table
    assert "| R9 (`ablation-R9`) | " in table and "| R10 (`ablation-R10`) | " in table


def test_one_photo_gives_no_interval_and_no_verdict_either_way(tmp_path):
    folder = _write(tmp_path / "one", _record("dictsr", [0.5] * 4, photos=1),
                    _record("dictsr-c8g", [0.4] * 4, photos=1, steps=8400))
    (row,) = departure_rows([folder])
    assert row["departure"].with_run == "dictsr-c8g" and row["verdict"] == "one photo: no interval"
    assert "| -0.1000 |" in departures_markdown([[folder]])


def test_records_of_other_images_are_not_compared_and_nothing_found_is_an_error_naming_the_folders(tmp_path):
    ours = _record("ablation-Ours", [0.5] * 20)
    other = _record("ablation-R1", [0.6] * 20)
    other["evaluation"]["images"][0]["name"] = "elsewhere"
    folder = _write(tmp_path / "mismatch", ours, other)
    with pytest.raises(DeparturesError, match=r"mismatch.*04_ablations"):
        departure_rows([folder])
    with pytest.raises(DeparturesError, match="no such results folder"):
        departure_rows([tmp_path / "absent"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("{not json")
    with pytest.raises(DeparturesError, match="x.json"):
        departure_rows([tmp_path / "bad"])


def test_the_cli_prints_the_tables_and_writes_the_block_with_links_from_the_files_folder(tmp_path, capsys):
    folder = _write(tmp_path / "ablations", _record("ablation-Ours", [0.4] * 20), _record("ablation-R4", [0.5] * 20))
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "page.md"
    page.write_text("# Page\n\n## Departures from the paper\n\n<!-- dictsr departures: start -->\nSTALE-BLOCK\n"
                    "<!-- dictsr departures: end -->\n\nafter\n")
    assert main(["departures", "--results", str(folder), "--readme", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "| D_hr learns from the reconstruction alone" in printed and "**earns its place**" in printed
    text = page.read_text()
    assert "STALE-BLOCK" not in text and text.endswith("after\n") and text.count("dictsr departures: start") == 1
    link = re.search(r"\[2\]\(([^)#]+)#2-d_hr-collapses\)", text)
    assert link and (docs / link.group(1)).resolve() == (ROOT / "docs" / "recipe.md").resolve()
    assert main(["departures", "--results", str(tmp_path / "absent")]) == 2


def test_every_departure_links_an_item_of_the_lab_book():
    for departure in DEPARTURES:
        assert "#" in recipe_link(departure.item, ROOT), departure  # its heading exists in docs/recipe.md


def test_the_readme_block_is_what_the_committed_records_give(monkeypatch):
    monkeypatch.chdir(ROOT)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- dictsr departures: start -->\n", 1)[1].split("<!-- dictsr departures: end -->", 1)[0]
    assert block.strip() == departures_markdown(README_GROUPS, ROOT).strip()
