"""Training curves from a run's metrics.jsonl, drawn once at the end or live while `train()` logs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from matplotlib.figure import Figure

LOSS_TERMS = ("total", "l1_hr", "l1_hr_down", "l1_lr", "perceptual", "dis_hr", "dis_hr_down", "dis_lr", "consistency")


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl; a half-written last line (a crash mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics log (train the run first)")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def training_curves(records: list[dict], title: str = "", entries: int | None = None) -> Figure:
    """Losses (log scale), learning rate, and activated D_lr entries / D_deg offsets against the step."""
    figure = Figure(figsize=(12, 3.4), layout="constrained")
    ax_loss, ax_lr, ax_used = figure.subplots(1, 3)
    steps = [r["step"] for r in records]
    for term in LOSS_TERMS:
        values = [r.get(term) for r in records]
        if any(v is not None and v > 0 for v in values):  # a term of a later phase (LPIPS) starts at its step
            shown = [v if v is not None and v > 0 else float("nan") for v in values]
            ax_loss.plot(steps, shown, label=term, lw=2.2 if term == "total" else 1.2)
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="loss (mean over log interval)", title="losses")
    if ax_loss.lines:
        ax_loss.legend(fontsize=7, ncol=2)
    ax_lr.plot(steps, [r.get("lr") for r in records], color="k")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    if records and "activated" in records[0]:
        ax_used.plot(steps, [r["activated"] for r in records], color="#D55E00", label="activated D_lr entries")
        if entries:
            ax_used.axhline(entries, color="#999999", ls="--", label=f"N = {entries}")
        handles = ax_used.get_lines()
        if "activated_deg" in records[0]:
            twin = ax_used.twinx()
            handles += twin.plot(steps, [r["activated_deg"] for r in records], color="#0072B2", label="activated D_deg offsets")
            twin.set_ylabel("activated D_deg offsets", color="#0072B2")
        ax_used.legend(handles=handles, fontsize=7, loc="best", framealpha=0.9)
        ax_used.set(xlabel="step", ylabel="activated D_lr entries (usage window)", title="dictionary usage")
    else:
        ax_used.text(0.5, 0.5, "no dictionaries\n(paired baseline)", ha="center", va="center", transform=ax_used.transAxes)
        ax_used.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


class LiveTrainingPlot:
    """`train(..., on_log=LiveTrainingPlot(...))`: redraws the curves in the notebook at a log step (every `every`-th),
    at most once per `min_interval_s` seconds. A redraw renders every panel over every record so far, and the
    training waits for it: 0.2-0.6 s on 2 cores, so at each of a main run's 336-605 log steps it took 2-3 min of
    its 15-17 (2026-12-04)."""

    def __init__(self, title: str = "", entries: int | None = None, every: int = 1, min_interval_s: float = 30.0,
                 clock=time.monotonic):
        self.title, self.entries, self.every = title, entries, max(1, every)
        self.min_interval_s, self.clock = float(min_interval_s), clock
        self.records: list[dict] = []
        self._handle, self._drawn_at = None, None

    def due(self) -> bool:
        """Whether the record just added is to be drawn (the first always is); marks it drawn."""
        now = self.clock()
        if (len(self.records) - 1) % self.every or (
                self._drawn_at is not None and now - self._drawn_at < self.min_interval_s):
            return False
        self._drawn_at = now
        return True

    def __call__(self, record: dict) -> None:
        self.records.append(record)
        if not self.due():
            return
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:  # plain Python: nothing to draw into
            return
        figure = training_curves(self.records, self.title, self.entries)
        if self._handle is None:
            self._handle = display(figure, display_id=True)
        else:
            self._handle.update(figure)
