"""Which of the recipe's departures from the paper earn their place (method issue, item 4): each departure's record
with it against the record without it, scored on the same validation images, LPIPS-Alex paired over them with a
95 % interval resampling photos. The rule, written before it is read: a departure earns its place where that
interval lies wholly below 0 (with it is better); where it spans 0 it is not shown to help, and where it lies above
0 it costs. The README's departures table is this module's output (`dictsr departures --readme`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from dictsr_core.evaluation.comparison import ComparisonError, compare_records


@dataclass(frozen=True)
class Departure:
    what: str  # the departure, in words
    config: str  # where it lives: a config field, or the derive command that makes it
    ablation: str | None  # the row that removes it (config.ABLATIONS), where there is one
    with_run: str  # the record with the departure
    without_run: str  # the record without it (the same training otherwise)
    item: int  # docs/recipe.md item that introduced it
    left: str | None = None  # when the rule took it out of the recipe (kept as an option), where it did

    @property
    def ablation_run(self) -> str:
        """The ablation row's run (without the departure, or with it where the row adds one back); for a derived
        code, which has no row, the run it is derived from."""
        return f"ablation-{self.ablation}" if self.ablation else self.without_run


LEFT = "2026-12-07"  # R2 and R6 left the recipe (docs/recipe.md item 19)

# with/without: the 1200-step ablation rows (workbook 04_ablations: "Ours" and the row removing the departure), and
# for the codes derived after training, the main run's records (dictsr-c8g, dictsr-c8 against the dictsr they come from)
DEPARTURES = (
    Departure("a low-pass base under the decoders", "`model.base_sigma=1.5`", "R1", "ablation-Ours", "ablation-R1", 1),
    Departure("D_hr learns from the reconstruction alone (against `hr_grad=both`)", "`model.hr_grad=entries`", "R4",
              "ablation-Ours",
              "ablation-R4", 2),
    Departure("index consistency against real LR noise", "`train.consistency_weight=10`", "R2", "ablation-Ours",
              "ablation-R2", 3, left=LEFT),
    Departure("index consistency against real LR noise, added back", "`train.consistency_weight=10`", "R9",
              "ablation-R9", "ablation-Ours", 3, left=LEFT),
    Departure("a short perceptual phase at the end, against none (the paper's, on every step, has no row)",
              "`train.perceptual_from`", "R3",
              "ablation-Ours", "ablation-R3", 4),
    Departure("a length-aware weight average, against none", "`train.ema_sigma_rel=0.2`", "R6", "ablation-Ours",
              "ablation-R6", 5, left=LEFT),
    Departure("a length-aware weight average, against a fixed decay of 0.995", "`train.ema_sigma_rel=0.2`", "R7",
              "ablation-Ours", "ablation-R7", 5, left=LEFT),
    Departure("a length-aware weight average, added back (against the last weights)", "`train.ema_sigma_rel=0.2`",
              "R10", "ablation-R10", "ablation-Ours", 5, left=LEFT),
    Departure("the code coarsened to 8 entries after training", "`dictsr derive --coarsen 8 --restarts 8`", None,
              "dictsr-c8", "dictsr", 9),
    Departure("a texture gate over that code (`dictsr-c8g`, the model `dictsr sr` uses)",
              "`dictsr derive ... --gate 3 4 6 8`", None, "dictsr-c8g", "dictsr", 15),
)


class DeparturesError(ValueError):
    """No folder holds a record any departure needs."""


def _records(folders) -> dict[str, dict]:
    """{run: record} from the JSON records of `folders` (an earlier folder's record wins)."""
    from dictsr_core.evaluation.results import is_record

    found = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DeparturesError(f"{folder}: no such results folder")
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise DeparturesError(f"{path}: not a results record ({error})") from None
            if is_record(record) and "run" in record:  # other JSON there (a seeds comparison) is not a row
                found.setdefault(record["run"], record)
    return found


def verdict_of(found: dict) -> str:
    """The rule above, applied to a paired_bootstrap result of with - without LPIPS-Alex."""
    low, high = found["ci_low"], found["ci_high"]
    if math.isnan(low) or math.isnan(high):
        return "one photo: no interval"
    if high < 0:
        return "earns its place"
    if low > 0:
        return "costs"
    return "not shown to help"


def departure_rows(folders) -> list[dict]:
    """One row per departure whose two records exist in `folders` and were scored on the same images."""
    records = _records(folders)
    rows = []
    for departure in DEPARTURES:
        with_it, without = records.get(departure.with_run), records.get(departure.without_run)
        if with_it is None or without is None:
            continue
        try:
            found = compare_records(with_it, without, ("lpips_alex", "psnr_rgb"))
        except ComparisonError:
            continue
        if "lpips_alex" not in found:
            continue
        lpips, psnr = found["lpips_alex"], found.get("psnr_rgb")
        rows.append({"departure": departure, "with": with_it["evaluation"]["summary"]["lpips_alex"],
                     "without": without["evaluation"]["summary"]["lpips_alex"], "lpips_alex": lpips, "psnr_rgb": psnr,
                     "verdict": verdict_of(lpips), "photos": lpips["clusters"],
                     "images": with_it["evaluation"]["summary"]["count"], "steps": with_it.get("steps"),
                     "dataset": with_it.get("dataset") or Path(str(with_it.get("data_dir", "?"))).name})
    if not rows:
        raise DeparturesError(f"no departure has both of its records in {', '.join(map(str, folders))} (needs "
                              "the ablation rows of `dictsr workbook --only 04_ablations` and the main run's records)")
    return rows


def _interval(found: dict | None, digits: int) -> str:
    """The tables' `mean [low, high]`; the mean alone where one photo gives no interval."""
    from dictsr_core.evaluation.tables import _interval_markdown

    if not found or math.isnan(found["mean_diff"]):
        return "-"
    if math.isnan(found["ci_low"]):
        return f"{found['mean_diff']:+.{digits}f}"
    return _interval_markdown(found["mean_diff"], found["ci_low"], found["ci_high"], digits)


RECIPE = Path(__file__).resolve().parents[2] / "docs" / "recipe.md"


def recipe_headings(recipe: Path = RECIPE) -> dict[int, str]:
    """{item number: its heading} of docs/recipe.md's numbered `## N. ...` items (none where the file is absent)."""
    import re

    lines = recipe.read_text(encoding="utf-8").splitlines() if recipe.is_file() else []
    return {int(m.group(1)): line[3:].strip() for line in lines if (m := re.match(r"## (\d+)\. ", line))}


def recipe_link(item: int, markdown_dir=".", recipe: Path = RECIPE, headings: dict[int, str] | None = None) -> str:
    """A link to docs/recipe.md's item `item` (GitHub's heading anchor), relative to the folder of the Markdown file
    it is written into; `headings`: recipe_headings(recipe), where the caller links several items."""
    import os
    import re

    target = Path(os.path.relpath(recipe, Path(markdown_dir).resolve())).as_posix()
    heading = (recipe_headings(recipe) if headings is None else headings).get(item)
    if heading is None:
        return f"[{item}]({target})"
    slug = re.sub(r"[^\w\- ]", "", re.sub(r"`", "", heading).strip().lower()).replace(" ", "-")
    return f"[{item}]({target}#{slug})"


RULE = ("Each departure's validation record against the same training without it: Δ is the mean paired difference "
        "with - without (LPIPS-Alex: below 0 is better; PSNR: above 0) and its 95 % bootstrap interval resampling "
        "photos. **Earns its place**: the LPIPS-Alex interval lies below 0; otherwise it is not shown to help (or "
        "costs), and the method issue's rule takes it out of the recipe (kept as an option); a departure moves "
        "only where its row holds at three training seeds (docs/evaluation.md, rule 10): one seed's verdict is "
        "shown, not acted on. Ablation rows are short runs of the recipe (the workbook's `04_ablations`, training "
        "seed 0), derived codes the main run's (`steps`). Rows marked *left the recipe* are departures this rule "
        f"took out on {LEFT}: `R9` and `R10` add them back to today's recipe (they interact: docs/recipe.md item "
        "20); `R2`, `R6` and `R7`, where shown, are records of the recipe before, which had them. "
        "Generated by `dictsr departures`; do not edit.")


def departures_markdown(groups, markdown_dir=".") -> str:
    """The rule, then one departures table per group of results folders (one dataset's ablation and main-run
    records): what the README shows between its markers, links relative to `markdown_dir` (the file's folder)."""
    parts = [RULE]
    for folders in groups:
        parts.append(_table(departure_rows(folders), folders, markdown_dir))
    return "\n\n".join(parts) + "\n"


def _table(rows: list[dict], folders, markdown_dir) -> str:
    scopes = sorted({f"**`{r['dataset']}`**" for r in rows})
    counts = sorted({f"{r['images']} validation crops of {r['photos']} photos" for r in rows})
    lines = [
        f"{', '.join(scopes)} ({'; '.join(counts)}; records in {', '.join(f'`{f}`' for f in map(str, folders))}):",
        "",
        "| departure | config | ablation | LPIPS-Alex with / without | Δ LPIPS-Alex [95% CI] | Δ PSNR (dB) | steps "
        "| verdict | recipe item |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    headings = recipe_headings()  # read once for the table's links
    for row in rows:
        d = row["departure"]
        what = f"{d.what} *(left the recipe)*" if d.left else d.what
        lines.append(f"| {what} | {d.config} | {d.ablation or '-'} (`{d.ablation_run}`) | {row['with']:.4f} / "
                     f"{row['without']:.4f} | {_interval(row['lpips_alex'], 4)} | {_interval(row['psnr_rgb'], 2)} | "
                     f"{row['steps'] if row['steps'] is not None else '-'} | **{row['verdict']}** | "
                     f"{recipe_link(d.item, markdown_dir, headings=headings)} |")
    return "\n".join(lines)
