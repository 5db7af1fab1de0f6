"""The run folder on disk: config.yaml, metrics.jsonl (one JSON record per log line) and checkpoints/last.pt.

Opening it refuses to overwrite a finished run without --resume and removes the temp files of a killed write;
a resume drops the log lines after its checkpoint; a train that failed before its first checkpoint and log line
leaves no folder behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from dictsr_core.atomic import atomic_write_text, ensure_writable_dir
from dictsr_core.config import Config

# temp files of atomic writes into a run folder (".<name>.<random>.tmp"): what a killed process leaves behind
RUN_TEMP_PATTERNS = {"checkpoints": (".last.pt.*.tmp",),
                     ".": (".config.yaml.*.tmp", ".metrics.jsonl.*.tmp", ".dictsr-write-probe.*.tmp")}


def checkpoint_file(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints" / "last.pt"


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
