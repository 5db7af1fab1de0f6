"""The workbook's plan: the stages of a full run for a profile, in order (one notebook execution each), and the
runs they train (configs, run names), shared by the runner, which executes the stages, and by the stage functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dictsr_core.config import DERIVED_ABLATIONS, get_config, with_ablation
from dictsr_core.workbook.profiles import Context, WorkbookError, recipe_model_name

NOTEBOOKS = ("01_data", "02_train", "03_evaluate", "04_ablations", "05_dictionaries", "06_qualitative", "07_explore")


@dataclass
class Stage:
    key: str  # executed copy: NOTEBOOK_DIR/<key>.ipynb
    notebook: str  # source: ROOT/notebooks/<notebook>.ipynb
    parameters: dict
    outputs: list[Path] = field(default_factory=list)
    runs: list = field(default_factory=list)  # (run folder, Config) of each run this stage trains
    inputs: list[Path] = field(default_factory=list)  # checkpoints and data manifest it reads, does not make (stamped)
    about: str = ""  # what it does, for the plan


def training_config(ctx: Context, method: str = "dictsr", ablation: str | None = None, schedule: str = "main",
                    overrides: dict | None = None):
    """The profile's preset with its overrides, the ablation schedule when asked and the context's seed, then the
    ablation's change: an ablation removes a part of the profile's recipe, so a schedule override cannot put it
    back (R6 on the ablation schedule, whose shorter weight average is such an override). `method` is a training
    method (config.METHODS) or the profile's paper run (`paper-cpu`: DictSR on that preset, the paper's method at
    this budget); baselines and the paper run get steps sized to the DictSR run's wall clock (workbook/budget.py)."""
    if schedule not in ("main", "ablation"):
        raise WorkbookError(f"schedule {schedule!r}: choose main or ablation")
    preset = ctx.profile.preset
    merged = dict(ctx.profile.overrides)
    if method == ctx.profile.paper_run and method:
        preset, method = ctx.profile.paper_run, "dictsr"
        merged = {}  # the paper's method: none of the recipe's overrides
    elif method != "dictsr":
        merged.update(ctx.profile.baseline_overrides)
    if schedule == "ablation":
        merged.update(ctx.profile.ablation_overrides)
    merged["train.seed"] = ctx.seed
    if schedule == "main" and (preset != ctx.profile.preset or method != "dictsr"):
        from dictsr_core.workbook.budget import budget_overrides

        merged.update(budget_overrides(ctx, ctx.profile.paper_run if preset != ctx.profile.preset else method,
                                       training_config(ctx, "dictsr")))
    merged.update(overrides or {})
    return with_ablation(get_config(preset, None, merged, method=method), ablation or None)


def ablation_runs(ctx: Context, variants=None) -> dict[str, str]:
    """{ablation id: run name}. "Ours" is the main run when the profile trains ablations on the main schedule."""
    variants = list(variants if variants is not None else ctx.profile.ablations)
    ours = "dictsr" if not ctx.profile.ablation_overrides else "ablation-Ours"
    return {"Ours": ours, **{v: f"ablation-{v}" for v in variants if v != "Ours"}}


def l1_run_name(run_name: str, cfg, run_dir: Path | None = None, force: bool = False) -> str | None:
    """The run made beside a main run whose perceptual phase follows an L1 phase: its L1-only model (the issue's
    PSNR reference for what the perceptual phase costs), from the checkpoint kept at the start of that phase.
    None also for a run of this config in run_dir that went past that step without keeping it (trained before it
    was kept), unless forced; a partial run short of it keeps one when it resumes, and a run of another config
    there is trained again, and so keeps one."""
    from dictsr_core.training.run_folder import checkpoint_file
    from dictsr_core.workbook.estimate import steps_done

    if cfg.train.l1_phase_end is None:
        return None
    if run_dir is not None and not force and steps_done(run_dir, cfg) >= cfg.train.l1_phase_end \
            and not checkpoint_file(run_dir, "before-perceptual").is_file():
        return None
    return f"{run_name}-l1"


def coarse_run_name(run_name: str, cfg, entries: int | None) -> str | None:
    """The run made beside a main DictSR run with its code coarsened to `entries` (None where the profile makes
    none, or the code is not finer than that)."""
    if not entries or cfg.method != "dictsr" or cfg.model.entries <= entries:
        return None
    return f"{run_name}-c{entries}"


def _listed(values) -> list | None:
    """A profile's tuple as a notebook parameter (papermill passes lists)."""
    return None if values is None else list(values)


def derived_runs(ctx: Context, method: str, cfg, force: bool = False) -> dict:
    """The runs `make main` makes from a main run, as train_run's keywords (02_train's parameters): DictSR's L1-only
    model and its coarse, split and texture-gated codes where the profile asks for them; none for other methods."""
    l1_run = l1_run_name(method, cfg, ctx.run_dir(method), force) if method == "dictsr" else None
    coarse_run = coarse_run_name(method, cfg, ctx.profile.coarse_entries) if method == "dictsr" else None
    if not coarse_run:
        return {"l1_run": l1_run}
    return {"l1_run": l1_run, "coarse_run": coarse_run, "coarse_entries": ctx.profile.coarse_entries,
            "coarse_restarts": ctx.profile.coarse_restarts,
            "split_run": f"{coarse_run}s" if ctx.profile.coarse_split else None,
            "coarse_lookup_blurs": _listed(ctx.profile.coarse_lookup_blurs),
            "gated_run": f"{coarse_run}g" if ctx.profile.coarse_gates else None,
            "coarse_gates": _listed(ctx.profile.coarse_gates),
            "gate_lookup_blurs": _listed(ctx.profile.gate_lookup_blurs)}


def common_parameters(ctx: Context) -> dict:
    return {"profile": ctx.profile.name, "data_dir": str(ctx.data_dir), "run_root": str(ctx.run_root),
            "figure_dir": str(ctx.figure_dir), "device": str(ctx.device), "seed": ctx.seed}


def run_checkpoints(ctx: Context, runs) -> list[Path]:
    return [ctx.run_dir(run) / "checkpoints" / "last.pt" for run in runs]


def _figures(ctx: Context, *names: str) -> list[Path]:
    return [ctx.figure_dir / f"{name}.{fmt}" for name in names for fmt in ("png", "pdf")]


def plan(ctx: Context, force: bool = False) -> list[Stage]:
    """The stages of a full workbook run for this context's profile, in order."""
    common = {**common_parameters(ctx), "force": force}
    table = ctx.table_dir
    # what every stage that reads the data folder is stamped with: a dataset made again (a new photo catalogue: more
    # validation pairs) is a new identity, so its overview and every score are made again; training stages are not
    # (train_run reuses a finished run of the same config, and the derivations read the training photos only)
    data = [ctx.data_dir / "manifest.json"]
    stages = [Stage("01_data", "01_data", dict(common), _figures(ctx, "data_gallery", "data_degradation_stats")
                    + [table / "data_splits.md", table / "degradation_stats.md"], inputs=list(data),
                    about="splits, gallery, degradation statistics")]
    # the paper run (paper-cpu) is trained like a baseline: its own stage, steps sized to DictSR's wall clock
    methods = ["dictsr", *([ctx.profile.paper_run] if ctx.profile.paper_run else []), *ctx.profile.baselines]
    scored = []
    for method in methods:
        cfg = training_config(ctx, method)
        derived = derived_runs(ctx, method, cfg, force)
        l1_run, coarse_run = derived["l1_run"], derived.get("coarse_run")
        split_run, gated_run = derived.get("split_run"), derived.get("gated_run")
        made = [run for run in (method, l1_run, coarse_run, split_run, gated_run) if run]
        stages.append(Stage(f"02_train-{method}", "02_train",
                            {**common, "method": method, "ablation": None, "schedule": "main", "run_name": method,
                             **derived},
                            _figures(ctx, f"train_curves_{method}") + run_checkpoints(ctx, made),
                            runs=[(ctx.run_dir(method), cfg)], about=f"train {method}: {cfg.train.total_steps} steps"
                            + (f" ({l1_run}: its L1-only model at step {cfg.train.l1_phase_end})" if l1_run else "")
                            + (f" ({coarse_run}: its code in {ctx.profile.coarse_entries} entries"
                               + (f", the best of {ctx.profile.coarse_restarts} k-means draws on the training images"
                                  if ctx.profile.coarse_restarts > 1 else "") + ")" if coarse_run else "")
                            + (f" ({split_run}: that code grown by greedy splits while its training agreement holds)"
                               if split_run else "")
                            + (f" ({gated_run}: the coarse code for flat LR cells, all entries for textured ones)"
                               if gated_run else "")))
        scored += made
    # photos datasets have a test split (data/sources/test_photos.py): scored for reporting, with the published peers
    test = [table / "test" / "table1.md", table / "test" / "table1.csv"] if ctx.has_test_split else []
    validation = ctx.profile.validation_table or not test
    stages.append(Stage("03_evaluate", "03_evaluate", {**common, "runs": scored, "table_dir": None, "figure_name": "eval_metrics",
                                                       "validation": validation},
                        _figures(ctx, "eval_metrics") + ([table / "table1.md", table / "table1.csv"] if validation else [])
                        + test, inputs=run_checkpoints(ctx, scored) + data,
                        about=(f"bicubic and {len(scored)} runs on the validation pairs, Table 1"
                               + ("; the same and the published peers on the test split" if test else "")) if validation
                        else f"bicubic, the published peers and {len(scored)} runs on the test split, Table 1"))
    if ctx.profile.ablations:
        variants = list(ctx.profile.ablations)
        runs = ablation_runs(ctx, variants)
        train = [i for i, r in runs.items() if r != "dictsr" and i not in DERIVED_ABLATIONS]
        derived = [i for i in runs if i in DERIVED_ABLATIONS]
        trained = [(ctx.run_dir(runs[i]), training_config(ctx, "dictsr", None if i == "Ours" else i, schedule="ablation"))
                   for i in train]
        checkpoints = run_checkpoints(ctx, runs.values())  # its outputs, and what its evaluation reads
        stages.append(Stage("04_ablations", "04_ablations", {**common, "variants": variants},
                            _figures(ctx, "ablation_bars", "ablation_metrics")
                            + [table / "ablations" / "table3.md", table / "ablations" / "table3.csv"]
                            + checkpoints,
                            runs=trained, inputs=checkpoints + data, about=f"train {', '.join(train)}"
                            + (f" ({', '.join(derived)}: made from Ours' checkpoint)" if derived else "")
                            + ", evaluate, Table 3"
                            + (" (Ours is the main run)" if "dictsr" in runs.values() else "")))
    stages.append(Stage("05_dictionaries", "05_dictionaries", {**common, "run": "dictsr", "embedding": "umap"},
                        _figures(ctx, "fig4_dictionary_map", "fig4_degradation_offsets", "fig4_hr_atoms",
                                 "fig_index_agreement"), inputs=run_checkpoints(ctx, ["dictsr"]) + data, about="Fig. 4: dictionary map (UMAP), offsets, atoms, index agreement"))
    # Fig. 3: the model `dictsr sr` uses (the recipe's last), beside the paper's method and the baselines
    model = recipe_model_name(ctx.profile)
    shown = [model if model in scored else "dictsr", *methods[1:]]
    stages.append(Stage("06_qualitative", "06_qualitative", {**common, "runs": shown},
                        _figures(ctx, "fig3_qualitative"), inputs=run_checkpoints(ctx, shown) + data,
                        about=f"Fig. 3: crops where {shown[0]}, the paper's method and the baselines differ most"))
    stages.append(Stage("07_explore", "07_explore", {**common, "run": "dictsr", "interactive": False},
                        _figures(ctx, "explore_location"), inputs=run_checkpoints(ctx, ["dictsr"]) + data, about="the explorer, one view"))
    return stages
