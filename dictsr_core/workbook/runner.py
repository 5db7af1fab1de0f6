"""`dictsr workbook`: execute the numbered notebooks in order with papermill, reuse finished stages, write a report.

A stage is one notebook execution with one set of parameters. Its executed copy lands in
RUN_ROOT/notebooks/<stage>.ipynb next to a stamp (<stage>.stamp.json: parameters, a hash of the source
notebook, the files it must leave behind, seconds). A stage is reused when its stamp matches and its
files exist, unless --force or an earlier stage of this run was executed (later stages read its output).
The stages come from plan.py; executing one (stamps, reuse, failed copies) is execute.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dictsr_core.atomic import atomic_write_text, replace_readme_block
from dictsr_core.workbook.execute import execute_notebook, reusable, source_notebook, stamp_path
from dictsr_core.workbook.plan import NOTEBOOKS, Stage, ablation_runs, plan, training_config
from dictsr_core.workbook.profiles import Context, WorkbookError, context, preparable
from dictsr_core.workbook.progress import StageProgress, plan_lines, summary_lines


def stage_configs(stage: Stage) -> dict:
    """{run folder: its training config} of the runs a stage trains (part of the stage's stamp)."""
    return {str(run_dir): cfg.to_dict() for run_dir, cfg in stage.runs}


def planned_configs(ctx: Context, key: str, force: bool = False) -> dict:
    """stage_configs of the stage `key` as the plan makes it now: after a stage ran, where a run was re-sized in
    flight (workbook/budget.calibrate), so the next call's plan finds the stamp it makes."""
    return next((stage_configs(stage) for stage in plan(ctx, force=force) if stage.key == key), {})


def stage_estimates(ctx: Context, stages: list[Stage], force: bool = False, clock=None) -> tuple[list[dict], str]:
    """For the plan: per stage, whether it will be reused, and otherwise its seconds (training: remaining steps at
    a step time measured here; the rest: typical seconds, see workbook/estimate.py)."""
    from dictsr_core.data.io import list_images
    from dictsr_core.peers.names import PRETRAINED_METHODS
    from dictsr_core.workbook import estimate
    from dictsr_core.workbook.stages import test_results_root

    clock = clock or estimate.StepClock(ctx.data_dir, ctx.device, say=lambda line: print(line, flush=True))
    pairs = len(list_images(ctx.data_dir / "val_hr"))
    test_pairs = len(list_images(ctx.data_dir / "test_hr")) if (ctx.data_dir / "test_lr").is_dir() else 0
    rows, rerun, stale = [], force, set()
    for stage in stages:
        output = ctx.notebook_dir / f"{stage.key}.ipynb"
        if not rerun and reusable(source_notebook(ctx.root, stage.notebook), output, stage.parameters, stage.outputs,
                                  stage_configs(stage), stage.inputs):
            rows.append({"stage": stage.key, "reused": True, "seconds": 0.0, "what": stage.about})
            continue
        rerun = True
        training = estimate.training_seconds(stage.runs, clock)
        seconds = estimate.KERNEL_START_S + training
        if training > 0 or force:  # what it trains, and what it derives from those runs, is made and scored again
            stale |= {path.parent.parent for path in stage.outputs if path.name == "last.pt"}
            seconds += estimate.derivation_seconds(stage.parameters)
        if stage.notebook in ("03_evaluate", "04_ablations"):
            runs = (stage.parameters["runs"] if stage.notebook == "03_evaluate"
                    else ablation_runs(ctx, stage.parameters["variants"]).values())  # the derived variants too
            run_dirs = [ctx.run_dir(run) for run in runs]
            if stage.notebook == "04_ablations" or stage.parameters.get("validation", True):
                made = estimate.records_to_make(run_dirs, ctx.data_dir, ctx.results_root, stale)
                seconds += estimate.evaluation_seconds(pairs, made)
            if stage.notebook == "03_evaluate" and test_pairs:  # the test split, with the published peers
                made = estimate.records_to_make(run_dirs, ctx.data_dir, test_results_root(ctx), stale, split="test",
                                                methods=PRETRAINED_METHODS)
                seconds += estimate.evaluation_seconds(test_pairs, made)
        if stage.notebook == "04_ablations":
            seconds += estimate.KERNEL_START_S * len(stage.runs)
        seconds += estimate.TYPICAL_STAGE_S.get(stage.notebook, 0.0)
        rows.append({"stage": stage.key, "reused": False, "seconds": seconds, "what": stage.about})
    measured = ", ".join(f"{kind} {1 / s:.1f} it/s" for kind, s in clock.seconds.items())
    basis = (f"training at step rates measured here on {ctx.device} ({measured})" if measured else "no training left")
    return rows, basis + "; the other stages at typical seconds of the 2-core reference machine"


def training_phases(stage: Stage, clock) -> dict:
    """{run folder: (first perceptual step, plain s/step, perceptual s/step)} of the runs a stage trains whose
    schedule ends with a perceptual phase, at the step times the plan measured (StageProgress's ETA)."""
    from dictsr_core.workbook.estimate import steps_done

    phases = {}
    for run_dir, cfg in stage.runs:
        t = cfg.train
        # only runs with steps left: the plan measured their step times already (a finished run costs no measurement)
        if t.perceptual_weight > 0 and 0 < t.perceptual_start < t.total_steps and steps_done(run_dir, cfg) < t.total_steps:
            phases[run_dir] = (t.perceptual_start, clock(cfg, False), clock(cfg, True))
    return phases


def run_workbook(profile: str = "auto", data_dir=None, force: bool = False, run_root=None, figure_dir=None,
                 device: str = "auto", seed: int = 0, only=None, readme=None) -> Path:
    """Every stage of `plan` in order (or the notebooks named in `only`), then RUN_ROOT/report.md; returns the report.
    Figures go to RUN_ROOT/figures (ignored by git) unless figure_dir says otherwise; with `readme`, whose block links
    them, to the committed figures/<profile>."""
    ctx = context(profile, data_dir=data_dir, run_root=run_root, figure_dir=figure_dir, device=device, seed=seed,
                  untracked_figures=readme is None)
    if data_dir is not None and not Path(data_dir).is_dir() and not preparable(data_dir):
        raise WorkbookError(f"--data {data_dir}: no such folder (a folder named <sample|photos>-<aim|ntire> is prepared "
                            "on first use)")
    ctx = _with_data(ctx, explicit=data_dir is not None, run_root=run_root, figure_dir=figure_dir)
    from dictsr_core.perceptual.weights import fetch_weights

    fetch_weights()  # once here, not in every kernel: the LPIPS backbones (offline copies)
    print(f"[workbook] profile {ctx.profile.name} ({ctx.profile.about}) on {ctx.device}\n"
          f"[workbook] data {ctx.data_dir}; runs {ctx.run_root}; figures {ctx.figure_dir}", flush=True)
    from dictsr_core.workbook.budget import ensure_budget
    from dictsr_core.workbook.estimate import StepClock

    clock = StepClock(ctx.data_dir, ctx.device, say=lambda line: print(line, flush=True))
    ensure_budget(ctx, clock, lambda method: training_config(ctx, method),  # before the plan: it sizes the baselines
                  say=lambda line: print(line, flush=True))
    stages = every_stage = plan(ctx, force=force)
    if only:
        unknown = set(only) - set(NOTEBOOKS)
        if unknown:
            raise WorkbookError(f"--only {', '.join(sorted(unknown))}: choose from {', '.join(NOTEBOOKS)}")
        stages = [s for s in stages if s.notebook in only]
    start = time.time()
    rows, basis = stage_estimates(ctx, stages, force, clock)
    plan_text = "\n".join(plan_lines(rows, basis))
    print(plan_text, flush=True)
    if not all(row["reused"] for row in rows):  # the plan of the call that ran something, for the README block
        atomic_write_text(ctx.run_root / "plan.txt", f"{time.strftime('%Y-%m-%d %H:%M')} on {_machine(ctx)}\n{plan_text}\n")
    estimates = {row["stage"]: row["seconds"] for row in rows}
    rerun = force
    done = []
    for stage in stages:
        with StageProgress(stage.key, [run_dir for run_dir, _ in stage.runs], estimate_s=estimates.get(stage.key),
                           phases=training_phases(stage, clock)):
            result = execute_notebook(stage.notebook, ctx.notebook_dir / f"{stage.key}.ipynb", stage.parameters,
                                      root=ctx.root, outputs=stage.outputs, force=rerun, timeout=ctx.profile.cell_timeout_s,
                                      configs=stage_configs(stage), inputs=stage.inputs,
                                      configs_after=(lambda key=stage.key: planned_configs(ctx, key, force))
                                      if stage.runs else None)
        rerun = rerun or result["executed"]
        done.append((stage, result))
    times = _times(ctx, every_stage)
    report = write_report(ctx, done, time.time() - start, times)
    summary = "\n".join(summary_lines(table_csv=ctx.table_dir / "table1.csv", report=report, figure_dir=ctx.figure_dir,
                                      notebook_dir=ctx.notebook_dir, data_dir=ctx.data_dir, seconds=time.time() - start))
    if any(result["executed"] for _, result in done):  # like plan.txt: of the call that ran something, for the README
        atomic_write_text(ctx.run_root / "summary.txt", summary + "\n")
    if readme:  # after summary.txt: the block shows this call's summary, not the previous one's
        print(f"[workbook] figures block of {update_readme_figures(readme, ctx, times)} rewritten", flush=True)
    print(summary, flush=True)
    return report


def _with_data(ctx: Context, *, explicit: bool, run_root, figure_dir) -> Context:
    """Prepare the context's data folder now; where the photos cannot be fetched (no apt, no network) and no
    --data was given, fall back to the bundled sample photos, loudly: those numbers rest on 2 images."""
    from dictsr_core.data.sources.photos import PhotosUnavailable
    from dictsr_core.workbook.stages import prepare_data

    try:
        prepare_data(ctx)
        return ctx
    except PhotosUnavailable as error:
        if explicit or ctx.profile.source != "photos":
            raise WorkbookError(f"{ctx.data_dir}: {error}") from None
        fallback = ctx.root / "data" / f"sample-{ctx.profile.degradation}"
        banner = "!" * 100
        print(f"{banner}\n[workbook] WARNING: the real photos could not be fetched ({error})\n"
              f"[workbook] WARNING: falling back to the bundled sample data {fallback}: 2 validation images, so the "
              f"numbers of this run are NOT evidence of anything.\n{banner}", flush=True)
        ctx = context(ctx.profile.name, data_dir=fallback, run_root=run_root, figure_dir=figure_dir,
                      device=str(ctx.device), seed=ctx.seed, root=ctx.root,
                      untracked_figures=ctx.figure_dir.is_relative_to(ctx.run_root))
        prepare_data(ctx)
        return ctx


def stage_seconds(ctx: Context) -> float:
    """Seconds the profile's stages took when they were last executed (from their stamps)."""
    total = 0.0
    for stamp in ctx.notebook_dir.glob("*.stamp.json"):
        try:
            total += float(json.loads(stamp.read_text()).get("seconds", 0.0))
        except (OSError, ValueError):
            continue
    return total


def training_seconds(ctx: Context, stages=None) -> tuple[float, int]:
    """(seconds, runs): the training wall time of the runs the profile's stages (`stages`, plan(ctx) when None)
    train (the last `wall_s` of each metrics.jsonl; derived runs are made from these), however long the call that
    showed them took."""
    from dictsr_core.analysis.figures.training import read_metrics

    total, count = 0.0, 0
    for stage in plan(ctx) if stages is None else stages:
        for run_dir, _ in stage.runs:
            try:
                records = read_metrics(Path(run_dir) / "metrics.jsonl")
            except FileNotFoundError:
                continue
            walls = [r["wall_s"] for r in records if isinstance(r.get("wall_s"), (int, float))]
            if walls:
                total, count = total + walls[-1], count + 1
    return total, count


def _times(ctx: Context, stages=None) -> str:
    seconds, runs = training_seconds(ctx, stages)
    return (f"its {runs} trained runs took {seconds / 60:.0f} min of training, the stages "
            f"{stage_seconds(ctx) / 60:.0f} min when last executed")


def _machine(ctx: Context) -> str:
    import platform

    import torch

    if ctx.device.type == "cuda":
        return torch.cuda.get_device_name(ctx.device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__})"


def write_report(ctx: Context, done: list, seconds: float, times: str) -> Path:
    """RUN_ROOT/report.md: what ran (executed or reused, seconds), the tables, and every figure, all linked;
    `times` is _times of the stages the call planned."""
    report = ctx.run_root / "report.md"

    def link(path: Path) -> str:
        return os.path.relpath(path, report.parent)

    lines = [f"# DictSR workbook report: profile `{ctx.profile.name}`", "",
             f"{ctx.profile.about}.", "",
             f"Machine: {_machine(ctx)}; device {ctx.device}. Data: `{ctx.data_dir}`. Written "
             f"{time.strftime('%Y-%m-%d %H:%M')} by `dictsr workbook --profile {ctx.profile.name}` ({seconds:.0f} s this call; "
             f"{times}).",
             "", "## Notebooks", "", "| stage | executed copy | this call | seconds |", "|---|---|---|---|"]
    for stage, result in done:
        stamp_file = stamp_path(Path(result["output"]))
        stored = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
        lines.append(f"| {stage.key} | [{Path(result['output']).name}]({link(Path(result['output']))}) | "
                     f"{'executed' if result['executed'] else 'reused'} | {stored.get('seconds', 0):.1f} |")
    for title, path in (("Data splits", ctx.table_dir / "data_splits.md"),
                        ("Degradation statistics", ctx.table_dir / "degradation_stats.md"),
                        ("Comparison (Table 1 style)", ctx.table_dir / "table1.md"),
                        ("Ablations (Tables 3 / 4 style)", ctx.table_dir / "ablations" / "table3.md")):
        if path.is_file():
            lines += ["", f"## {title}", "", f"[{path.name}]({link(path)})", "", path.read_text().rstrip()]
    lines += ["", "## Figures", ""]
    for stage, _ in done:
        for path in stage.outputs:
            if path.suffix == ".png" and path.is_file():
                lines += [f"### {path.stem}", "", f"![{path.stem}]({link(path)}) ([PDF]({link(path.with_suffix('.pdf'))}))", ""]
    return atomic_write_text(report, "\n".join(lines) + "\n")


README_FIGURES = (
    ("fig3_qualitative", "Fig. 3 style: validation crops where the methods differ most, with error maps (`06_qualitative`)"),
    ("eval_metrics", "Validation metrics per method (`03_evaluate`)"),
    ("fig4_dictionary_map", "Fig. 4 style: D_lr entries and validation LR embeddings, one UMAP fit (`05_dictionaries`)"),
    ("fig4_degradation_offsets", "D_deg offsets around the most used D_lr entries (`05_dictionaries`)"),
    ("fig4_hr_atoms", "D_hr entries decoded into HR patches, most used first (`05_dictionaries`)"),
    ("fig_index_agreement", "Index consistency: content indices of a clean and a degraded LR, and where they agree (`05_dictionaries`)"),
    ("ablation_bars", "Ablations: activated entries, d, LPIPS and PSNR per variant (`04_ablations`)"),
    ("train_curves_dictsr", "Training curves of the main DictSR run (`02_train`)"),
    ("data_gallery", "Validation pairs: HR, clean LR, degraded LR, and the LR training domain (`01_data`)"),
    ("data_degradation_stats", "Degradation statistics (`01_data`)"),
    ("explore_location", "One view of the interactive explorer (`07_explore`)"),
)


def update_readme_figures(readme, ctx: Context, times: str | None = None) -> Path:
    """The README's figure block for this profile, rewritten from the figures on disk and the ablation table.
    `times`: _times(ctx), where the caller has it."""
    readme = Path(readme)
    link = lambda path: os.path.relpath(path, readme.resolve().parent)  # noqa: E731
    times = _times(ctx) if times is None else times
    lines = [f"Made by `dictsr workbook --profile {ctx.profile.name} --readme {readme.name}` on {_machine(ctx)}, "
             f"{time.strftime('%Y-%m-%d')}, on `{ctx.data_dir.name}` ({times}); full report: "
             f"[{link(ctx.run_root / 'report.md')}]({link(ctx.run_root / 'report.md')}) (not in git). "
             "Generated, never pasted: rerun the command to replace this block.", ""]
    for name, caption in (("plan.txt", "The plan printed by the latest call that executed stages (before the first one ran)"),
                          ("summary.txt", "The summary printed at the end of that call")):
        if (ctx.run_root / name).is_file():
            lines += [f"**{caption}**", "", "```text", (ctx.run_root / name).read_text().rstrip(), "```", ""]
    for name, caption in README_FIGURES:
        path = ctx.figure_dir / f"{name}.png"
        if path.is_file():
            lines += [f"**{caption}**", "", f"![{name}]({link(path)})", ""]
    table3 = ctx.table_dir / "ablations" / "table3.md"
    if table3.is_file():
        lines += ["**Ablations (Tables 3 / 4 style)**", "", table3.read_text().rstrip(), ""]
    return replace_readme_block(readme, f"dictsr workbook {ctx.profile.name}", "\n".join(lines),
                                f"### Workbook figures (`{ctx.profile.name}` profile)")
