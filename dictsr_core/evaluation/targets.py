"""The peers issue's targets, checked from result records (on test, docs/evaluation.md): per training seed, and
pooled over the seeds.

A dataset is a list of `dictsr table` results folders, one per training seed, each holding the run's record,
`bicubic.json` and the records of the equal-budget peers (`plain-realesrgan-deg`, `plain-noise-injection`), all
scored on the same images. Per seed and pooled:

- **ahead of each equal-budget peer**: the LPIPS-Alex difference to it, with its 95 % interval resampling photos
  (pooled: the two-stage seeds x photos bootstrap of seeds.pooled_comparison), must exclude 0 on the run's side;
- **RGB PSNR >= bicubic's - 1 dB**;
- **budget**: the run and each peer trained in at most 30 minutes of wall clock.

Reported beside them, targeted by none (they are the method issue's): LPIPS-Alex as a multiple of bicubic's,
Cohen's kappa and the index cost of the clean vs degraded index maps. Raw index agreement is not shown: a one-entry
code meets any agreement target. The numbers are the tables' and `dictsr seeds`'s, recomputed with the same
bootstrap (same resamples and seed), so this table can only summarise them, never disagree.
"""

from __future__ import annotations

import math

from dictsr_core.evaluation.seeds import pooled_comparison, seed_records
from dictsr_core.evaluation.tables import Cell, Column, Table, interval_cell
from dictsr_core.peers.names import EQUAL_BUDGET_METHODS

BICUBIC = "bicubic"
PSNR_GAP_MIN = -1.0  # RGB PSNR >= bicubic's - 1.0 dB
BUDGET_MINUTES = 30.0  # training wall clock of the run and of each reference


def _minutes(record: dict) -> float | None:
    wall = record.get("train_wall_s")
    return None if wall is None else float(wall) / 60.0


def _summary_value(record: dict, key: str) -> float | None:
    value = (record.get("evaluation") or {}).get("summary", {}).get(key)
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _mean(values) -> float | None:
    return None if not values or None in values else sum(values) / len(values)


def _met(row: dict) -> dict:
    """{target: True / False / None (not measured)} of one row."""
    met = {}
    for reference, found in row["vs"].items():
        met[f"ahead_of_{reference}"] = None if not math.isfinite(found["ci_high"]) else found["ci_high"] < 0
    met["psnr_vs_bicubic"] = None if not math.isfinite(row["psnr_vs_bicubic"]) else row["psnr_vs_bicubic"] >= PSNR_GAP_MIN
    budgets = [row["minutes"], *row["reference_minutes"].values()]
    met["budget"] = None if None in budgets else all(m <= BUDGET_MINUTES for m in budgets)
    return met


def dataset_targets(results_dirs, run: str, references=EQUAL_BUDGET_METHODS) -> dict:
    """{dataset, run, references, images, photos, rows: [{label, seed, lpips, bicubic_lpips, lpips_ratio,
    psnr_vs_bicubic, vs {reference: {mean_diff, ci_low, ci_high}}, kappa, index_cost, minutes,
    reference_minutes {reference: minutes}, met {target: bool or None}}]}: one row per results folder (training
    seed) and, with two or more, a pooled row (label "pooled"; kappa and index cost the means over seeds, minutes
    the longest)."""
    references = tuple(references)
    vs_bicubic = seed_records(results_dirs, run, BICUBIC)
    lpips_bic = pooled_comparison(vs_bicubic, "lpips_alex")
    psnr_bic = pooled_comparison(vs_bicubic, "psnr_rgb")
    against = {ref: seed_records(results_dirs, run, ref) for ref in references}
    lpips_ref = {ref: pooled_comparison(against[ref], "lpips_alex") for ref in references}
    rows = []
    for i, entry in enumerate(vs_bicubic):
        lpips, bicubic = lpips_bic["per_seed"][i]["run"], lpips_bic["per_seed"][i]["reference"]
        rows.append({"label": f"seed {entry['seed']}", "seed": entry["seed"], "lpips": lpips, "bicubic_lpips": bicubic,
                     "lpips_ratio": lpips / bicubic, "psnr_vs_bicubic": psnr_bic["per_seed"][i]["diff"]["mean_diff"],
                     "vs": {ref: {k: lpips_ref[ref]["per_seed"][i]["diff"][k] for k in ("mean_diff", "ci_low", "ci_high")}
                            for ref in references},
                     "kappa": _summary_value(entry["record"], "index_kappa"),
                     "index_cost": _summary_value(entry["record"], "index_cost_lpips_alex"),
                     "minutes": _minutes(entry["record"]),
                     "reference_minutes": {ref: _minutes(against[ref][i]["reference"]) for ref in references}})
    if len(rows) > 1:
        rows.append({"label": "pooled", "seed": None, "lpips": lpips_bic["run"], "bicubic_lpips": lpips_bic["reference"],
                     "lpips_ratio": lpips_bic["run"] / lpips_bic["reference"],
                     "psnr_vs_bicubic": psnr_bic["photos"]["mean_diff"],
                     "vs": {ref: {"mean_diff": lpips_ref[ref]["photos"]["mean_diff"], **lpips_ref[ref]["seeds_photos"]}
                            for ref in references},
                     "kappa": _mean([row["kappa"] for row in rows]),
                     "index_cost": _mean([row["index_cost"] for row in rows]),
                     "minutes": None if None in [row["minutes"] for row in rows] else max(row["minutes"] for row in rows),
                     "reference_minutes": {ref: None if None in (m := [row["reference_minutes"][ref] for row in rows])
                                           else max(m) for ref in references}})
    for row in rows:
        row["met"] = _met(row)
    record = vs_bicubic[0]["record"]
    return {"dataset": record.get("dataset") or str(results_dirs[0]), "run": run, "references": list(references),
            "split": record.get("split", "val"), "images": lpips_bic["photos"]["n"],
            "photos": lpips_bic["photos"]["clusters"], "rows": rows}


def _mark(cell, met):
    """The cell with the target's verdict: a trailing ✓ (met), ✗ (missed) or nothing (not measured)."""
    if cell is None or met is None:
        return cell
    sign = " ✓" if met else " ✗"
    if isinstance(cell, Cell):
        return Cell(cell.markdown + sign, cell.csv)
    return Cell(cell + sign, cell)


def targets_table(found: list[dict]) -> Table:
    """One row per dataset, run and training seed (then the pooled row), each target's cell marked ✓ or ✗."""
    references = list(dict.fromkeys(ref for dataset in found for ref in dataset["references"]))
    columns = (Column("dataset"), Column("split"), Column("run"), Column("training seed"),
               Column("LPIPS-Alex (x bicubic)"), Column("ΔPSNR vs bicubic (dB)"),
               *(Column(f"ΔLPIPS-Alex vs {ref} [95% CI]") for ref in references),
               Column("κ (clean vs degraded indices)"), Column("index cost (LPIPS-Alex)"),
               Column("training min (run / " + " / ".join(references) + ")"), Column("targets met"))
    rows = []
    for dataset in found:
        for row in dataset["rows"]:
            met = row["met"]
            ratio = f"{row['lpips']:.3f} ({row['lpips_ratio']:.2f}x)"
            psnr = f"{row['psnr_vs_bicubic']:+.2f}" if math.isfinite(row["psnr_vs_bicubic"]) else None
            versus = []
            for ref in references:
                found_ref = row["vs"].get(ref)
                versus.append(None if found_ref is None else _mark(
                    interval_cell(found_ref["mean_diff"], found_ref["ci_low"], found_ref["ci_high"], 3),
                    met.get(f"ahead_of_{ref}")))
            minutes_all = [row["minutes"], *(row["reference_minutes"].get(ref) for ref in references)]
            minutes = None if None in minutes_all else " / ".join(f"{m:.1f}" for m in minutes_all)
            measured = [v for v in met.values() if v is not None]
            label = (str(row["seed"]) if row["seed"] is not None
                     else f"pooled ({len(dataset['rows']) - 1} seeds; CI: seeds x photos)")
            rows.append((f"`{dataset['dataset']}`", dataset["split"], f"`{dataset['run']}`", label, ratio,
                         _mark(psnr, met["psnr_vs_bicubic"]), *versus,
                         None if row["kappa"] is None else f"{row['kappa']:.2f}",
                         None if row["index_cost"] is None else f"{row['index_cost']:+.3f}",
                         _mark(minutes, met["budget"]), f"{sum(measured)} of {len(measured)}"))
    counts = ", ".join(dict.fromkeys(f"`{d['dataset']}` ({d['split']}) {d['images']} pairs of {d['photos']} photos"
                                     for d in found))
    caption = (f"The peers issue's targets ({counts}; the same records as the tables and `dictsr seeds`). "
               f"✓ met, ✗ missed: ahead of each equal-budget peer in LPIPS-Alex with the 95 % interval excluding 0 "
               f"(per seed: resampling photos; pooled: seeds, then photos); RGB PSNR >= bicubic's {PSNR_GAP_MIN:+.1f} "
               f"dB; the run and each peer trained <= {BUDGET_MINUTES:.0f} min (pooled: the longest). κ and the index "
               "cost (LPIPS-Alex with the degraded LR's indices minus with the clean LR's) are reported, not targeted. "
               "Written by `dictsr targets`; do not edit.")
    return Table(columns, tuple(rows), caption)
