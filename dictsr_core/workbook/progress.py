"""What `dictsr workbook` shows while its notebooks run in kernels it cannot see into: the plan up front,
live training progress read from each run's metrics.jsonl, and a summary at the end.

A terminal gets a tqdm bar; a log (CI, `make main > log`) gets plain lines at most every `every_s`
seconds, with no carriage returns or colour codes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import threading
import time
from collections import deque
from pathlib import Path


def clock(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss past an hour."""
    minutes, secs = divmod(int(round(max(0.0, seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def planned_steps(run_dir: Path) -> int | None:
    """The run's total steps, from the config.yaml its trainer writes before the first step."""
    import yaml

    try:
        train = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))["train"]
        return int(train["epochs"]) * int(train["steps_per_epoch"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None


class MetricsTail:
    """The newest log line of one run's metrics.jsonl, read incrementally; starts over when the file is replaced
    or shortened (a retrain removes the run folder, a resume drops torn lines)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self._key, self._offset, self._rest = None, 0, b""
        self.points: deque = deque(maxlen=8)  # (step, wall_s) of the newest lines, for the rate
        self.last: dict | None = None
        self.changed_at = 0.0

    def poll(self) -> bool:
        """Read what was appended since the last poll; True when a new line arrived."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        key = (stat.st_ino, stat.st_dev)
        if key != self._key or stat.st_size < self._offset:
            self._key, self._offset, self._rest = key, 0, b""
            self.points.clear()
        if stat.st_size == self._offset:
            return False
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read(stat.st_size - self._offset)
        self._offset += len(chunk)
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        fresh = False
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                self.last = record
                if isinstance(record.get("wall_s"), (int, float)):
                    self.points.append((record["step"], float(record["wall_s"])))
                fresh = True
        if fresh:
            self.changed_at = time.time()
        return fresh

    def rate(self) -> float | None:
        """Steps per second over the newest lines (the trainer's own it/s when there is only one)."""
        if len(self.points) >= 2:
            (s0, w0), (s1, w1) = self.points[0], self.points[-1]
            if s1 > s0 and w1 > w0:
                return (s1 - s0) / (w1 - w0)
        value = (self.last or {}).get("it_s")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None


def remaining_seconds(step: int, total: int, rate: float, phase: tuple[int, float, float] | None = None) -> float:
    """Seconds left at `rate` steps/s; with `phase` = (first perceptual step, seconds per plain step, seconds per
    perceptual step, as measured for the plan), the steps of the phase not running now at the rate the measured
    ratio gives it: an L1 phase's rate would put a slower perceptual phase still ahead at a fraction of its time."""
    if phase is None:
        return (total - step) / rate
    start, plain_s, perceptual_s = phase
    plain_left, perceptual_left = max(0, min(start, total) - step), max(0, total - max(start, step))
    if step < start:  # in the plain phase now: the perceptual steps ahead are slower by the measured ratio
        return plain_left / rate + perceptual_left * (perceptual_s / plain_s) / rate
    return perceptual_left / rate


def progress_text(tail: MetricsTail, total: int | None, phase: tuple[int, float, float] | None = None) -> str:
    """`step 1200/6000 (20%) · loss 0.0421 · L1 0.0160 · 5.1 it/s · ETA 15:40` for the run's newest line (the ETA
    counting a slower perceptual phase still ahead where `phase` says where it starts: remaining_seconds)."""
    record = tail.last or {}
    step = record.get("step", 0)
    parts = [f"step {step}/{total} ({step / total:.0%})" if total else f"step {step}"]
    if isinstance(record.get("total"), (int, float)):
        parts.append(f"loss {record['total']:.4f}")
    if isinstance(record.get("l1_hr"), (int, float)):
        parts.append(f"L1 {record['l1_hr']:.4f}")
    rate = tail.rate()
    if rate:
        parts.append(f"{rate:.2f} it/s")
        if total and total > step:
            parts.append(f"ETA {clock(remaining_seconds(step, total, rate, phase))}")
    return " · ".join(parts)


class StageProgress:
    """While a stage executes: follow the metrics.jsonl of the runs it trains and show their progress; for a
    stage that trains nothing, say every `every_s` seconds that it is still running. A context manager."""

    def __init__(self, stage: str, run_dirs=(), *, estimate_s: float | None = None, stream=None, tty: bool | None = None,
                 every_s: float = 30.0, heartbeat_s: float = 60.0, poll_s: float = 2.0, phases: dict | None = None):
        self.stage = stage
        self.tails = [MetricsTail(Path(d)) for d in run_dirs]
        # {run folder: (first perceptual step, plain s/step, perceptual s/step)}, for ETAs across the phases
        self.phases = {Path(k): v for k, v in (phases or {}).items()}
        self.estimate_s = estimate_s
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s, self.heartbeat_s, self.poll_s = every_s, heartbeat_s, poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._bar_run: Path | None = None
        self._printed_at = 0.0
        self._last_line = ""
        self._start = 0.0

    def __enter__(self):
        self._start = self._printed_at = time.time()
        for tail in self.tails:  # lines already there (a finished or resumed run) are the starting point, not news
            tail.poll()
            tail.changed_at = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"progress-{self.stage}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._tick(final=True)
        if self._bar is not None:
            self._bar.close()
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._tick()
            except Exception as error:  # noqa: BLE001 - progress must never break a workbook run
                self._say(f"[workbook] {self.stage}: progress display stopped ({type(error).__name__}: {error})")
                return

    def _say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _tick(self, final: bool = False) -> None:
        fresh = [tail for tail in self.tails if tail.poll() or tail.changed_at]
        active = max(fresh, key=lambda tail: tail.changed_at, default=None)
        now = time.time()
        if active is None:
            if not final and now - self._printed_at >= self.heartbeat_s:
                expected = f", about {clock(self.estimate_s)} expected" if self.estimate_s else ""
                self._say(f"[workbook] {self.stage}: running, {clock(now - self._start)} elapsed{expected}")
                self._printed_at = now
            return
        total = planned_steps(active.run_dir)
        if not final and self._all_trained() and now - active.changed_at >= self.heartbeat_s:
            if now - self._printed_at >= self.heartbeat_s:  # the notebook scores and draws after the last step
                expected = f", about {clock(self.estimate_s)} expected in all" if self.estimate_s else ""
                self._say(f"[workbook] {self.stage}: training done; scoring and drawing, {clock(now - self._start)} "
                          f"elapsed{expected}")
                self._printed_at = now
            return
        label = f"{self.stage} · {active.run_dir.name}"
        if self.tty:
            self._show_bar(active, total, label)
        elif final or active.run_dir != self._bar_run or now - self._printed_at >= self.every_s:
            line = f"[workbook] {label}: {progress_text(active, total, self.phases.get(active.run_dir))}"
            if line != self._last_line:
                self._say(line)
            self._printed_at, self._bar_run, self._last_line = now, active.run_dir, line

    def _all_trained(self) -> bool:
        """Every run this stage follows has logged its last step."""
        def trained(tail: MetricsTail) -> bool:
            total = planned_steps(tail.run_dir)
            return bool(total) and (tail.last or {}).get("step", 0) >= total

        return bool(self.tails) and all(trained(tail) for tail in self.tails)

    def _show_bar(self, tail: MetricsTail, total: int | None, label: str) -> None:
        from tqdm import tqdm

        if self._bar is None or self._bar_run != tail.run_dir:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total, initial=0, desc=label, unit="step", file=self.stream, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{postfix}]")
            self._bar_run = tail.run_dir
        record = tail.last or {}
        self._bar.total = total
        self._bar.n = record.get("step", 0)
        self._bar.set_postfix_str(progress_text(tail, total, self.phases.get(tail.run_dir)).split(" · ", 1)[-1],
                                  refresh=False)
        self._bar.refresh()


# ---- the plan and the summary ----------------------------------------------------------------

def plan_lines(rows: list[dict], basis: str) -> list[str]:
    """The plan as lines: one per stage with what it runs and its estimate, then the total."""
    lines = ["[workbook] plan:"]
    width = max((len(row["stage"]) for row in rows), default=10)
    for row in rows:
        estimate = "reused" if row.get("reused") else f"~{row['seconds'] / 60:.1f} min"
        lines.append(f"[workbook]   {row['stage']:<{width}}  {estimate:>10}  {row.get('what', '')}")
    total = sum(row["seconds"] for row in rows if not row.get("reused"))
    lines.append(f"[workbook]   {'total':<{width}}  {f'~{total / 60:.0f} min':>10}  ({basis})")
    return lines


SUMMARY_COLUMNS = ("method", "PSNR (RGB)", "LPIPS-Alex", "ΔPSNR vs bicubic [95% CI]", "ΔLPIPS-Alex vs bicubic [95% CI]",
                   "ΔLPIPS-Alex vs paired-bicubic [95% CI]", "index agreement")


def _rounded(column: str, value: str) -> str:
    """A CSV cell as the markdown table shows it: PSNR to 0.01 dB, LPIPS to 4 places, differences signed."""
    if not value:
        return "-"
    places = 4 if "LPIPS" in column else 2
    signed = column.startswith("Δ")
    return re.sub(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?", lambda m: f"{float(m.group()):{'+' if signed else ''}.{places}f}", value)


def headline_rows(table_csv: Path) -> list[list[str]]:
    """Table 1's computed rows (bicubic and the trained runs; not the paper's printed ones), the summary's columns."""
    with open(table_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keep = [row for row in rows if row.get("run") or row.get("method") == "Bicubic"]
    columns = [c for c in SUMMARY_COLUMNS if rows and c in rows[0]]
    return [columns] + [[_method_cell(row) if column == "method" else _rounded(column, row.get(column) or "")
                         for column in columns] for row in keep]


def _method_cell(row: dict) -> str:
    """The method, with its run where one method has several (DictSR and its L1-only model dictsr-l1)."""
    method, run = row.get("method") or "", row.get("run") or ""
    return f"{method} ({run})" if run and run.lower() != method.lower() else method


def summary_lines(*, table_csv: Path, report: Path, figure_dir: Path, notebook_dir: Path, data_dir: Path, seconds: float,
                  lab_command: str = "make lab") -> list[str]:
    """The end of a workbook run: the headline rows, where everything is, and how to open it."""
    lines = [f"[workbook] done in {clock(seconds)} on {data_dir.name}."]
    if table_csv.is_file():
        rows = headline_rows(table_csv)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("[workbook]   " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    figures = sorted(figure_dir.glob("*.png")) if figure_dir.is_dir() else []
    lines += [f"[workbook] report:    {report}",
              f"[workbook] figures:   {figure_dir}/ ({len(figures)} PNG, each with a PDF)",
              f"[workbook] notebooks: {notebook_dir}/ (the executed copies, outputs included)",
              f"[workbook] open them: {lab_command}   (JupyterLab on http://127.0.0.1:8888; the explorer is 07_explore)"]
    return lines
