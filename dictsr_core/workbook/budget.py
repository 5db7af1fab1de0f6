"""Equal wall-clock budgets: the PlainSR baselines (paired-bicubic, oracle, the equal-budget peers) get as many
steps as fit in the time the main DictSR run trains for on this machine, at their own measured step times (each
peer's loader costs its own: Real-ESRGAN's two-pass degradation takes twice the paired loader's time).

The rule, fixed before any test score (docs/evaluation.md, rule 9): the budget is the DictSR run's own measured
training wall clock where that run is finished with the profile's config, else its prediction (its steps times
its step times measured here); a baseline keeps the profile's schedule shape (epochs, halvings, the last
`perceptual_steps` steps with the LPIPS term, as DictSR's) and fills the budget with plain steps. The sizing is
written once to RUN_ROOT/budget.json and reused, so a resumed or re-planned workbook trains the same configs;
delete the file (or train DictSR with another config) to size again.

Rule 11 (docs/evaluation.md): a probe of 24 to 150 steps missed a run's own rate by up to 16 %, so each sized run
is re-sized once in flight (`calibrate`): its first CALIBRATION_FRACTION of steps are trained, before any step
whose schedule depends on the length (training/build.schedule_length_free), the run's own step time is read from
its log, and the rest of the budget (DictSR's measured wall clock by then) is filled at that rate. The run then
resumes with the re-sized config: the same run its config trains from scratch.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

from dictsr_core.atomic import atomic_write_text

BUDGET_FILE = "budget.json"
CALIBRATION_FRACTION = 0.15  # of a sized run's steps, trained before rule 11 re-sizes it
MIN_CALIBRATION_STEPS = 150  # a rate over fewer steps is a probe's, not the run's


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


def dictsr_perceptual_steps(dictsr_config) -> int:
    """The steps of the DictSR run with the perceptual term: each sized run keeps as many (rule 9)."""
    t = dictsr_config.train
    return t.total_steps - t.perceptual_start if t.perceptual_weight > 0 else 0


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


def store_budget(ctx, stored: dict) -> None:
    """RUN_ROOT/budget.json, written atomically."""
    budget_path(ctx).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(budget_path(ctx), json.dumps(stored, indent=1) + "\n")


def budget_overrides(ctx, method: str, dictsr_config) -> dict:
    """The sized overrides of one baseline (empty where the profile does not size them or none are stored yet)."""
    if not ctx.profile.equal_budget or method == "dictsr":
        return {}
    stored = stored_budget(ctx, dictsr_config)
    return dict((stored or {}).get("methods", {}).get(method, {}).get("overrides", {}))


def dictsr_budget(ctx, clock, cfg) -> tuple[float, str]:
    """(seconds, how they were found) of the main DictSR run of config `cfg`: measured where it finished with it."""
    from dictsr_core.workbook.estimate import phase_steps

    measured = dictsr_measured(ctx, cfg)
    if measured is not None:
        return measured, f"measured: {ctx.run_dir('dictsr').name}'s training wall clock"
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
    for method in missing:
        cfg = config_of(method)  # the profile's baseline schedule (the paper run's preset): not sized yet
        everywhere = cfg.train.perceptual_throughout  # the paper's: every step
        perceptual_s = clock(cfg, True)
        plain_s = perceptual_s if everywhere else clock(cfg, False)
        overrides = size_schedule(budget_s, plain_s, perceptual_s, cfg.train.epochs,
                                  None if everywhere else dictsr_perceptual_steps(dictsr),
                                  cfg.train.halve_every / cfg.train.epochs)
        stored["methods"][method] = {"overrides": overrides, "plain_step_s": plain_s, "perceptual_step_s": perceptual_s,
                                     "steps": overrides["train.epochs"] * overrides["train.steps_per_epoch"]}
        say(f"[workbook] budget: {method} gets {stored['methods'][method]['steps']} steps for {budget_s / 60:.1f} min "
            f"({1 / plain_s:.1f} it/s plain, {1 / perceptual_s:.1f} it/s with the LPIPS term)")
    store_budget(ctx, stored)
    return stored


def calibration_step(t_cfg) -> int:
    """The step at which rule 11 re-sizes a run of schedule `t_cfg`: CALIBRATION_FRACTION into it (at least
    MIN_CALIBRATION_STEPS), and no later than the last step its schedule trains the same whatever its length."""
    from dictsr_core.training.build import schedule_length_free

    return min(max(MIN_CALIBRATION_STEPS, round(CALIBRATION_FRACTION * t_cfg.total_steps)),
               schedule_length_free(t_cfg))


def measured_step_seconds(run_dir: Path, until: int) -> float | None:
    """Seconds per step of a run's own log up to step `until`, from the line at a third of the way on (the loader's
    start and the first slow steps left out); None where the log has too few lines."""
    from dictsr_core.analysis.figures.training import read_metrics
    from dictsr_core.workbook.estimate import log_step_seconds

    return log_step_seconds(read_metrics(Path(run_dir) / "metrics.jsonl"), since=until / 3, until=until)


def calibrate(ctx, method: str, cfg, config_of, train, say=print):
    """Rule 11: where `cfg` is the sized config of `method` (`config_of(method)`, workbook.plan.training_config)
    and its sizing was not re-sized yet, train its first calibration_step steps into its run folder with
    `train(cfg, steps_left, resume)`, re-size the rest of the budget at the step time the run showed, store it and
    return the re-sized config (the run folder resumes into it); None where nothing is re-sized (the reason stored
    and said where there is one)."""
    from dictsr_core.analysis.figures.training import read_metrics
    from dictsr_core.training.build import schedule_length_free
    from dictsr_core.workbook.estimate import steps_done

    if not ctx.profile.equal_budget or method not in sized_runs(ctx.profile):
        return None
    dictsr = config_of("dictsr")
    stored = stored_budget(ctx, dictsr)
    entry = (stored or {}).get("methods", {}).get(method)
    if entry is None or "calibration" in entry or cfg.to_dict() != config_of(method).to_dict():
        return None  # not sized, re-sized already, or another config than the sized one (an override)

    def keep(reason: str):
        entry["calibration"] = {"kept": reason}
        store_budget(ctx, stored)
        say(f"[workbook] budget: {method} keeps its sizing ({reason})")
        return None

    run_dir, step = ctx.run_dir(method), calibration_step(cfg.train)
    done = steps_done(run_dir, cfg)
    if done > step:
        return keep(f"{run_dir.name} was past step {step} already")
    if done < step:
        say(f"[workbook] budget: training {method}'s first {step} steps, then re-sizing it at its own step time "
            "(rule 11)")
        train(cfg, step - done, done > 0)
    step_s = measured_step_seconds(run_dir, step)
    walls = [r["wall_s"] for r in read_metrics(run_dir / "metrics.jsonl")
             if r.get("step") == step and isinstance(r.get("wall_s"), (int, float))]
    if step_s is None or not walls:
        return keep(f"{run_dir.name}'s log up to step {step} shows no step time")
    budget_s, found = stored["budget_s"], stored["budget_from"]
    measured = dictsr_measured(ctx, dictsr)
    if measured is not None:
        budget_s, found = measured, f"measured: {ctx.run_dir('dictsr').name}'s training wall clock"
    if walls[-1] >= budget_s:
        return keep(f"its first {step} steps took {walls[-1]:.0f} s, the whole budget of {budget_s:.0f} s")
    everywhere = cfg.train.perceptual_throughout
    perceptual_s = step_s if everywhere else entry["perceptual_step_s"]
    # the steps trained so far count at the rate measured, their start-up cost stays spent
    rest_s = budget_s - walls[-1] + step * step_s
    try:
        overrides = size_schedule(rest_s, step_s, perceptual_s, cfg.train.epochs,
                                  None if everywhere else dictsr_perceptual_steps(dictsr),
                                  cfg.train.halve_every / cfg.train.epochs)
    except ValueError as error:
        return keep(str(error))
    resized = config_of(method, overrides)
    if schedule_length_free(resized.train) < step:
        return keep(f"the re-sized schedule ({resized.train.total_steps} steps) would change steps already trained")
    entry["calibration"] = {"step": step, "wall_s": walls[-1], "step_s": step_s, "budget_s": budget_s,
                            "budget_from": found, "sized_steps": entry["steps"]}
    entry["overrides"], entry["steps"] = overrides, resized.train.total_steps
    store_budget(ctx, stored)
    say(f"[workbook] budget: {method} ran {1 / step_s:.1f} it/s over its first {step} steps (sized at "
        f"{1 / entry['plain_step_s']:.1f}); re-sized from {entry['calibration']['sized_steps']} "
        f"to {entry['steps']} steps for {budget_s / 60:.1f} min ({found.split(':')[0]})")
    return resized


def dictsr_measured(ctx, cfg) -> float | None:
    """The main DictSR run's training wall clock where it finished with config `cfg`, else None."""
    from dictsr_core.analysis.figures.training import read_metrics
    from dictsr_core.workbook.estimate import steps_done

    run_dir = ctx.run_dir("dictsr")
    if steps_done(run_dir, cfg) < cfg.train.total_steps:  # its log read there: it exists
        return None
    walls = [r["wall_s"] for r in read_metrics(run_dir / "metrics.jsonl") if isinstance(r.get("wall_s"), (int, float))]
    return float(walls[-1]) if walls else None
