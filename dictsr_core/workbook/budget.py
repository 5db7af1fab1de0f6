"""Equal wall-clock budgets: the PlainSR baselines (paired-bicubic, oracle, the equal-budget peers) get as many
steps as fit in the time the main DictSR run trains for on this machine, at their own measured step times (each
peer's loader costs its own: Real-ESRGAN's two-pass degradation takes twice the paired loader's time).

The rule, fixed before any test score (docs/evaluation.md, rule 9): the budget is the DictSR run's own measured
training wall clock where that run is finished with the profile's config, else its prediction (its steps times
its step times measured here); a baseline keeps the profile's schedule shape (epochs, halvings, the last
`perceptual_steps` steps with the LPIPS term, as DictSR's) and fills the budget with plain steps. The sizing is
written once to RUN_ROOT/budget.json and reused, so a resumed or re-planned workbook trains the same configs;
delete the file (or train DictSR with another config) to size again.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

from dictsr_core.atomic import atomic_write_text

BUDGET_FILE = "budget.json"


def size_schedule(budget_s: float, plain_s: float, perceptual_s: float, epochs: int, perceptual_steps: int | None,
                  halve_fraction: float) -> dict:
    """`--set` overrides that fill `budget_s` seconds: `perceptual_steps` steps at `perceptual_s` (None: every step,
    as the paper trains), the rest plain steps at `plain_s`, in `epochs` epochs (the step count rounded to a whole
    number of them), the learning rate halved every round(halve_fraction * epochs) epochs."""
    if not (budget_s > 0 and plain_s > 0 and perceptual_s > 0 and math.isfinite(budget_s + plain_s + perceptual_s)):
        raise ValueError(f"budget {budget_s!r} s at {plain_s!r} / {perceptual_s!r} s per step: all must be finite "
                         "and above 0")
    if perceptual_steps is None:
        per_epoch = max(1, round(budget_s / perceptual_s / epochs))
        return {"train.epochs": epochs, "train.steps_per_epoch": per_epoch,
                "train.halve_every": max(1, round(halve_fraction * epochs)), "train.perceptual_from": 0.0}
    plain = (budget_s - perceptual_steps * perceptual_s) / plain_s
    if plain < epochs:
        raise ValueError(f"a budget of {budget_s:.0f} s does not hold {perceptual_steps} perceptual steps of "
                         f"{perceptual_s:.3f} s and any plain ones")
    per_epoch = max(1, round((plain + perceptual_steps) / epochs))
    total = per_epoch * epochs
    return {"train.epochs": epochs, "train.steps_per_epoch": per_epoch,
            "train.halve_every": max(1, round(halve_fraction * epochs)),
            "train.perceptual_from": (total - perceptual_steps) / total if perceptual_steps else 0.0}


def sized_runs(profile) -> tuple[str, ...]:
    """The runs a profile sizes to its DictSR run's wall clock: its baselines and its paper run."""
    return (*profile.baselines, *([profile.paper_run] if profile.paper_run else []))


def budget_path(ctx) -> Path:
    return Path(ctx.run_root) / BUDGET_FILE


def stored_budget(ctx, dictsr_config) -> dict | None:
    """RUN_ROOT/budget.json where it holds the sizing for `dictsr_config`, the DictSR config the profile trains now
    (workbook.plan.training_config(ctx, "dictsr"): passed in, as the plan asks this module), else None."""
    try:
        stored = json.loads(budget_path(ctx).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("dictsr_config") != dictsr_config.to_dict():
        return None
    return stored


def budget_overrides(ctx, method: str, dictsr_config) -> dict:
    """The sized overrides of one baseline (empty where the profile does not size them or none are stored yet)."""
    if not ctx.profile.equal_budget or method == "dictsr":
        return {}
    stored = stored_budget(ctx, dictsr_config)
    return dict((stored or {}).get("methods", {}).get(method, {}).get("overrides", {}))


def dictsr_budget(ctx, clock, cfg) -> tuple[float, str]:
    """(seconds, how they were found) of the main DictSR run of config `cfg`: measured where it finished with it."""
    from dictsr_core.analysis.figures.training import read_metrics
    from dictsr_core.workbook.estimate import phase_steps, steps_done

    run_dir = ctx.run_dir("dictsr")
    if steps_done(run_dir, cfg) >= cfg.train.total_steps:
        walls = [r["wall_s"] for r in read_metrics(run_dir / "metrics.jsonl") if isinstance(r.get("wall_s"), (int, float))]
        if walls:
            return float(walls[-1]), f"measured: {run_dir.name}'s training wall clock"
    plain, perceptual = phase_steps(cfg, 0)  # its whole schedule, however far the folder got
    seconds = plain * clock(cfg, perceptual=False) + (perceptual * clock(cfg, perceptual=True) if perceptual else 0.0)
    return seconds, "predicted: its steps at step times measured here"


def ensure_budget(ctx, clock, config_of, say=print) -> dict | None:
    """Size every baseline of the profile not sized yet for this DictSR config to its budget (RUN_ROOT/budget.json,
    shared by the profiles that share the run folder: cpu-full adds the paired baselines to cpu's peers at the
    budget already fixed); returns what is stored (None where the profile does not size them). `config_of(method)`
    is the profile's config of a run (workbook.plan.training_config): a method not sized yet gets its unsized one."""
    if not ctx.profile.equal_budget or not sized_runs(ctx.profile):
        return None
    dictsr = config_of("dictsr")
    stored = stored_budget(ctx, dictsr)
    missing = [m for m in sized_runs(ctx.profile) if m not in (stored or {}).get("methods", {})]
    if not missing:
        return stored
    if stored is None:
        budget_s, found = dictsr_budget(ctx, clock, dictsr)
        stored = {"budget_s": budget_s, "budget_from": found, "device": str(ctx.device),
                  "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                  "dictsr_config": dictsr.to_dict(), "methods": {}}
    budget_s = stored["budget_s"]
    train = dictsr.train
    perceptual_steps = train.total_steps - train.perceptual_start if train.perceptual_weight > 0 else 0
    for method in missing:
        cfg = config_of(method)  # the profile's baseline schedule (the paper run's preset): not sized yet
        everywhere = cfg.train.perceptual_weight > 0 and cfg.train.perceptual_start == 0  # the paper's: every step
        perceptual_s = clock(cfg, True)
        plain_s = perceptual_s if everywhere else clock(cfg, False)
        overrides = size_schedule(budget_s, plain_s, perceptual_s, cfg.train.epochs,
                                  None if everywhere else perceptual_steps, cfg.train.halve_every / cfg.train.epochs)
        stored["methods"][method] = {"overrides": overrides, "plain_step_s": plain_s, "perceptual_step_s": perceptual_s,
                                     "steps": overrides["train.epochs"] * overrides["train.steps_per_epoch"]}
        say(f"[workbook] budget: {method} gets {stored['methods'][method]['steps']} steps for {budget_s / 60:.1f} min "
            f"({1 / plain_s:.1f} it/s plain, {1 / perceptual_s:.1f} it/s with the LPIPS term)")
    budget_path(ctx).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(budget_path(ctx), json.dumps(stored, indent=1) + "\n")
    return stored
