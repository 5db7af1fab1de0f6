"""How long a workbook run will take here: each training run's remaining steps times a step time measured on
this machine (a few dozen real training steps, loader and all), plus typical seconds for the stages that
only evaluate or draw (measured on the 2-core reference machine; they are minutes against the training's tens)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from dictsr_core.analysis.figures.training import read_metrics

# seconds on the 2-core reference machine (stage stamps of the cpu profile on photos-aim)
TYPICAL_STAGE_S = {"01_data": 30.0, "05_dictionaries": 60.0, "06_qualitative": 20.0, "07_explore": 10.0}
KERNEL_START_S = 10.0  # a papermill kernel's start, imports and the curves figure of a training stage
# one pair through one method, all metrics and the index agreement: a DictSR record 0.9 s a pair, a PlainSR or
# bicubic one 0.5 s, once the LPIPS references are kept (metrics.ReferenceFeatures; 1.3 s before), 2026-12-07
EVAL_S_PER_PAIR = 0.8
# a run derived after training (`dictsr derive --coarsen 8 --restarts 8`, then with --split; 2026-12-04, 2-core
# AMD EPYC: 29 s and 46-100 s, the splits' probe scoring most of it)
DERIVE_S = {"coarse_run": 30.0, "split_run": 100.0}
# the gated code (`--gate`), per draw x blur x gate candidate: 96 candidates in 104 s on photos-ntire, probe and
# lookups included (2026-12-04, same machine)
GATE_CANDIDATE_S = 1.1


def measure_step_seconds(cfg, data_dir, device, steps: int = 24, log_every: int | None = None) -> float:
    """Seconds per training step of `cfg` on `device`: `steps` real steps into a scratch folder, the rate taken
    between the first and the last log line (every steps // 6 steps, at least 6: so the loader's start, the queue
    its worker filled ahead and the first slow steps do not count)."""
    from dictsr_core.config import Config
    from dictsr_core.training.trainer import train

    data = cfg.to_dict()
    data["train"].update(log_every=log_every or max(6, steps // 6), checkpoint_every=10 ** 9)
    cfg = Config.from_dict(data)
    with tempfile.TemporaryDirectory(prefix="dictsr-measure-") as scratch:
        with contextlib.redirect_stdout(io.StringIO()):
            done = train(cfg, data_dir, Path(scratch) / "run", device=str(device), stop_after=steps, progress=False)
        seconds = log_step_seconds(read_metrics(Path(scratch) / "run" / "metrics.jsonl"))
    if seconds is not None:
        return seconds
    return float(done["train_wall_s"]) / max(int(done["step"]), 1)  # too few steps for two log lines: startup included


def log_step_seconds(records: list[dict], since: float = 0, until: float = float("inf")) -> float | None:
    """Seconds per step between the first and the last log line with a step in [since, until]; None where there
    are not two such lines a step and a second apart."""
    points = [(r["step"], r["wall_s"]) for r in records if isinstance(r.get("step"), int)
              and isinstance(r.get("wall_s"), (int, float)) and since <= r["step"] <= until]
    if len(points) < 2 or points[-1][0] <= points[0][0] or points[-1][1] <= points[0][1]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def steps_done(run_dir: Path, cfg) -> int:
    """Steps a run folder already holds for this very config (0 when it is absent or was trained otherwise)."""
    import yaml

    from dictsr_core.config import Config, ConfigError

    try:
        stored = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
        stored = Config.from_dict(stored).to_dict()  # a config.yaml written before the baselines' was trimmed
        if stored != cfg.to_dict() or not (Path(run_dir) / "checkpoints" / "last.pt").is_file():
            return 0
        records = read_metrics(Path(run_dir) / "metrics.jsonl")  # only for a run of this config
    except (OSError, yaml.YAMLError, ConfigError, TypeError, AttributeError):
        return 0
    steps = [r["step"] for r in records if isinstance(r, dict) and isinstance(r.get("step"), int)]
    return steps[-1] if steps else 0


def phase_steps(cfg, done: int) -> tuple[int, int]:
    """(steps without, steps with the perceptual term) still to train."""
    total = cfg.train.total_steps
    start = cfg.train.perceptual_start if cfg.train.perceptual_weight > 0 else total
    return max(0, min(total, start) - done), max(0, total - max(start, done))


class StepClock:
    """Measured seconds per step, one measurement per kind of step (DictSR with or without the perceptual term,
    each baseline's PlainSR with its own loader), reused for every run of that kind. Plain steps are measured over
    `steps` (a cheap PlainSR step hides its loader's cost for the few dozen steps its worker queued ahead: 24
    steps put plain-realesrgan-deg at 0.122 s, its 9280-step run at 0.140 s), perceptual ones over
    `perceptual_steps` (24 of them said 1.5-1.6 steps/s where runs went 1.33-1.35: paper-cpu on photos-ntire,
    plain-realesrgan-deg on photos-aim; 150 put paper-cpu within 3 %; 2026-12-07/08, 2-core AMD EPYC). A sized
    run's plain rate is then its own (budget.calibrate); its perceptual one stays this probe's."""

    def __init__(self, data_dir, device, steps: int = 150, perceptual_steps: int = 150, say=print):
        self.data_dir, self.device, self.say = data_dir, device, say
        self.steps, self.perceptual_steps = steps, perceptual_steps
        self.seconds: dict[str, float] = {}

    def __call__(self, cfg, perceptual: bool) -> float:
        from dictsr_core.config import Config

        # each peer's loader costs its own, and another preset (the paper run's) has its own network
        kind = f"{cfg.method} ({cfg.preset}){'+perceptual' if perceptual else ''}"
        if kind not in self.seconds:
            data = cfg.to_dict()
            data["train"]["perceptual_from"] = 0.0
            if not perceptual:
                data["train"]["perceptual_weight"] = 0.0
            # a run whose every step has the LPIPS term (the paper's) is all perceptual steps: measured as long as
            # plain ones (24 put paper-cpu at 1.5 steps/s; its photos-ntire run averaged 1.33, 2026-12-07)
            steps = self.perceptual_steps if perceptual and not cfg.train.perceptual_throughout else self.steps
            self.say(f"[workbook] plan: measuring {steps} {kind} training steps on {self.device} ...")
            self.seconds[kind] = measure_step_seconds(Config.from_dict(data), self.data_dir, self.device, steps)
        return self.seconds[kind]


def training_seconds(runs: list[tuple[Path, object]], clock: StepClock) -> float:
    """Seconds to finish each (run folder, config), at the measured step times."""
    total = 0.0
    for run_dir, cfg in runs:
        plain, perceptual = phase_steps(cfg, steps_done(run_dir, cfg))
        if plain:
            total += plain * clock(cfg, perceptual=False)
        if perceptual:
            total += perceptual * clock(cfg, perceptual=True)
    return total


def derivation_seconds(parameters: dict) -> float:
    """The coarse derivations a training stage with these notebook parameters makes after its run: each once per
    lookup blur it tries (photos-ntire, 2026-12-04: 193 s for both codes with two blurs, where the blurred ones
    stopped splitting early; 260 s counted)."""
    per_blur = sum(seconds for key, seconds in DERIVE_S.items() if parameters.get(key))
    gated = 0.0
    if parameters.get("gated_run"):
        gated = GATE_CANDIDATE_S * (max(int(parameters.get("coarse_restarts") or 1), 1)
                                    * len(parameters.get("gate_lookup_blurs") or [None])
                                    * len(parameters.get("coarse_gates") or []))
    return per_blur * len(parameters.get("coarse_lookup_blurs") or [None]) + gated


def evaluation_seconds(pairs: int, scored: int) -> float:
    """`scored` records (bicubic counts as one) made over `pairs` validation pairs."""
    return EVAL_S_PER_PAIR * pairs * scored


def records_to_make(run_dirs, data_dir, results_root, stale=frozenset(), split: str = "val", methods=()) -> int:
    """How many result records scoring bicubic, the published peers in `methods` and `run_dirs` on `split` must
    make: those without a stored record made from the checkpoint now in the folder, and every run in `stale` (to be
    trained or derived again first)."""
    from dictsr_core.evaluation.results import stored_record

    missing = [run_dir for run_dir in run_dirs if Path(run_dir) in stale
               or stored_record(run_dir, data_dir, results_root=results_root, split=split) is None]
    fixed = [stored_record(None, data_dir, results_root=results_root, split=split, method=method)
             for method in (None, *methods)]  # bicubic and the published peers
    return len(missing) + sum(record is None for record in fixed)
