"""What each workbook notebook does, as functions: a notebook is its parameters cell plus calls into here.

Every function takes the notebook's `Context` first, writes its files under the context's folders
(atomically, through the package's writers) and returns what the notebook displays.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from dictsr_core.workbook.execute import execute_notebook
from dictsr_core.workbook.plan import (ablation_runs, common_parameters, derived_runs, plan,  # notebooks call
                                       run_checkpoints, training_config)  # stages.training_config
from dictsr_core.workbook.profiles import Context, WorkbookError, preparable

SPLITS = ("train_hr", "train_lr", "val_lr", "val_hr")
PROFILE = "profile"  # train_run's derived-run keywords: what `make main` passes (02_train's defaults)


def profile_default(ctx: Context, notebook: str, name: str, given=None):
    """`given`, or where it is None the value `dictsr workbook` passes parameter `name` of `notebook` for the
    context's profile (its first stage of that notebook: 02_train's is the main DictSR run): a notebook opened in
    JupyterLab and run with its defaults does what `make main` did."""
    if given is not None:
        return given
    stage = next((stage for stage in plan(ctx) if stage.notebook == notebook), None)
    if stage is None:
        raise WorkbookError(f"profile {ctx.profile.name} runs no {notebook}; give {name} explicitly")
    return stage.parameters.get(name)


# ---- 01_data ------------------------------------------------------------------------------

def prepare_data(ctx: Context, force: bool = False) -> Path:
    """The context's data folder, prepared from the profile's source when it is the default one and missing."""
    from dictsr_core.data.io import list_images
    from dictsr_core.data.prepare import prepare_dataset

    data_dir = ctx.data_dir
    spec = preparable(data_dir)  # a folder named <source>-<degradation> (photos-aim, sample-ntire) is made here
    missing = [split for split in SPLITS if not (data_dir / split).is_dir() or not list_images(data_dir / split)]
    stale = bool(spec) and not missing and _older_protocol(data_dir, spec[0])
    if spec and (force or missing or stale):
        why = "made from an older photo catalogue" if stale else "missing" if missing else "--force"
        print(f"preparing {data_dir} ({why}) from source {spec[0]!r} with the {spec[1]!r} degradation", flush=True)
        prepare_dataset(data_dir, source=spec[0], degradation=spec[1], seed=ctx.seed)
    elif missing:
        raise WorkbookError(f"{data_dir}: missing or empty {', '.join(missing)} (prepare it: `dictsr prepare --out {data_dir} ...`)")
    else:
        print(f"using {data_dir}")
    return data_dir


def _older_protocol(data_dir: Path, source: str) -> bool:
    """A photos dataset prepared from an older catalogue: before validation photos were cut into crops (10 pairs),
    or before the validation-only photos (40 pairs). Its training images come out byte-identical when made again,
    so trained runs stay valid; only the validation set grows."""
    import json

    from dictsr_core.data.sources.photos import CATALOGUE

    try:
        manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if source != "photos" or manifest.get("made_by") != "dictsr prepare":
        return False
    return not manifest.get("val_crops") or (manifest.get("source_notes") or {}).get("catalogue", 1) < CATALOGUE


def data_overview(ctx: Context, gallery_images: int = 3) -> dict:
    """Split summary, degradation statistics (tables under TABLE_DIR) and notebook 01's two figures."""
    from dictsr_core.analysis.figures.data import data_gallery, degradation_statistics_figure
    from dictsr_core.atomic import atomic_write_text
    from dictsr_core.data.statistics import degradation_statistics, split_summary, statistics_table

    splits = split_summary(ctx.data_dir)
    split_md = "| split | images | smallest | largest |\n|---|---|---|---|\n" + "".join(
        f"| {r['split']} | {r['images']} | {r['min_size']} | {r['max_size']} |\n" for r in splits)
    split_md += f"\nsource `{splits[0]['source']}`, degradation `{splits[0]['degradation']}`\n"
    rows = degradation_statistics(ctx.data_dir)
    stats_md = statistics_table(rows)
    atomic_write_text(ctx.table_dir / "data_splits.md", split_md)
    atomic_write_text(ctx.table_dir / "degradation_stats.md", stats_md)
    atomic_write_text(ctx.table_dir / "degradation_stats.csv", _csv(rows))
    gallery = data_gallery(ctx.data_dir, count=gallery_images)
    ctx.save(gallery, "data_gallery")
    statistics = degradation_statistics_figure(rows)
    ctx.save(statistics, "data_degradation_stats")
    return {"splits": split_md, "statistics": stats_md, "rows": rows, "gallery": gallery, "statistics_figure": statistics}


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---- 02_train -----------------------------------------------------------------------------

def train_run(ctx: Context, run_name: str, cfg, force: bool = False, live: bool = True, l1_run: str | None = None,
              coarse_run: str | None = None, coarse_entries: int | None = None, coarse_restarts: int = 1,
              split_run: str | None = None, coarse_lookup_blurs=None, gated_run: str | None = None,
              coarse_gates=None, gate_lookup_blurs=None) -> dict:
    """Train RUN_ROOT/run_name (resuming a partial run, reusing a finished one with the same config) and save
    its curves as figure train_curves_<run_name>; with l1_run, also make RUN_ROOT/l1_run, its L1-only model (the
    checkpoint kept at the start of the perceptual phase); with coarse_run, RUN_ROOT/coarse_run, the run with its
    code coarsened to coarse_entries entries (training/code_coarsening.py, fit on the data's training images; the
    best of coarse_restarts k-means draws there); with split_run too, RUN_ROOT/split_run, that code grown by greedy
    splits while its training agreement holds (training/code_refinement.py); coarse_lookup_blurs: both codes derived
    once per LR lookup blur, the best on the training images kept (derive_coarse_run's lookup_blurs); with gated_run
    too, RUN_ROOT/gated_run, the texture-gated code (training/texture_gate_search.py: coarse_restarts draws x
    gate_lookup_blurs x coarse_gates scored on the training images). Any of these given as "profile" (02_train's
    defaults) is what `make main` passes for this run (workbook.plan.derived_runs)."""
    from dictsr_core.analysis.figures.training import LiveTrainingPlot, read_metrics, training_curves
    from dictsr_core.training.build import resized_only
    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.training.code_coarsening import derive_coarse_run
    from dictsr_core.training.run_folder import derive_average_run
    from dictsr_core.training.texture_gate_search import derive_gated_run
    from dictsr_core.training.trainer import train
    from dictsr_core.workbook.budget import calibrate

    asked = {"l1_run": l1_run, "coarse_run": coarse_run, "coarse_entries": coarse_entries,
             "coarse_restarts": coarse_restarts, "split_run": split_run, "coarse_lookup_blurs": coarse_lookup_blurs,
             "gated_run": gated_run, "coarse_gates": coarse_gates, "gate_lookup_blurs": gate_lookup_blurs}
    if PROFILE in asked.values():  # 02_train's defaults: what `make main` derives from this run
        profile = derived_runs(ctx, run_name, cfg, force)
        unset = {"coarse_restarts": 1}
        asked = {key: profile.get(key, unset.get(key)) if value == PROFILE else value for key, value in asked.items()}
        # by name, not by position: a keyword added to `asked` cannot shift the others
        l1_run, coarse_run, coarse_entries = asked["l1_run"], asked["coarse_run"], asked["coarse_entries"]
        coarse_restarts, split_run = asked["coarse_restarts"], asked["split_run"]
        coarse_lookup_blurs, gated_run = asked["coarse_lookup_blurs"], asked["gated_run"]
        coarse_gates, gate_lookup_blurs = asked["coarse_gates"], asked["gate_lookup_blurs"]
    run_dir = ctx.run_dir(run_name)
    ckpt = run_dir / "checkpoints" / "last.pt"
    stored = load_checkpoint(ckpt) if ckpt.exists() and not force else None
    if stored is not None and stored["config"].to_dict() != cfg.to_dict() and not resized_only(
            stored["config"], cfg, stored["step"]):
        # a finished run of another recipe is minutes to hours of training: kept beside, never deleted
        aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        print(f"{run_dir} was trained with another config; moved to {aside}, training it again")
        force, stored = True, None
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    resized = calibrate(ctx, run_name, cfg, lambda method, overrides=None: training_config(ctx, method, overrides=overrides),
                        lambda first, steps, resume: train(first, ctx.data_dir, run_dir, resume=resume,
                                                           device=str(ctx.device), stop_after=steps, progress=False),
                        say=lambda line: print(line, flush=True))
    if resized is not None:  # rule 11: its first steps trained, the rest re-sized at the rate they ran
        cfg, stored = resized, load_checkpoint(ckpt)
    entries = cfg.model.entries if cfg.method == "dictsr" else None
    title = f"{run_name}: {cfg.method}, preset {cfg.preset}" + (f", ablation {cfg.ablation}" if cfg.ablation else "")
    if stored is not None and stored["step"] >= cfg.train.total_steps:
        print(f"{ckpt} is finished ({cfg.train.total_steps} steps); reusing it (force=True retrains)")
        steps, wall = stored["step"], stored.get("train_wall_s")
    else:
        done = train(cfg, ctx.data_dir, run_dir, resume=stored is not None, device=str(ctx.device),
                     on_log=LiveTrainingPlot(title, entries) if live else None)
        steps, wall = done["step"], done["train_wall_s"]
        stored = None  # training ended on another checkpoint than the one read
    if l1_run and derive_average_run(run_dir, ctx.run_dir(l1_run), cfg, force=force, snapshot="before-perceptual"):
        print(f"{ctx.run_dir(l1_run)}: the L1-only model, {run_name} at step {cfg.train.l1_phase_end} (the start of "
              "its perceptual phase)")
    if coarse_run and derive_coarse_run(run_dir, ctx.run_dir(coarse_run), coarse_entries, ctx.data_dir, force=force,
                                        restarts=coarse_restarts, payload=stored, lookup_blurs=coarse_lookup_blurs,
                                        device=str(ctx.device)):
        print(f"{ctx.run_dir(coarse_run)}: {run_name} with its code coarsened to {coarse_entries} entries")
    if coarse_run and split_run and derive_coarse_run(run_dir, ctx.run_dir(split_run), coarse_entries, ctx.data_dir,
                                                      force=force, restarts=coarse_restarts, split=True, payload=stored,
                                                      lookup_blurs=coarse_lookup_blurs, device=str(ctx.device)):
        print(f"{ctx.run_dir(split_run)}: {coarse_run}'s code grown by greedy splits")
    if coarse_run and gated_run and derive_gated_run(run_dir, ctx.run_dir(gated_run), coarse_entries, ctx.data_dir,
                                                     coarse_gates, restarts=coarse_restarts, force=force,
                                                     lookup_blurs=gate_lookup_blurs, payload=stored,
                                                     device=str(ctx.device)):
        print(f"{ctx.run_dir(gated_run)}: {coarse_run}'s code for flat LR cells, all entries for textured ones")
    records = read_metrics(run_dir / "metrics.jsonl")
    figure = training_curves(records, title, entries)
    ctx.save(figure, f"train_curves_{run_name}")
    summary = {"run": run_name, "run_dir": str(run_dir), "steps": steps, "train_wall_s": wall,
               "last_log": records[-1] if records else None, "l1_run": l1_run, "coarse_run": coarse_run,
            "split_run": split_run, "gated_run": gated_run}
    return {"summary": summary, "figure": figure}


# ---- 03_evaluate --------------------------------------------------------------------------

def evaluate_runs(ctx: Context, runs: list[str], table_dir=None, paper: str = "aim", figure_name: str = "eval_metrics",
                  force: bool = False, test: bool = True, validation: bool = True) -> dict:
    """Bicubic + each run scored on the validation pairs (records reused while valid), Table 1 (+ Table 3 when
    there are several DictSR runs) under table_dir, and a bar chart of the metrics. With `test` and a data folder
    that has a test split: also bicubic, the published peers and each run on test (RUN_ROOT/results-test,
    TABLE_DIR/test/), the name of the model `dictsr sr` uses beside them (model.txt), and the targets on test
    (docs/evaluation.md: validation for choices, test for reporting). `validation=False` there: the test split
    only (the figure shows test; the validation tables are not made)."""
    from dictsr_core.analysis.figures.results import metric_bars

    table_dir = Path(table_dir) if table_dir else ctx.table_dir
    has_test = test and ctx.has_test_split
    out = {"records": None, "markdown": "", "figure": None, "test_records": None}
    if validation or not has_test:
        from dictsr_core.evaluation.results import collect_records
        from dictsr_core.evaluation.tables import write_tables

        out["records"] = collect_records([ctx.run_dir(run) for run in runs], ctx.data_dir,
                                         results_root=ctx.results_root, device=ctx.device, force=force)
        _, out["markdown"] = write_tables(out["records"], table_dir, paper=paper)
    if has_test:
        out.update(evaluate_test(ctx, runs, table_dir / "test", paper=paper, force=force))
        out["markdown"] += ("\n**Test split** (for reporting; docs/evaluation.md)\n\n" if out["records"] else
                            "**Test split** (for reporting; docs/evaluation.md; validation: `validation = True`)\n\n") \
            + out["test_markdown"]
    shown, split = (out["records"], "Validation") if out["records"] else (out["test_records"], "Test")
    out["figure"] = metric_bars(shown, f"{split} metrics on {ctx.data_dir.name} ({ctx.profile.name} profile)")
    ctx.save(out["figure"], figure_name)
    targets = recipe_targets(ctx, runs, table_dir, split="test" if out["test_records"] else "val")
    if targets:
        out["markdown"] += f"\n{targets}"
    return out


def test_results_root(ctx: Context) -> Path:
    return ctx.run_root / "results-test"


def evaluate_test(ctx: Context, runs: list[str], table_dir: Path, paper: str = "aim", force: bool = False) -> dict:
    """Bicubic, the published peers (peers/pretrained.py) and each run on the data folder's test split, Table 1 of
    test under table_dir, and model.txt (the model `dictsr sr` uses) beside the records."""
    from dictsr_core.atomic import atomic_write_text
    from dictsr_core.evaluation.results import collect_records, dataset_name
    from dictsr_core.evaluation.tables import write_tables
    from dictsr_core.peers.names import PRETRAINED_METHODS
    from dictsr_core.workbook.profiles import recipe_model_name

    root = test_results_root(ctx)
    records = collect_records([ctx.run_dir(run) for run in runs], ctx.data_dir, results_root=root, device=ctx.device,
                              force=force, split="test", methods=PRETRAINED_METHODS)
    atomic_write_text(root / dataset_name(ctx.data_dir) / "model.txt", recipe_model_name(ctx.profile) + "\n")
    _, markdown = write_tables(records, table_dir, paper=paper)
    return {"test_records": records, "test_markdown": markdown}


def recipe_targets(ctx: Context, runs: list[str], table_dir: Path, split: str = "val") -> str | None:
    """The peers issue's targets of the recipe's model against the equal-budget peers, this training seed only
    (`dictsr targets` pools seeds), on `split`, written to table_dir/targets.md; None where the runs scored lack
    the model or a peer."""
    from dictsr_core.atomic import atomic_write_text
    from dictsr_core.evaluation.results import dataset_name
    from dictsr_core.evaluation.targets import dataset_targets, targets_table
    from dictsr_core.peers.names import EQUAL_BUDGET_METHODS
    from dictsr_core.workbook.profiles import recipe_model_name

    model = recipe_model_name(ctx.profile)
    if model not in runs or any(peer not in runs for peer in EQUAL_BUDGET_METHODS):
        return None
    root = test_results_root(ctx) if split == "test" else Path(ctx.results_root)
    found = dataset_targets([root / dataset_name(ctx.data_dir)], model, EQUAL_BUDGET_METHODS)
    markdown = targets_table([found]).markdown()
    atomic_write_text(table_dir / "targets.md", markdown)
    return markdown


# ---- 04_ablations -------------------------------------------------------------------------

def run_ablations(ctx: Context, variants=None, force: bool = False) -> dict:
    """Each variant trained by notebook 02 and all scored by notebook 03 (papermill, executed copies under
    NOTEBOOK_DIR/ablations), then Table 3 and the ablation bar charts."""
    from dictsr_core.analysis.figures.results import ablation_bars
    from dictsr_core.config import DERIVED_ABLATIONS
    from dictsr_core.evaluation.results import collect_records
    from dictsr_core.evaluation.tables import ablation_table
    from dictsr_core.training.run_folder import derive_average_run

    runs = ablation_runs(ctx, variants)
    out = ctx.notebook_dir / "ablations"
    common = common_parameters(ctx)
    for ident, run in runs.items():
        if run == "dictsr" and (ctx.run_dir(run) / "checkpoints" / "last.pt").exists():
            continue  # the main run, trained by stage 02
        if ident in DERIVED_ABLATIONS:
            continue  # made from Ours below, not trained
        ablation = None if ident == "Ours" else ident
        cfg = training_config(ctx, "dictsr", ablation, schedule="ablation")
        execute_notebook("02_train", out / f"02_train-{ident}.ipynb", {
            **common, "method": "dictsr", "ablation": ablation, "schedule": "ablation",
            "run_name": run, "force": force, "live": False}, root=ctx.root, force=force, timeout=ctx.profile.cell_timeout_s,
            configs={str(ctx.run_dir(run)): cfg.to_dict()})
    for ident in (i for i in runs if i in DERIVED_ABLATIONS):
        cfg = training_config(ctx, "dictsr", ident, schedule="ablation")
        if derive_average_run(ctx.run_dir(runs["Ours"]), ctx.run_dir(runs[ident]), cfg, force=force):
            print(f"[workbook] {runs[ident]}: made from {runs['Ours']}'s checkpoint (its steps are Ours' steps; it "
                  "differs in the weight average only)", flush=True)
    table_dir = ctx.table_dir / "ablations"
    execute_notebook("03_evaluate", out / "03_evaluate-ablations.ipynb", {
        **common, "runs": list(runs.values()), "table_dir": str(table_dir), "figure_name": "ablation_metrics",
        "force": force, "test": False}, root=ctx.root, force=force, timeout=ctx.profile.cell_timeout_s,
        inputs=run_checkpoints(ctx, runs.values()))
    records = collect_records([ctx.run_dir(run) for run in runs.values()], ctx.data_dir, results_root=ctx.results_root,
                              device=ctx.device, log=lambda message: None)
    figure = ablation_bars(records, f"Ablations on {ctx.data_dir.name} ({ctx.profile.name} profile)")
    ctx.save(figure, "ablation_bars")
    return {"records": records, "markdown": ablation_table(records).markdown(), "figure": figure}


def config_markdown(cfg) -> str:
    """The run's config as YAML and its inference cost (layers, GMACs at 128x128 LR, parameters), for notebook 02."""
    import yaml

    from dictsr_core.performance.cost import model_cost

    cost = model_cost(cfg)
    keys = ("inference_conv_layers", "gmacs_128", "gmacs_128_executed", "params")
    table = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n| " + " | ".join(
        f"{cost[k]:.2f}" if isinstance(cost.get(k), float) else str(cost.get(k)) for k in keys) + " |\n"
    return f"```yaml\n{yaml.safe_dump(cfg.to_dict(), sort_keys=False)}```\n\nInference cost:\n\n{table}"


# ---- shared by 05-07 ----------------------------------------------------------------------

def validation_pairs(ctx: Context, max_images: int | None = None) -> list[dict]:
    """The validation pairs as {"name", "lr", "hr"} (uint8 arrays), in name order."""
    from dictsr_core.data.datasets import PairedImages

    pairs = PairedImages(ctx.data_dir / "val_lr", ctx.data_dir / "val_hr")
    count = len(pairs) if max_images is None else min(max_images, len(pairs))
    return [pairs[i] for i in range(count)]


def load_run_model(ctx: Context, run: str):
    """(inference module on the context's device, Config) of RUN_ROOT/run's last checkpoint."""
    from dictsr_core.evaluation.results import checkpoint_path
    from dictsr_core.training.checkpoint import inference_model, load_checkpoint

    path = checkpoint_path(ctx.run_dir(run))
    payload = load_checkpoint(path)
    return inference_model(payload, ctx.device, source=str(path)), payload["config"]


# ---- 05_dictionaries ----------------------------------------------------------------------

def dictionary_figures(ctx: Context, run: str = "dictsr", embedding: str = "umap", points: int | None = None,
                       offset_entries: int = 4, atlas_atoms: int | None = None) -> dict:
    """Fig. 4: one 2-D embedding fit (D_lr entries, validation LR embeddings, offsets of the most used entries),
    the offsets around those entries, and the D_hr atom atlas (most used first)."""
    import numpy as np

    from dictsr_core.analysis.dictionary_analysis import decode_hr_atoms, dictionary_map
    from dictsr_core.analysis.figures.dictionaries import degradation_offsets_figure, dictionary_umap_figure, hr_atom_atlas_figure

    model, cfg = load_run_model(ctx, run)
    if cfg.method != "dictsr":
        raise WorkbookError(f"run {run!r} is a {cfg.method} baseline: it has no dictionaries")
    images = [pair["lr"] for pair in validation_pairs(ctx)]
    dmap = dictionary_map(model, images, max_points=points or ctx.profile.umap_points, offset_entries=offset_entries,
                          method=embedding, seed=ctx.seed, device=ctx.device)
    order = np.argsort(-dmap.usage, kind="stable")[: atlas_atoms or ctx.profile.atlas_atoms]
    atoms = decode_hr_atoms(model, entries=order)
    figures = {"map_figure": dictionary_umap_figure(dmap), "offsets_figure": degradation_offsets_figure(dmap),
               "atlas_figure": hr_atom_atlas_figure(atoms, order, usage=dmap.usage)}
    for key, name in (("map_figure", "fig4_dictionary_map"), ("offsets_figure", "fig4_degradation_offsets"),
                      ("atlas_figure", "fig4_hr_atoms")):
        ctx.save(figures[key], name)
    summary = {"run": run, "embedding": dmap.method, "entries": int(len(dmap.usage)),
               "used_on_validation": int((dmap.usage > 0).sum()), "patch_points": int(len(dmap.patch_xy)),
               "offset_entries": [int(e) for e in dmap.offset_entries]}
    return {"summary": summary, "map": dmap, **figures}


# ---- 06_qualitative -----------------------------------------------------------------------

def index_agreement_view(ctx: Context, run: str = "dictsr", image: str | None = None) -> dict:
    """Index consistency of a run over the validation set: per-image agreement of the content index maps
    (clean vs degraded LR, two degradation draws), and the figure for one image (default: the median one)."""
    from dictsr_core.analysis.figures.index_agreement import index_agreement_figure
    from dictsr_core.data.degradations import data_degradation
    from dictsr_core.evaluation.index_consistency import SUMMARY_KEYS, clean_lr, image_agreement, mean_summary

    model, cfg = load_run_model(ctx, run)
    if cfg.method != "dictsr":
        raise WorkbookError(f"run {run!r} is a {cfg.method} baseline: it has no index maps")
    pairs = validation_pairs(ctx)
    degradation = data_degradation(ctx.data_dir)
    found = {p["name"]: image_agreement(model, p["lr"], p["hr"], name=p["name"], degradation=degradation,
                                        device=ctx.device, keep_maps=True) for p in pairs}
    rows = [{"name": name, **{key: v.get(key) for key in SUMMARY_KEYS}} for name, v in found.items()]
    if image is None:
        image = sorted(rows, key=lambda r: r["index_agreement"])[len(rows) // 2]["name"]
    if image not in found:
        raise WorkbookError(f"image {image!r} is not a validation image of {ctx.data_dir}")
    pair = next(p for p in pairs if p["name"] == image)
    maps = found[image]["maps"]
    figure = index_agreement_figure(clean_lr(pair["hr"]), pair["lr"], maps["clean"], maps["degraded"],
                                    entries=cfg.model.entries, name=image, rows=rows)
    ctx.save(figure, "fig_index_agreement")
    # index_shift / index_margin: how far the degradation moves an embedding, and how far a clean one sits from
    # its cell's boundary, in D_lr entry spacings (evaluation.index_consistency.cell_geometry); *_clean_indices:
    # the SR decoded from the clean LR's indices, what a perfect agreement would buy (agreement_worth)
    summary = {"run": run, "images": len(rows), "shown": image, **mean_summary(rows)}
    return {"summary": summary, "rows": rows, "figure": figure}


def validation_outputs(ctx: Context, runs: list[str], max_images: int | None = None) -> list[dict]:
    """Per validation pair: {"name", "LR", "HR", "bicubic", <each run>: SR image}, all HR-sized uint8. Keyed by run
    name, which is the method's name for the main runs and tells the paper run (method dictsr too) apart."""
    from dictsr_core.evaluation.evaluate import bicubic_upscale
    from dictsr_core.inference.tiled import super_resolve

    models = {}
    for run in runs:
        if run in models or run in ("bicubic", "name", "LR", "HR"):
            raise WorkbookError(f"runs {runs}: {run!r} twice or a reserved name; Fig. 3 shows each run once")
        models[run], _ = load_run_model(ctx, run)
    rows = []
    for pair in validation_pairs(ctx, max_images):
        row = {"name": pair["name"], "LR": pair["lr"], "HR": pair["hr"], "bicubic": bicubic_upscale(pair["lr"])}
        for method, model in models.items():
            row[method] = super_resolve(model, pair["lr"], device=ctx.device, amp=ctx.device.type == "cuda")
        rows.append(row)
    return rows


def qualitative_figures(ctx: Context, runs: list[str], crop: int | None = None, count: int = 1, crops: dict | None = None,
                        max_images: int | None = 3) -> dict:
    """Fig. 3: crops where the methods differ most (or `crops` = {image: [[top, left], ...]}), with error maps."""
    from dictsr_core.analysis.figures.qualitative import choose_crops, qualitative_figure

    rows = validation_outputs(ctx, runs, max_images)
    size = crop or ctx.profile.crop
    size = min(size, *(min(row["HR"].shape[:2]) for row in rows)) // 4 * 4
    chosen = []
    for row in rows:
        if crops and row["name"] in crops:
            chosen.append([tuple(int(v) for v in corner) for corner in crops[row["name"]]])
        else:
            outputs = {k: v for k, v in row.items() if k not in ("name", "LR", "HR")}
            chosen.append(choose_crops(outputs, row["HR"], size, count=count))
    figure = qualitative_figure(rows, crops=chosen, size=size)
    ctx.save(figure, "fig3_qualitative")
    return {"crops": {row["name"]: corners for row, corners in zip(rows, chosen)}, "size": size, "figure": figure}


# ---- 07_explore ---------------------------------------------------------------------------

def explorer(ctx: Context, run: str = "dictsr", image: str | None = None, y: int | None = None, x: int | None = None,
             interactive: bool = True) -> dict:
    """The interactive explorer over the validation LR images, opened at (image, y, x) (default: first image,
    centre), and that first view saved as figure explore_location. `view` is the widget, or with
    interactive=False (headless runs) the figure: nbclient can miss the end of a cell that streams widget
    messages and then waits forever (jupyter/nbclient#312), so `dictsr workbook` builds no widget."""
    from dictsr_core.analysis.explorer import explorer_widget, inspect_location, load_training_model, location_figure
    from dictsr_core.evaluation.results import checkpoint_path

    model = load_training_model(checkpoint_path(ctx.run_dir(run)), device=ctx.device)
    images = {pair["name"]: pair["lr"] for pair in validation_pairs(ctx)}
    name = image or next(iter(images))
    if name not in images:
        raise WorkbookError(f"image {name!r} is not a validation image of {ctx.data_dir}; choose from {', '.join(images)}")
    lr = images[name]
    y = lr.shape[0] // 2 if y is None else int(y)
    x = lr.shape[1] // 2 if x is None else int(x)
    location = inspect_location(model, lr, y, x)
    figure = location_figure(location)
    figure.suptitle(f"{name}: LR ({y}, {x}), code cell {location.cell}, entry {location.entry}", fontsize=10)
    ctx.save(figure, "explore_location")
    if not interactive:
        return {"view": figure, "widget": None, "location": location, "figure": figure}
    widget = explorer_widget(model, images, start=(name, y, x))
    return {"view": widget, "widget": widget, "location": location, "figure": figure}
