"""The paper's Tables 1-4 rebuilt from result records, with the paper's own numbers beside ours, never mixed.

Our columns come only from records (`dictsr_core.evaluation.results`); the paper's columns only from the constants
below, copied from the paper (paper/DictSR-CVPR2024.txt, summarised in docs/method.md, "Ablations (paper Tables 3 and 4)"). Every
paper column title says "paper" and names the benchmark, and a method we did not run gets a row whose
columns of ours are empty. Each table renders as Markdown (with a caption) and as CSV (no caption).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from dictsr_core.atomic import atomic_write_text, replace_readme_block
from dictsr_core.peers.names import EQUAL_BUDGET_METHODS


@dataclass(frozen=True)
class PaperResult:
    """One row as printed in the paper. `layers`/`gmacs`: inference conv layers and GMACs at 128x128 LR."""

    lpips: float
    psnr: float
    ssim: float
    layers: int | None = None
    gmacs: float | None = None
    entries: int | None = None  # N of the row's dictionaries (Table 3)
    activated: int | None = None  # activated D_lr entries (Table 3)


BENCHMARKS = {"aim": "AIM-RWSR", "ntire": "NTIRE-RWSR"}
PAPER_TABLE = {"aim": 1, "ntire": 2}

# Tables 1 (AIM-RWSR) and 2 (NTIRE-RWSR): the reference rows docs/method.md names ("Ablations
# (paper Tables 3 and 4)"). Real-ESRGAN and
# DeFlow run RRDBNet (ESRGAN's generator): the paper prints 350 layers and 291G MACs for both.
PAPER_COMPARISON: dict[str, dict[str, PaperResult]] = {
    "aim": {
        "bicubic": PaperResult(0.537, 22.35, 0.617),
        "real-esrgan": PaperResult(0.238, 22.08, 0.622, layers=350, gmacs=291),
        "deflow": PaperResult(0.349, 22.25, 0.620, layers=350, gmacs=291),
        "dictsr": PaperResult(0.259, 22.46, 0.629, layers=18, gmacs=129),
    },
    "ntire": {
        "bicubic": PaperResult(0.632, 25.52, 0.671),
        "real-esrgan": PaperResult(0.251, 24.68, 0.687, layers=350, gmacs=291),
        "deflow": PaperResult(0.218, 25.87, 0.710, layers=350, gmacs=291),
        "dictsr": PaperResult(0.204, 25.90, 0.711, layers=18, gmacs=129),
    },
}

# Tables 3 (dictionary and framework settings) and 4 (network depths), both on AIM-RWSR.
PAPER_ABLATION_BENCHMARK = "aim"
PAPER_ABLATIONS: dict[str, PaperResult] = {
    "Ours": PaperResult(0.259, 22.46, 0.629, entries=4096, activated=4050),
    "A1": PaperResult(0.281, 22.40, 0.619, entries=4096, activated=3560),
    "B1": PaperResult(0.278, 22.41, 0.621, entries=2048, activated=2027),
    "B2": PaperResult(0.269, 22.44, 0.626, entries=8192, activated=8050),
    "C1": PaperResult(0.262, 22.25, 0.625, entries=4096, activated=568),
    "C2": PaperResult(0.268, 21.99, 0.616, entries=4096, activated=105),
    "D1": PaperResult(0.271, 22.41, 0.623, entries=4096, activated=1522),
    "D2": PaperResult(0.313, 21.43, 0.588, entries=4096, activated=3810),
    "E1": PaperResult(0.533, 8.28, 0.050, entries=4096, activated=4096),
    "F1": PaperResult(0.271, 22.46, 0.625, entries=4096),
    "F2": PaperResult(0.256, 22.49, 0.631, entries=4096),
    "F3": PaperResult(0.263, 22.48, 0.629, entries=4096),
    "F4": PaperResult(0.261, 22.48, 0.630, entries=4096),
}
OURS = "Ours"  # the ablation id of a run without an ablation

METHOD_LABELS = {"bicubic": "Bicubic", "real-esrgan": "Real-ESRGAN", "deflow": "DeFlow", "dictsr": "DictSR",
                 "realesrgan-x4plus": "Real-ESRGAN x4plus (published)", "realsr-df2k": "RealSR DF2K (published)"}
METHOD_ORDER = ("bicubic", "paired-bicubic", "oracle", "plain-realesrgan-deg", "plain-noise-injection",
                "realesrgan-x4plus", "realsr-df2k", "real-esrgan", "deflow", "dictsr")

CONVENTION = ("RGB PSNR / SSIM on [0, 255] without border crop and LPIPS-Alex v0.1 (docs/method.md, "
              "evaluation conventions: the convention of the paper's tables)")


@dataclass(frozen=True)
class Column:
    title: str
    fmt: str = ""  # format spec for numbers in Markdown; CSV keeps full precision


@dataclass(frozen=True)
class Cell:
    """A cell made of several numbers: `markdown` (rounded) in the Markdown table, `csv` (full precision) in the CSV."""

    markdown: str
    csv: str


@dataclass(frozen=True)
class Table:
    """Rows of plain values (None = not available) under titled columns; one source for Markdown and CSV."""

    columns: tuple[Column, ...]
    rows: tuple[tuple, ...]
    caption: str = ""

    def titles(self) -> list[str]:
        return [column.title for column in self.columns]

    def markdown(self) -> str:
        def cell(value, fmt):
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                return "-"
            if isinstance(value, Cell):
                return value.markdown
            return format(value, fmt) if isinstance(value, (int, float)) and fmt else str(value)

        lines = ["| " + " | ".join(self.titles()) + " |", "|---" * len(self.columns) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(cell(v, c.fmt) for v, c in zip(row, self.columns)) + " |")
        table = "\n".join(lines) + "\n"
        return f"{self.caption}\n\n{table}" if self.caption else table

    def csv(self) -> str:
        def cell(value):
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                return ""
            if isinstance(value, Cell):
                return value.csv
            return repr(value) if isinstance(value, float) else str(value)

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.titles())
        writer.writerows([cell(v) for v in row] for row in self.rows)
        return buffer.getvalue()


def _check_paper(paper: str) -> str:
    if paper not in BENCHMARKS:
        raise ValueError(f"--paper {paper!r}: choose one of {', '.join(BENCHMARKS)}")
    return paper


def _ours(record: dict) -> tuple:
    summary = record["evaluation"]["summary"]
    return summary.get("lpips_alex"), summary.get("psnr_rgb"), summary.get("ssim_rgb")


def _paper_metrics(result: PaperResult | None) -> tuple:
    return (None, None, None) if result is None else (result.lpips, result.psnr, result.ssim)


def _paper_columns(benchmark: str) -> tuple[Column, ...]:
    return (Column(f"paper LPIPS ({benchmark})", ".3f"), Column(f"paper PSNR ({benchmark})", ".2f"),
            Column(f"paper SSIM ({benchmark})", ".3f"))


def _our_metric_columns() -> tuple[Column, ...]:
    return Column("LPIPS-Alex", ".4f"), Column("PSNR (RGB)", ".2f"), Column("SSIM (RGB)", ".4f")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def delta_cell(record: dict, reference: str, metric: str, digits: int) -> Cell | None:
    """`+0.42 [+0.10, +0.75]`: the record's mean paired difference to `reference` (a method) in `metric` and its
    bootstrap interval, from the record's `comparison`; `[-]` without an interval (one photo), None when absent.
    An interval that spans 0 is followed by `(~N photos)` (comparison.photos_to_exclude_zero)."""
    found = ((record.get("comparison") or {}).get(reference) or {}).get(metric)
    if not found:
        return None
    return bootstrap_cell(found, digits)


def bootstrap_cell(found: dict, digits: int) -> Cell | None:
    """interval_cell of a paired_bootstrap result, followed by `(~N photos)` where its interval spans 0."""
    from dictsr_core.evaluation.comparison import photos_to_exclude_zero

    mean, low, high = found.get("mean_diff"), found.get("ci_low"), found.get("ci_high")
    cell = interval_cell(mean, low, high, digits)
    needed = photos_to_exclude_zero(mean, low, high, found.get("clusters"))
    if cell is None or needed is None:
        return cell
    return Cell(f"{cell.markdown} (~{needed} photos)", f"{cell.csv} (~{needed} photos)")


def interval_cell(mean, low, high, digits: int) -> Cell | None:
    """A mean difference and its interval: rounded in Markdown, full precision in CSV; None without a mean."""
    if not _finite(mean):
        return None
    bounds = f"[{low:+}, {high:+}]" if _finite(low) and _finite(high) else "[-]"
    return Cell(_interval_markdown(mean, low, high, digits), f"{mean:+} {bounds}")


def _interval_markdown(mean: float, low, high, digits: int) -> str:
    """`+0.42 [+0.10, +0.75]`, or `+0.42 [-]` without a finite interval."""
    if not (_finite(low) and _finite(high)):
        return f"{mean:+.{digits}f} [-]"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _pair_cell(first, second, fmt: str) -> Cell | None:
    """`a / b` of two numbers (either may be missing: "-"); None when both are."""
    if not (_finite(first) or _finite(second)):
        return None
    shown = [format(v, fmt) if _finite(v) else "-" for v in (first, second)]
    full = [repr(float(v)) if _finite(v) else "" for v in (first, second)]
    return Cell(" / ".join(shown), " / ".join(full))


def regions_cell(record: dict) -> Cell | None:
    """Mean RGB PSNR over flat / textured 8x8 HR blocks (`regions`), as `31.20 / 22.41`."""
    summary = record["evaluation"]["summary"]
    return _pair_cell(summary.get("psnr_rgb_flat"), summary.get("psnr_rgb_textured"), ".2f")


def index_agreement_cell(record: dict) -> Cell | None:
    """`evaluation.summary.index_agreement` (clean vs degraded LR), with `index_agreement_draws` (two degradation
    draws) after a slash when present; None when the record has neither."""
    summary = record["evaluation"]["summary"]
    agreement, draws = summary.get("index_agreement"), summary.get("index_agreement_draws")
    if draws is None:
        return None if not _finite(agreement) else Cell(format(agreement, ".2f"), repr(float(agreement)))
    return _pair_cell(agreement, draws, ".2f")


def agreement_worth_cell(record: dict) -> Cell | None:
    """Mean LPIPS-Alex of the SR decoded from the degraded LR's own content indices -> from its clean LR's, and the
    mean difference with its bootstrap interval (comparison.agreement_worth_comparison), as
    `0.409 -> 0.331, -0.078 [-0.089, -0.068]`; None when the record's rows lack them."""
    from dictsr_core.evaluation.comparison import agreement_worth_comparison

    summary = record["evaluation"]["summary"]
    own, clean = summary.get("lpips_alex_own_indices"), summary.get("lpips_alex_clean_indices")
    found = agreement_worth_comparison(record)
    if found is None or not (_finite(own) and _finite(clean)):
        return None
    interval = interval_cell(found["mean_diff"], found["ci_low"], found["ci_high"], 3)
    if interval is None:
        return None
    return Cell(f"{own:.3f} -> {clean:.3f}, {interval.markdown}", f"{own!r} -> {clean!r}, {interval.csv}")


DELTA_TITLES = ("ΔPSNR vs bicubic [95% CI]", "ΔLPIPS-Alex vs bicubic [95% CI]",
                "ΔLPIPS-Alex vs paired-bicubic [95% CI]")
CI_NOTE = ("Δ columns: mean over the scored images of the paired difference (this row minus the reference, "
           "images matched by name; PSNR higher is better, LPIPS lower) and its 95 % percentile bootstrap interval "
           "of the mean paired difference, resampling photos (the crops of one photo move together; 10000 "
           "resamples, seed 0; \"[-]\": one photo, no interval). \"(~N photos)\" after an interval that spans 0: about how "
           "many photos would make it exclude 0 at this mean difference, were it to narrow as "
           "1/sqrt(photos) (a rough power estimate, not a test)")
REGION_NOTE = ("PSNR flat / textured: RGB PSNR over the pixels of the 8x8 HR blocks whose luma std (0-255) is "
               "below 3 / at least 3, averaged over the images that have such blocks")
AGREEMENT_NOTE = ("index agreement: share of code cells whose D_lr content index is the same for the clean LR (HR "
                  "bicubic x1/4) and the degraded LR (after the slash: for two draws of the degradation, where the "
                  "data folder records it); DictSR runs only")
WORTH_TITLE = "LPIPS-Alex own -> clean indices, Δ [95% CI]"
WORTH_NOTE = (f"{WORTH_TITLE}: on the central 128x128 LR pixels of each image, the SR decoded from the degraded LR's "
              "own D_lr content indices -> from its clean LR's (perfect agreement, an oracle), and the mean paired "
              "difference with its interval as in the Δ columns: what index consistency would buy this decoder")


def _comparison_cells(record: dict) -> tuple:
    """The Δ cells of DELTA_TITLES, then PSNR flat / textured, index agreement and its worth, of one record."""
    return (delta_cell(record, "bicubic", "psnr_rgb", 2), delta_cell(record, "bicubic", "lpips_alex", 4),
            delta_cell(record, "paired-bicubic", "lpips_alex", 4), regions_cell(record), index_agreement_cell(record),
            agreement_worth_cell(record))


def _comparison_columns() -> tuple[Column, ...]:
    return (*(Column(title) for title in DELTA_TITLES), Column("PSNR flat / textured"), Column("index agreement"),
            Column(WORTH_TITLE))


def _scope(records: list[dict]) -> str:
    """Which images our columns were scored on (one data folder for all records, by construction)."""
    if not records:
        return "no records"
    datasets = sorted({f"`{r['dataset']}`" for r in records})
    counts = sorted({r["evaluation"]["summary"]["count"] for r in records})
    images = " or ".join(str(c) for c in counts)
    split = "test" if {r.get("split", "val") for r in records} == {"test"} else "validation"
    return f"{images} {split} pairs of {', '.join(datasets)}"


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def ablation_id(record: dict) -> str:
    """A DictSR run's row in Tables 3/4: its ablation, or "Ours" for the full model."""
    return record["ablation"] or OURS


VERSUS_TITLE = "ΔLPIPS-Alex vs its base [95% CI]"
VERSUS_NOTE = (f"{VERSUS_TITLE}: the row minus the run it changes (the row without an ablation of the same preset, "
               "\"Ours\" for the recipe's rows), paired over the scored images as in the Δ columns: an ablation "
               "that removes a part of the recipe shows what that part earns, a remedy that adds one what it costs")
KAPPA_NOTE = ("κ, MI: Cohen's kappa (chance agreement from both maps' entry usage) and mutual information in bits between "
              "the clean and the degraded LR's content index maps; index cost: LPIPS-Alex with the degraded LR's "
              "indices minus with the clean LR's")


def base_record(record: dict, dictsr: list[dict]) -> dict | None:
    """The run an ablation row changes: the DictSR record of the same preset without an ablation (the ablation
    schedule's "Ours" first, then the main run); None for such a record itself, or where there is none."""
    if not record["ablation"]:
        return None
    bases = [r for r in dictsr if not r["ablation"] and r["preset"] == record["preset"]]
    bases.sort(key=lambda r: (r["run"] != "ablation-Ours", r["run"] != "dictsr"))
    return bases[0] if bases else None


def _versus_cell(record: dict, reference: dict | None) -> Cell | None:
    from dictsr_core.evaluation.comparison import ComparisonError, compare_records

    if reference is None:
        return None
    try:
        found = compare_records(record, reference, ("lpips_alex",)).get("lpips_alex")
    except ComparisonError:
        return None  # scored on other images: no paired difference
    return bootstrap_cell(found, 4) if found else None


def comparison_table(records: list[dict], paper: str = "aim") -> Table:
    """Table 1 / 2: bicubic, baselines and full-model DictSR runs (ours) beside the paper's rows for `paper`.

    Ablation runs are left to the ablation table; paper methods we did not run keep a row of their own.
    """
    reference = PAPER_COMPARISON[_check_paper(paper)]
    benchmark = BENCHMARKS[paper]
    ours = [r for r in records if not (r["method"] == "dictsr" and r["ablation"])]
    methods = list(dict.fromkeys([r["method"] for r in ours] + list(reference)))
    methods.sort(key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    rows = []
    for method in methods:
        paper_row = reference.get(method)
        paper_cells = (None, None) if paper_row is None else (paper_row.layers, paper_row.gmacs)
        paper_cells += _paper_metrics(paper_row)
        mine = [r for r in ours if r["method"] == method]
        for record in mine:
            cost = record["cost"]
            rows.append((method_label(method), record["run"] if record["run_dir"] else None, record["preset"],
                         record["steps"], cost["inference_conv_layers"], cost["gmacs_128"], *_ours(record),
                         *_comparison_cells(record), *paper_cells))
        if not mine:
            rows.append((method_label(method), None, None, None, None, None, None, None, None,
                         *(None,) * len(_comparison_columns()), *paper_cells))
    columns = (Column("method"), Column("run"), Column("preset"), Column("steps"), Column("#layers"),
               Column("GMACs (128x128 LR)", ".1f"), *_our_metric_columns(), *_comparison_columns(),
               Column("paper #layers"), Column("paper GMACs", ".0f"), *_paper_columns(benchmark))
    caption = (f"Table {PAPER_TABLE[paper]} style. Our columns: {_scope(ours)}, {CONVENTION}; #layers and GMACs of "
               "the inference path at 128x128 LR, upsampling counted as written (nearest x2 + conv3x3), as the "
               f"paper counts. {CI_NOTE}. {REGION_NOTE}. {AGREEMENT_NOTE}. {WORTH_NOTE}. Per-image numbers: table1_images.md / "
               f".csv; per photo, flat and textured photos apart: table1_photos.md / .csv. Columns titled \"paper\": DictSR (CVPR 2024) Table {PAPER_TABLE[paper]}, "
               f"{benchmark} (100 validation images), as printed; not computed here, and not the same images "
               f"unless the data folder is {benchmark} itself. Written by `dictsr table`; do not edit.")
    return Table(columns, tuple(rows), caption)


def wants_ablation_table(records: list[dict]) -> bool:
    """An ablation table says something once a DictSR run has an ablation or there are several DictSR runs."""
    dictsr = [r for r in records if r["method"] == "dictsr"]
    return len(dictsr) > 1 or any(r["ablation"] for r in dictsr)


def _change(ablation: str) -> str:
    from dictsr_core.config import ABLATIONS

    if ablation == OURS:
        return "full model"
    return ABLATIONS[ablation][0] if ablation in ABLATIONS else ablation


def ablation_table(records: list[dict]) -> Table:
    """Tables 3 / 4: one row per DictSR run (full model "Ours" and ablations) beside the paper's row of that id."""
    order = list(PAPER_ABLATIONS)
    dictsr = [r for r in records if r["method"] == "dictsr"]
    dictsr.sort(key=lambda r: order.index(ablation_id(r)) if ablation_id(r) in order else len(order))
    rows = []
    for record in dictsr:
        ident = ablation_id(record)
        paper_row = PAPER_ABLATIONS.get(ident)
        reference = base_record(record, dictsr)
        rows.append((ident, record["run"], record["preset"], _change(ident), record["steps"], record["entries"],
                     record["activated_entries"], *_ours(record), delta_cell(record, "bicubic", "lpips_alex", 4),
                     _versus_cell(record, reference), _summary(record, "index_kappa"),
                     _summary(record, "index_mi_bits"), _summary(record, "index_cost_lpips_alex"),
                     index_agreement_cell(record), agreement_worth_cell(record),
                     None if paper_row is None else paper_row.entries,
                     None if paper_row is None else paper_row.activated, *_paper_metrics(paper_row)))
    benchmark = BENCHMARKS[PAPER_ABLATION_BENCHMARK]
    columns = (Column("id"), Column("run"), Column("preset"), Column("change"), Column("steps"), Column("N"),
               Column("activated D_lr entries"), *_our_metric_columns(), Column(DELTA_TITLES[1]),
               Column(VERSUS_TITLE), Column("κ", ".2f"), Column("MI (bits)", ".2f"), Column("index cost", "+.3f"),
               Column("index agreement"), Column(WORTH_TITLE), Column("paper N"), Column(f"paper activated D_lr entries ({benchmark})"),
               *_paper_columns(benchmark))
    caption = (f"Tables 3 / 4 style. Our columns: {_scope(dictsr)}, {CONVENTION}; activated entries = distinct "
               f"D_lr content entries chosen over all scored LR images, out of N. {CI_NOTE}. {VERSUS_NOTE}. "
               f"{KAPPA_NOTE}. {AGREEMENT_NOTE}. "
               f"{WORTH_NOTE}. "
               "Columns titled \"paper\": "
               f"DictSR (CVPR 2024) Tables 3 and 4, {benchmark}, as printed (\"-\": not given); not computed here. "
               "Written by `dictsr table`; do not edit.")
    return Table(columns, tuple(rows), caption)


def _image_label(record: dict) -> str:
    label = method_label(record["method"])
    return label if record["run"] == record["method"] else f"{label} ({record['run']})"


def image_table(records: list[dict]) -> Table:
    """One row per validation image (then the means): its photo, the share of flat 8x8 HR blocks, and each
    record's RGB PSNR and LPIPS-Alex, one column per record (the records of Table 1: ablation runs left out)."""
    from dictsr_core.evaluation.comparison import photo_of

    ours = [r for r in records if not (r["method"] == "dictsr" and r["ablation"])]
    ours.sort(key=lambda r: METHOD_ORDER.index(r["method"]) if r["method"] in METHOD_ORDER else len(METHOD_ORDER))
    per_record = [{row["name"]: row for row in r["evaluation"]["images"]} for r in ours]
    names = list(dict.fromkeys(name for rows in per_record for name in rows))
    rows = []
    for name in names:
        first = next(rows[name] for rows in per_record if name in rows)
        flat = next((rows[name].get("flat_fraction") for rows in per_record
                     if rows.get(name, {}).get("flat_fraction") is not None), None)
        cells = [name, first.get("photo") or photo_of(name), flat]
        for key in ("psnr_rgb", "lpips_alex"):
            cells += [rows.get(name, {}).get(key) for rows in per_record]
        rows.append(tuple(cells))
    summaries = [r["evaluation"]["summary"] for r in ours]
    flat_mean = next((s.get("flat_fraction") for s in summaries if s.get("flat_fraction") is not None), None)
    rows.append(("mean", None, flat_mean, *(s.get("psnr_rgb") for s in summaries),
                 *(s.get("lpips_alex") for s in summaries)))
    labels = [_image_label(r) for r in ours]
    columns = (Column("image"), Column("photo"), Column("flat_fraction", ".3f"),
               *(Column(f"PSNR (RGB) {label}", ".2f") for label in labels),
               *(Column(f"LPIPS-Alex {label}", ".4f") for label in labels))
    caption = (f"Per-image scores of the Table 1 records: {_scope(ours)}, {CONVENTION}. flat_fraction: share of the "
               "8x8 HR blocks whose luma std (0-255) is below 3. The last row: the means of Table 1. \"-\": not available "
               "(the PSNR of identical images is infinite, stored as null, and left out of the means). Written by "
               "`dictsr table`; do not edit.")
    return Table(columns, tuple(rows), caption)


FLAT_PHOTO = 0.5  # a photo is "flat" when at least half of its crops' 8x8 HR blocks are flat (luma std < 3)


def photo_table(records: list[dict], reference: str = "paired-bicubic", per_photo: bool = True) -> Table:
    """One of photo_tables: the rows of each photo and the groups (per_photo), or the groups alone."""
    return photo_tables(records, reference)[0 if per_photo else 1]


def photo_tables(records: list[dict], reference: str = "paired-bicubic") -> tuple[Table, Table]:
    """(one row per validation photo (its crops averaged), flattest first, then the flat photos, the textured
    photos and all photos; the same without the rows of each photo): each record's LPIPS-Alex and, for each
    record but bicubic and `reference`, its mean paired difference to `reference` with a bootstrap interval over
    those photos (drawn once for both tables). Where a method wins depends on the content; this is the split by
    photo that says so (the records of Table 1; ablation runs left out)."""
    from dictsr_core.evaluation.comparison import paired_bootstrap, photo_label

    ours = [r for r in records if not (r["method"] == "dictsr" and r["ablation"])]
    ours.sort(key=lambda r: METHOD_ORDER.index(r["method"]) if r["method"] in METHOD_ORDER else len(METHOD_ORDER))
    base = next((r for r in ours if r["run"] == reference), None)
    versus = [] if base is None else [r for r in ours if r["method"] != "bicubic" and r is not base]
    per_record = [{row["name"]: row for row in r["evaluation"]["images"]} for r in ours]
    names = list(dict.fromkeys(name for rows in per_record for name in rows))
    first = {name: next(rows[name] for rows in per_record if name in rows) for name in names}
    photos: dict[str, list[str]] = {}
    for name in names:
        photos.setdefault(photo_label(first[name]), []).append(name)
    flat = {photo: _mean([first[n].get("flat_fraction") for n in crops]) for photo, crops in photos.items()}

    def lpips(rows: dict, crops) -> float | None:
        return _mean([rows.get(n, {}).get("lpips_alex") for n in crops])

    def delta(record: dict, crops, digits: int = 4):
        crops = sorted(crops)  # the image order of compare_records: all photos give Table 1's interval
        rows, reference_rows = per_record[ours.index(record)], per_record[ours.index(base)]
        if not all(n in rows and n in reference_rows for n in crops):
            return None
        return bootstrap_cell(paired_bootstrap([rows[n]["lpips_alex"] for n in crops],
                                               [reference_rows[n]["lpips_alex"] for n in crops],
                                               clusters=[photo_label(first[n]) for n in crops], names=crops), digits)

    rows = []
    order = sorted(photos, key=lambda p: -(flat[p] if flat[p] is not None else -1.0))
    for photo in order:
        crops = photos[photo]
        rows.append((photo, len(crops), flat[photo], *(lpips(r, crops) for r in per_record),
                     *(None if base is None else _single(per_record[ours.index(r)], per_record[ours.index(base)], crops)
                       for r in versus)))
    groups = (("flat photos", [p for p in order if flat[p] is not None and flat[p] >= FLAT_PHOTO]),
              ("textured photos", [p for p in order if flat[p] is None or flat[p] < FLAT_PHOTO]),
              ("all photos", order))
    group_rows = []
    for title, members in groups:
        if not members:
            continue
        crops = [n for p in members for n in photos[p]]
        group_rows.append((f"{title} ({len(members)})", len(crops), _mean([flat[p] for p in members]),
                           *(lpips(r, crops) for r in per_record), *(delta(r, crops) for r in versus)))
    labels = [_image_label(r) for r in ours]
    columns = (Column("photo"), Column("crops"), Column("flat_fraction", ".3f"),
               *(Column(f"LPIPS-Alex {label}", ".4f") for label in labels),
               *(Column(f"ΔLPIPS-Alex {_image_label(r)} vs {reference}", ".4f") for r in versus))

    def caption(per_photo: bool) -> str:
        return (("Per photo" if per_photo else "Flat and textured photos") + f": {_scope(ours)}, {CONVENTION}; "
                + ("each photo's crops averaged, flattest photo first. " if per_photo else
                   "one row per group of photos (the rows of each photo: table1_photos.md). ") +
                f"flat_fraction: share of the 8x8 HR blocks whose luma std (0-255) is below 3; a photo with "
                f"flat_fraction >= {FLAT_PHOTO} counts as flat. "
                + (f"On a photo's row, Δ is the mean over its crops of the paired difference to {reference} "
                   "(LPIPS-Alex, lower is better); on the group rows, the mean over " if per_photo else
                   f"Δ: the mean paired difference to {reference} (LPIPS-Alex, lower is better) over ")
                + "the group's images with its 95 % bootstrap interval resampling the group's photos (10000 "
                "resamples, seed 0) and, where it spans 0, about how many photos would exclude it. Written by "
                "`dictsr table`; do not edit.")
    return Table(columns, tuple(rows + group_rows), caption(True)), Table(columns, tuple(group_rows), caption(False))


def _mean(values) -> float | None:
    kept = [float(v) for v in values if _finite(v)]
    return sum(kept) / len(kept) if kept else None


def _single(rows: dict, reference_rows: dict, crops) -> float | None:
    """A photo's mean paired LPIPS-Alex difference over its crops (no interval: one photo)."""
    pairs = [(rows[n].get("lpips_alex"), reference_rows[n].get("lpips_alex")) for n in crops
             if n in rows and n in reference_rows]
    return _mean([a - b for a, b in pairs if _finite(a) and _finite(b)])


SEEDS_NOTE = ("Δ: mean over the validation images of the paired difference, run minus reference (PSNR higher is "
              "better, LPIPS lower). [95% CI, photos]: percentile bootstrap interval resampling photos, as in the "
              "tables; on the pooled row over each image's difference averaged across the seeds (the seeds held "
              "fixed). [95% CI, seeds x photos]: a two-stage bootstrap drawing training seeds with replacement and "
              "then photos: whether the difference would hold for a seed not trained yet (coarse with few seeds). "
              "10000 resamples, seed 0")


def seeds_table(pooled: dict[str, dict], run: str, reference: str, dataset: str) -> Table:
    """One row per training seed and a pooled row, for each metric of `pooled` ({metric: seeds.pooled_comparison})."""
    labels = {"psnr_rgb": ("PSNR", ".2f", 2), "lpips_alex": ("LPIPS-Alex", ".4f", 4)}
    columns = [Column("training seed")]
    for metric in pooled:
        name, fmt, _ = labels[metric]
        columns += [Column(f"{run} {name}", fmt), Column(f"{reference} {name}", fmt), Column(f"Δ{name} [95% CI, photos]"),
                    Column(f"Δ{name} [95% CI, seeds x photos]")]
    first = next(iter(pooled.values()))
    rows = []
    for i, entry in enumerate(first["per_seed"]):
        row = [str(entry["seed"])]
        for metric, found in pooled.items():
            seed = found["per_seed"][i]
            diff = seed["diff"]
            row += [seed["run"], seed["reference"],
                    interval_cell(diff["mean_diff"], diff["ci_low"], diff["ci_high"], labels[metric][2]), None]
        rows.append(tuple(row))
    row = [f"mean of {first['seeds']}"]
    for metric, found in pooled.items():
        digits, photos, both = labels[metric][2], found["photos"], found["seeds_photos"]
        row += [found["run"], found["reference"], interval_cell(photos["mean_diff"], photos["ci_low"], photos["ci_high"], digits),
                interval_cell(photos["mean_diff"], both["ci_low"], both["ci_high"], digits)]
    rows.append(tuple(row))
    dropped = sorted({name for found in pooled.values() for name in found["dropped"]})
    images = first["photos"]["n"]
    caption = (f"Training seeds pooled on `{dataset}`: {run} against {reference}, {images} validation pairs"
               + (f" ({len(dropped)} left out: a value missing in some seed)" if dropped else "")
               + f". {SEEDS_NOTE}. Written by `dictsr seeds`; do not edit.")
    return Table(tuple(columns), tuple(rows), caption)


def _summary(record: dict, key: str):
    value = record["evaluation"]["summary"].get(key)
    return value if _finite(value) else None


def _training_cell(record: dict) -> str | None:
    """What a record's model cost to train: a published peer's own words, or our run's wall clock and device."""
    if record.get("trained_on"):
        return record["trained_on"]
    if record.get("train_wall_s") is None:
        return None
    device = record.get("device") or "cpu"
    return f"{record['train_wall_s'] / 60:.1f} min" + (", 2-core CPU" if "cpu" in str(device) else "")


def verdict_table(records: list[dict]) -> Table:
    """The peers issue's verdict table: every method's LPIPS-Alex, LPIPS-VGG, PSNR, SSIM (Measure.py) and
    high-frequency energy, its lead over each equal-budget peer in LPIPS-Alex and LPIPS-VGG with intervals
    resampling photos, the index consistency of DictSR runs (kappa, mutual information, index cost) and what
    each method's training cost."""
    ours = [r for r in records if not (r["method"] == "dictsr" and r["ablation"])]
    ours.sort(key=lambda r: METHOD_ORDER.index(r["method"]) if r["method"] in METHOD_ORDER else len(METHOD_ORDER))
    peers = [p for p in EQUAL_BUDGET_METHODS if any(r["method"] == p for r in ours)]
    rows = []
    for record in ours:
        rows.append((method_label(record["method"]), record["run"] if record["run_dir"] else None,
                     _summary(record, "lpips_alex"), _summary(record, "lpips_vgg"), _summary(record, "psnr_rgb"),
                     _summary(record, "ssim_rgb"), _summary(record, "hf_energy_ratio"),
                     *(delta_cell(record, peer, metric, 3) for peer in peers for metric in ("lpips_alex", "lpips_vgg")),
                     _summary(record, "index_kappa"), _summary(record, "index_mi_bits"),
                     _summary(record, "index_cost_lpips_alex"), _training_cell(record)))
    columns = (Column("method"), Column("run"), Column("LPIPS-Alex", ".4f"), Column("LPIPS-VGG", ".4f"),
               Column("PSNR (RGB)", ".2f"), Column("SSIM (RGB, Measure.py)", ".4f"), Column("HF energy SR/HR", ".2f"),
               *(Column(f"Δ{name} vs {peer} [95% CI]") for peer in peers for name in ("LPIPS-Alex", "LPIPS-VGG")),
               Column("κ", ".2f"), Column("MI (bits)", ".2f"), Column("index cost", "+.3f"), Column("training"))
    split = {r.get("split", "val") for r in ours}
    caption = (f"Verdict table ({_scope(ours)}; split {', '.join(sorted(split))}). Δ: mean paired difference to the "
               "equal-budget peer (lower is better), 95 % bootstrap interval resampling photos. HF energy: the SR's "
               "Laplacian energy over the HR's (under 1: smoother than the HR). κ, MI: Cohen's kappa and mutual "
               "information between the clean and the degraded LR's index maps; index cost: LPIPS-Alex with the "
               "degraded LR's indices minus with the clean LR's. Training: wall clock of our runs; for the published "
               "peers, what they were trained on (not our budget). Written by `dictsr table`; do not edit.")
    return Table(columns, tuple(rows), caption)


def write_tables(records: list[dict], out_dir, paper: str = "aim") -> tuple[list[Path], str]:
    """Write table1.md/.csv, table1_images.md/.csv (one row per validation image), table1_photos.md/.csv (one row
    per photo, and flat against textured photos) and, when wanted, table3.md/.csv into `out_dir` atomically;
    (paths, Markdown of table1, the flat / textured photo groups and table3: the rows of each image and of each
    photo are only written)."""
    out_dir = Path(out_dir)
    tables = {"table1": comparison_table(records, paper), "table1_images": image_table(records),
              "table1_photos": None}
    tables["table1_photos"], photo_groups = photo_tables(records)
    shown = [tables["table1"].markdown(), photo_groups.markdown()]
    if any(r["method"] in EQUAL_BUDGET_METHODS for r in records):  # the peers issue's verdict, flat / textured against each
        tables["verdict"] = verdict_table(records)
        shown.append(tables["verdict"].markdown())
        for peer in EQUAL_BUDGET_METHODS:
            if any(r["method"] == peer for r in records):
                tables[f"verdict_photos_{peer}"], groups = photo_tables(records, reference=peer)
                shown.append(groups.markdown())
    if wants_ablation_table(records):
        tables["table3"] = ablation_table(records)
    written = []
    for name, table in tables.items():
        written.append(atomic_write_text(out_dir / f"{name}.md", table.markdown()))
        written.append(atomic_write_text(out_dir / f"{name}.csv", table.csv()))
    if "table3" in tables:
        shown.append(tables["table3"].markdown())
    return written, "\n".join(shown)


def update_readme(readme, dataset: str, markdown: str) -> Path:
    """Put `markdown` between this dataset's markers in the README (appending a section the first time).

    The README's tables are written by `dictsr table --readme`, never by hand: between the markers
    everything is replaced on each run.
    """
    return replace_readme_block(readme, f"dictsr table {dataset}", markdown, f"### Results on `{dataset}`")
