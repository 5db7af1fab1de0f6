"""The quality issue's targets, checked from result records: per training seed, and pooled over the seeds.

A dataset is a list of `dictsr table` results folders, one per training seed, each holding the run's record,
`bicubic.json` and the reference's record (paired-bicubic), all scored on the same validation images. Per seed:
LPIPS-Alex as a multiple of bicubic's, the RGB PSNR difference to bicubic, the LPIPS-Alex difference to the
reference with its interval resampling photos, the index agreement (clean vs degraded LR) and the training
minutes of the run and of the reference. Pooled over two or more seeds: the means over seeds and images, and the
reference interval of the two-stage bootstrap (seeds, then photos; seeds.pooled_comparison): whether the lead
would hold for a seed not trained yet. The numbers are the tables' and `dictsr seeds`'s, recomputed with the
same bootstrap (same resamples and seed), so this table can only summarise them, never disagree.
"""

from __future__ import annotations

import math

from dictsr_core.evaluation.seeds import pooled_comparison, seed_records
from dictsr_core.evaluation.tables import Cell, Column, Table, interval_cell

BICUBIC = "bicubic"
LPIPS_RATIO_MAX = 0.80  # LPIPS-Alex <= 0.80x bicubic's
PSNR_GAP_MIN = -1.0  # RGB PSNR >= bicubic's - 1.0 dB
AGREEMENT_MIN = 0.5  # clean vs degraded LR index agreement
BUDGET_MINUTES = 30.0  # training wall clock of the run and of the reference
TARGETS = ("lpips_ratio", "psnr_vs_bicubic", "ahead_of_reference", "agreement", "budget")


def _minutes(record: dict) -> float | None:
    wall = record.get("train_wall_s")
    return None if wall is None else float(wall) / 60.0


def _agreement(record: dict) -> float | None:
    value = (record.get("evaluation") or {}).get("summary", {}).get("index_agreement")
    return None if value is None else float(value)


def _met(row: dict) -> dict:
    """{target: True / False / None (not measured)} of one row."""
    def at_most(value, limit):
        return None if value is None or not math.isfinite(value) else value <= limit

    paired_high = row["vs_reference"]["ci_high"]
    budgets = [row["minutes"], row["reference_minutes"]]
    return {
        "lpips_ratio": at_most(row["lpips_ratio"], LPIPS_RATIO_MAX),
        "psnr_vs_bicubic": None if not math.isfinite(row["psnr_vs_bicubic"]) else row["psnr_vs_bicubic"] >= PSNR_GAP_MIN,
        "ahead_of_reference": None if not math.isfinite(paired_high) else paired_high < 0,
        "agreement": None if row["agreement"] is None else row["agreement"] >= AGREEMENT_MIN,
        "budget": None if None in budgets else all(m <= BUDGET_MINUTES for m in budgets),
    }


def dataset_targets(results_dirs, run: str, reference: str = "paired-bicubic") -> dict:
    """{dataset, run, reference, rows: [{label, seed, lpips, bicubic_lpips, lpips_ratio, psnr_vs_bicubic,
    vs_reference {mean_diff, ci_low, ci_high}, agreement, minutes, reference_minutes, met {target: bool or None}}]}:
    one row per results folder (training seed) and, with two or more, a pooled row (label "pooled"; its agreement
    is the mean over the seeds, its minutes the longest)."""
    vs_reference = seed_records(results_dirs, run, reference)
    vs_bicubic = seed_records(results_dirs, run, BICUBIC)
    lpips_ref = pooled_comparison(vs_reference, "lpips_alex")
    lpips_bic = pooled_comparison(vs_bicubic, "lpips_alex")
    psnr_bic = pooled_comparison(vs_bicubic, "psnr_rgb")
    rows = []
    for i, entry in enumerate(vs_reference):
        diff = lpips_ref["per_seed"][i]["diff"]
        lpips, bicubic = lpips_bic["per_seed"][i]["run"], lpips_bic["per_seed"][i]["reference"]
        rows.append({"label": f"seed {entry['seed']}", "seed": entry["seed"], "lpips": lpips, "bicubic_lpips": bicubic,
                     "lpips_ratio": lpips / bicubic, "psnr_vs_bicubic": psnr_bic["per_seed"][i]["diff"]["mean_diff"],
                     "vs_reference": {k: diff[k] for k in ("mean_diff", "ci_low", "ci_high")},
                     "agreement": _agreement(entry["record"]), "minutes": _minutes(entry["record"]),
                     "reference_minutes": _minutes(entry["reference"])})
    if len(rows) > 1:
        agreements = [row["agreement"] for row in rows]
        minutes = [row["minutes"] for row in rows]
        reference_minutes = [row["reference_minutes"] for row in rows]
        rows.append({"label": "pooled", "seed": None, "lpips": lpips_bic["run"], "bicubic_lpips": lpips_bic["reference"],
                     "lpips_ratio": lpips_bic["run"] / lpips_bic["reference"],
                     "psnr_vs_bicubic": psnr_bic["photos"]["mean_diff"],
                     "vs_reference": {"mean_diff": lpips_ref["photos"]["mean_diff"], **lpips_ref["seeds_photos"]},
                     "agreement": None if None in agreements else sum(agreements) / len(agreements),
                     "minutes": None if None in minutes else max(minutes),
                     "reference_minutes": None if None in reference_minutes else max(reference_minutes)})
    for row in rows:
        row["met"] = _met(row)
    record = vs_reference[0]["record"]
    return {"dataset": record.get("dataset") or str(results_dirs[0]), "run": run, "reference": reference,
            "images": lpips_ref["photos"]["n"], "photos": lpips_ref["photos"]["clusters"], "rows": rows}


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
    columns = (Column("dataset"), Column("run"), Column("training seed"), Column("LPIPS-Alex (x bicubic)"),
               Column("ΔPSNR vs bicubic (dB)"), Column("ΔLPIPS-Alex vs paired-bicubic [95% CI]"),
               Column("index agreement"), Column("training min (run / paired)"), Column("targets met"))
    rows = []
    for dataset in found:
        for row in dataset["rows"]:
            met = row["met"]
            ratio = f"{row['lpips']:.3f} ({row['lpips_ratio']:.2f}x)"
            psnr = f"{row['psnr_vs_bicubic']:+.2f}" if math.isfinite(row["psnr_vs_bicubic"]) else None
            paired = row["vs_reference"]
            agreement = None if row["agreement"] is None else f"{row['agreement']:.2f}"
            minutes = (None if row["minutes"] is None or row["reference_minutes"] is None
                       else f"{row['minutes']:.1f} / {row['reference_minutes']:.1f}")
            measured = [v for v in met.values() if v is not None]
            label = (str(row["seed"]) if row["seed"] is not None
                     else f"pooled ({len(dataset['rows']) - 1} seeds; CI: seeds x photos)")
            rows.append((f"`{dataset['dataset']}`", f"`{dataset['run']}`", label, _mark(ratio, met["lpips_ratio"]),
                         _mark(psnr, met["psnr_vs_bicubic"]),
                         _mark(interval_cell(paired["mean_diff"], paired["ci_low"], paired["ci_high"], 3),
                               met["ahead_of_reference"]),
                         _mark(agreement, met["agreement"]), _mark(minutes, met["budget"]),
                         f"{sum(measured)} of {len(measured)}"))
    counts = ", ".join(dict.fromkeys(f"`{d['dataset']}` {d['images']} pairs of {d['photos']} photos" for d in found))
    caption = (f"The quality issue's targets ({counts}; the same records as the tables and `dictsr seeds`). "
               f"✓ met, ✗ missed: LPIPS-Alex <= {LPIPS_RATIO_MAX:.2f}x bicubic's; RGB PSNR >= bicubic's "
               f"{PSNR_GAP_MIN:+.1f} dB; ahead of paired-bicubic in LPIPS-Alex with the 95 % interval excluding 0 "
               "(per seed: resampling photos; pooled: seeds, then photos); index agreement between the clean and the "
               f"degraded LR >= {AGREEMENT_MIN} (pooled: mean over seeds); each of the run and paired-bicubic trained "
               f"<= {BUDGET_MINUTES:.0f} min (pooled: the longest). Written by `dictsr targets`; do not edit.")
    return Table(columns, tuple(rows), caption)
