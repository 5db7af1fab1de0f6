"""The run folder on disk: config.yaml, metrics.jsonl (one JSON record per log line), checkpoints/last.pt and,
for a run with an L1 phase before its perceptual one, checkpoints/before-perceptual.pt (the L1-only model).

Opening it refuses to overwrite a finished run without --resume and removes the temp files of a killed write;
a resume drops the log lines after its checkpoint; a train that failed before its first checkpoint and log line
leaves no folder behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import yaml

from dictsr_core.atomic import atomic_write_text, ensure_writable_dir
from dictsr_core.config import Config

# temp files of atomic writes into a run folder (".<name>.<random>.tmp"): what a killed process leaves behind
RUN_TEMP_PATTERNS = {"checkpoints": (".last.pt.*.tmp", ".before-perceptual.pt.*.tmp"),
                     ".": (".config.yaml.*.tmp", ".metrics.jsonl.*.tmp", ".dictsr-write-probe.*.tmp")}


SNAPSHOTS = ("last", "before-perceptual")  # the checkpoints a run folder keeps
NO_SNAPSHOT_WHY = ("a run keeps it at the start of a perceptual phase after an L1 phase; one trained before it was kept, "
                   "or without such a phase, has none")


def checkpoint_file(out_dir: Path, snapshot: str = "last") -> Path:
    """checkpoints/last.pt, or checkpoints/before-perceptual.pt: the run at the first step of its perceptual phase,
    after the L1 + VQ steps only, kept because the perceptual phase trades PSNR for LPIPS and the L1-only model is
    the reference for that trade."""
    if snapshot not in SNAPSHOTS:
        raise ValueError(f"checkpoint {snapshot!r}: choose {' or '.join(SNAPSHOTS)}")
    return Path(out_dir) / "checkpoints" / f"{snapshot}.pt"


def metrics_file(out_dir: Path) -> Path:
    return Path(out_dir) / "metrics.jsonl"


def open_run_folder(out_dir: Path, resume: bool, rank: int) -> None:
    """Before any work: no finished run overwritten without --resume, a writable --out (a named error otherwise),
    no temp files of an interrupted write left."""
    ckpt_path = checkpoint_file(out_dir)
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
    if rank == 0:
        ensure_writable_dir(out_dir, "--out")  # a read-only --out is a named error before any work
        remove_stale_temp_files(out_dir)


def write_run_config(out_dir: Path, cfg: Config, resumed_at: int | None) -> None:
    """config.yaml of this call; on a resume (from the checkpoint of step `resumed_at`), the log cut back to it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if resumed_at is not None:
        truncate_metrics(metrics_file(out_dir), resumed_at)


def append_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint being resumed from, and any line that is not
    a whole JSON record (the torn tail of a write cut short by a full disk or a power loss), saying so."""
    if not path.exists():
        return
    kept, torn = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            torn += 1
            continue
        if not isinstance(record, dict):
            torn += 1
        elif record.get("step", 0) <= step:
            kept.append(line)
    if torn:
        print(f"[train] --resume: dropped {torn} torn line(s) of {path} (a write cut short); "
              f"kept the {len(kept)} whole record(s) up to step {step}")
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def remove_stale_temp_files(out_dir: Path) -> None:
    """Remove the temp files an earlier process was killed before renaming (a SIGKILL mid-save); say so."""
    removed = []
    for sub, patterns in RUN_TEMP_PATTERNS.items():
        for pattern in patterns:
            for path in sorted((out_dir / sub).glob(pattern)):
                if path.is_file() and not path.is_symlink():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    if removed:
        print(f"[train] removed {len(removed)} temp file(s) of an interrupted write: " + ", ".join(map(str, removed)))


def remove_failed_start(out_dir: Path, made: list[Path], had_config: bool) -> None:
    """After a train that failed before its first checkpoint and first log line: remove what it wrote
    (config.yaml, an empty checkpoints/) and the folders it made, so no run folder holding only config.yaml stays."""
    if checkpoint_file(out_dir).exists() or metrics_file(out_dir).exists():
        return
    if not had_config:
        (out_dir / "config.yaml").unlink(missing_ok=True)
    for folder in [out_dir / "checkpoints", *made]:  # made: deepest first
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


AVERAGE_FIELDS = ("ema_decay", "ema_sigma_rel", "ema_track_sigma_rel", "ema_track_decay")  # train fields that change no training step


def derive_average_run(source_dir: Path, out_dir: Path, cfg: Config | Callable[[Config], Config], force: bool = False,
                       snapshot: str = "last") -> bool:
    """OUT_DIR as the run of `cfg` made from SOURCE_DIR's checkpoint, where `cfg` differs from the source's config in
    its weight averages (AVERAGE_FIELDS: e.g. R6, no average, or a power-function average the source tracked) and
    its inference lookup (config.INFERENCE_FIELDS) only: neither changes a training step, so `cfg` trained would end
    on exactly the source's weights and averages.
    Writes config.yaml, a copy of metrics.jsonl and checkpoints/last.pt (the source's weights, optimizer and RNG
    state, the averages `cfg` keeps, and `derived_from`); False when OUT_DIR already holds this derivation.
    snapshot="before-perceptual" makes it from the source's checkpoint at the start of its perceptual phase: the
    L1-only model (its step is that step, its metrics the log lines up to it). `cfg` may be a function of the
    source's config (read from its checkpoint) that returns the derived run's."""
    from dictsr_core.config import ConfigError
    from dictsr_core.training.checkpoint import load_checkpoint, save_checkpoint, tensor_checksum

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    source_ckpt = checkpoint_file(source_dir, snapshot)
    if snapshot != "last" and not source_ckpt.is_file():
        raise ConfigError(f"{out_dir.name} cannot be derived from {source_dir}: it has no {source_ckpt.name} "
                          f"({NO_SNAPSHOT_WHY})")
    payload = load_checkpoint(source_ckpt)
    source_cfg = payload.pop("config")
    cfg = cfg(source_cfg) if callable(cfg) else cfg
    if source_cfg.train.restart_every and cfg.train.restarts_until != source_cfg.train.restarts_until:
        raise ConfigError(f"{out_dir.name} cannot be derived from {source_dir}: its dead-entry restarts would stop at "
                          f"step {cfg.train.restarts_until} instead of {source_cfg.train.restarts_until} (they stop where "
                          "a weight average starts), so trained it would not end on the source's weights")
    averages = _derived_averages(source_dir, out_dir, source_cfg, cfg, payload)
    derived_from = {"run": str(source_dir), "step": int(payload["step"]), "checksum": tensor_checksum(payload)}
    if snapshot != "last":
        derived_from["checkpoint"] = source_ckpt.name
    ckpt_path = checkpoint_file(out_dir)
    if not force and holds_derivation(out_dir, derived_from, cfg):
        return False
    start_derived_folder(source_dir, out_dir, cfg, metrics_to=None if snapshot == "last" else int(payload["step"]))
    extra = {k: v for k, v in payload.items()
             if k not in ("format", "model", "model_ema", "model_averages", "step", "derived_from")}
    save_checkpoint(ckpt_path, model_state=payload["model"], config=cfg, step=payload["step"], **extra, **averages,
                    derived_from=derived_from)
    return True


def start_derived_folder(source_dir: Path, out_dir: Path, cfg: Config, metrics_to: int | None = None) -> None:
    """The folder of a run derived from SOURCE_DIR, before its checkpoint is written: writable, without an
    interrupted write's temp files, with `cfg` as config.yaml and the source's metrics.jsonl (its lines up to
    step `metrics_to` where given)."""
    ensure_writable_dir(out_dir, str(out_dir))
    remove_stale_temp_files(out_dir)
    write_run_config(out_dir, cfg, None)
    source_metrics = metrics_file(source_dir)
    if source_metrics.exists():
        atomic_write_text(metrics_file(out_dir), source_metrics.read_text(encoding="utf-8"))
        if metrics_to is not None:
            truncate_metrics(metrics_file(out_dir), metrics_to)


def holds_derivation(out_dir: Path, derived_from: dict, cfg) -> bool:
    """Whether OUT_DIR's checkpoint is already the run `derived_from` describes, with config `cfg` (or the config
    `cfg(its config)` returns, where the derivation chose a field itself; an unreadable earlier derivation is not:
    it is simply made again). Where both name the source by its checksum, its path is a label only: the same run
    given as `runs/x` by hand and by its absolute path in the workbook is the same source."""
    from dictsr_core.training.checkpoint import load_checkpoint

    ckpt_path = checkpoint_file(out_dir)
    if not ckpt_path.exists():
        return False
    try:
        done = load_checkpoint(ckpt_path)
    except Exception:  # noqa: BLE001 - an unreadable earlier derivation is simply redone
        return False
    if not _same_derivation(done.get("derived_from"), derived_from):
        return False
    expected = cfg(done["config"]) if callable(cfg) else cfg
    return done["config"].to_dict() == expected.to_dict()


def _same_derivation(done, wanted: dict) -> bool:
    if not isinstance(done, dict):
        return False
    if done.get("checksum") is not None and wanted.get("checksum") is not None:
        done, wanted = ({k: v for k, v in record.items() if k != "run"} for record in (done, wanted))
    return done == wanted


def _derived_averages(source_dir: Path, out_dir: Path, source_cfg: Config, cfg: Config, payload: dict) -> dict:
    """The averages of the derived checkpoint (its `model_ema` and `model_averages`, taken from the source's), after
    checking that `cfg` differs from the source's config in its averages only and that the source kept every
    average `cfg` uses (a ConfigError naming them)."""
    from dataclasses import replace

    from dictsr_core.config import INFERENCE_FIELDS, ConfigError

    same_steps = replace(source_cfg, ablation=cfg.ablation, train=replace(
        source_cfg.train, **{name: getattr(cfg.train, name) for name in AVERAGE_FIELDS}),
        model=replace(source_cfg.model, **{name: getattr(cfg.model, name) for name in INFERENCE_FIELDS}))
    if same_steps.to_dict() != cfg.to_dict():
        wanted, found = _flat(cfg.to_dict()), _flat(same_steps.to_dict())
        differ = sorted(k for k in wanted.keys() | found.keys() if wanted.get(k) != found.get(k))
        raise ConfigError(f"{out_dir.name} cannot be derived from {source_dir}: its config differs in more than the "
                          f"weight averages and the inference lookup ({', '.join(differ)}); train it instead")
    kept = _kept_averages(source_cfg.train, payload)
    own, tracked_labels = _average_labels(cfg.train)
    missing = [label for label in ([own] if own else []) + tracked_labels if label not in kept]
    if missing:
        raise ConfigError(f"{out_dir.name} cannot be derived from {source_dir}: it did not keep the weight average(s) "
                          f"{', '.join(missing)} (it kept {', '.join(kept) or 'none'}); train {source_dir} with "
                          "train.ema_track_sigma_rel / ema_track_decay naming them, or train this run")
    averages = {"model_ema": kept[own]} if own and kept[own] is not None else {}
    if any(kept[label] is not None for label in tracked_labels):
        averages["model_averages"] = {label: kept[label] for label in tracked_labels}
    return averages


def _average_labels(t) -> tuple[str | None, list[str]]:
    """The label of a train config's own weight average (None without one) and those of the averages it tracks."""
    from dictsr_core.training.weight_average import average_label, average_specs

    own, others = average_specs(t)
    return (average_label(**own) if own else None), [average_label(**spec) for spec in others]


def _kept_averages(t, payload: dict) -> dict:
    """{label: state dict, or None before the averaging starts} of the averages a checkpoint of train config `t` keeps."""
    own, tracked_labels = _average_labels(t)
    kept = {label: payload.get("model_averages", {}).get(label) for label in tracked_labels}
    if own:
        kept[own] = payload.get("model_ema")
    return kept


def _flat(d: dict, prefix: str = "") -> dict:
    """{"train.seed": 0, ...} of a nested config dict, for naming the fields two configs differ in."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
