"""Bar charts of result records (`dictsr_core.evaluation.results`): the method comparison and the ablations."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from pathlib import Path

from dictsr_core.analysis.figures.style import method_color, method_label
from dictsr_core.peers.names import EQUAL_BUDGET_METHODS, PRETRAINED_METHODS

PANELS = (("psnr_rgb", "PSNR RGB (dB), higher is better"), ("ssim_rgb", "SSIM RGB, higher is better"),
          ("lpips_alex", "LPIPS-Alex, lower is better"))


def _value(record: dict, key: str) -> float:
    value = record["evaluation"]["summary"].get(key)
    return float("nan") if value is None else float(value)


def _bars(ax, labels, values, colors, fmt):
    positions = np.arange(len(values))
    ax.bar(positions, values, color=colors, edgecolor="k", linewidth=0.5)
    for x, v in zip(positions, values):
        if np.isfinite(v):
            ax.annotate(format(v, fmt), (x, v), ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(positions, labels, rotation=25, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def metric_bars(records: list[dict], title: str = "") -> Figure:
    """One panel per metric, one bar per record, coloured by method (the colours of every other figure)."""
    if not records:
        raise ValueError("metric_bars needs at least one record")
    figure = Figure(figsize=(4 * len(PANELS), 3.4), layout="constrained")
    labels = [method_label(r["method"]) if r["method"] != "dictsr" or not r["ablation"] else r["ablation"] for r in records]
    colors = [method_color(r["method"]) for r in records]
    for ax, (key, axis_title) in zip(figure.subplots(1, len(PANELS)), PANELS):
        _bars(ax, labels, [_value(r, key) for r in records], colors, ".3f" if "ssim" in key or "lpips" in key else ".2f")
        ax.set_ylabel(axis_title, fontsize=8)
    figure.suptitle(title or "Validation metrics per method", fontsize=10)
    return figure


def ablation_bars(records: list[dict], title: str = "") -> Figure:
    """Tables 3/4 as charts: activated D_lr entries (of N) per variant, activated entries against d, LPIPS and PSNR."""
    from dictsr_core.evaluation.tables import ablation_id

    dictsr = [r for r in records if r["method"] == "dictsr"]
    if not dictsr:
        raise ValueError("ablation_bars needs at least one DictSR record")
    ids = [ablation_id(r) for r in dictsr]
    colors = [method_color("dictsr") if i == "Ours" else method_color(i) for i in ids]
    figure = Figure(figsize=(16, 3.6), layout="constrained")
    ax_used, ax_dim, ax_lpips, ax_psnr = figure.subplots(1, 4)
    used = [r["activated_entries"] or 0 for r in dictsr]
    _bars(ax_used, ids, used, colors, "d")
    ax_used.scatter(range(len(dictsr)), [r["entries"] for r in dictsr], marker="_", s=400, color="k", label="N", zorder=4)
    ax_used.legend(fontsize=7)
    ax_used.set_ylabel("activated D_lr entries", fontsize=8)
    dims = sorted({(r["config"]["model"]["dim"], ablation_id(r), r["activated_entries"] or 0) for r in dictsr
                   if ablation_id(r) in ("Ours", "C1", "C2")})
    if dims:
        ax_dim.plot([d for d, _, _ in dims], [u for _, _, u in dims], "o-", color=method_color("dictsr"))
        for d, ident, u in dims:
            ax_dim.annotate(ident, (d, u), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax_dim.set_xscale("log", base=2)
    ax_dim.set(xlabel="lookup dimension d", title="activated entries vs d (Ours, C1, C2)")
    ax_dim.set_ylabel("activated D_lr entries", fontsize=8)
    _bars(ax_lpips, ids, [_value(r, "lpips_alex") for r in dictsr], colors, ".3f")
    ax_lpips.set_ylabel("LPIPS-Alex, lower is better", fontsize=8)
    _bars(ax_psnr, ids, [_value(r, "psnr_rgb") for r in dictsr], colors, ".2f")
    ax_psnr.set_ylabel("PSNR RGB (dB), higher is better", fontsize=8)
    figure.suptitle(title or "Ablations (Tables 3 / 4)", fontsize=10)
    return figure


def verdict_bars(datasets: dict[str, dict[str, dict]], model: dict[str, str], order, labels: dict[str, str],
                 title: str = "") -> Figure:
    """The README's verdict figure: per test dataset (a row), LPIPS-Alex and LPIPS-VGG (lower is better) of every
    method scored there, in `order`; the model `dictsr sr` uses ({dataset: run}) edged in black and labelled."""
    if not datasets:
        raise ValueError("verdict_bars needs at least one dataset's records")
    figure = Figure(figsize=(11, 3.3 * len(datasets)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(datasets), 2, squeeze=False))
    for row, (dataset, records) in zip(axes, datasets.items()):
        runs = [run for run in order if run in records] + [model[dataset]] * (model[dataset] not in order)
        shown = [labels.get(run, run) for run in runs]
        colors = [method_color(records[run].get("method", run) if run != model[dataset] else "dictsr") for run in runs]
        for ax, (key, name) in zip(row, (("lpips_alex", "LPIPS-Alex"), ("lpips_vgg", "LPIPS-VGG"))):
            _bars(ax, shown, [_value(records[run], key) for run in runs], colors, ".3f")
            ax.patches[runs.index(model[dataset])].set_linewidth(2.0)
            ax.set_ylabel(f"{name}, lower is better", fontsize=8)
            count = records[model[dataset]]["evaluation"]["summary"].get("count")
            ax.set_title(f"{dataset}, test split ({count} crops)", fontsize=9)
    figure.suptitle(title or "Test split: DictSR beside the equal-budget peers, the published peers and bicubic",
                    fontsize=10)
    return figure


FIGURE_ORDER = ("bicubic", "paired-bicubic", "oracle", *EQUAL_BUDGET_METHODS, "paper-cpu", "dictsr", *PRETRAINED_METHODS)
SHORT_LABELS = {"realesrgan-x4plus": "Real-ESRGAN\n(published)", "realsr-df2k": "RealSR DF2K\n(published)",
                "plain-realesrgan-deg": "plain +\nReal-ESRGAN deg.", "plain-noise-injection": "plain +\nnoise injection",
                "paper-cpu": "paper's method\n(paper-cpu)", "dictsr": "dictsr\n(as trained)"}


def verdict_figure(results_root, datasets=("photos-aim", "photos-ntire")):
    """The bar chart (verdict_bars) of every dataset of `results_root` that has records,
    the model `dictsr sr` uses marked; None where no dataset has any."""
    from dictsr_core.evaluation.verdict import load_test_records

    found, models = {}, {}
    for dataset in datasets:
        folder = Path(results_root) / dataset
        if folder.is_dir() and any(folder.glob("*.json")):
            found[dataset], models[dataset] = load_test_records(folder)
    if not found:
        return None
    labels = {**SHORT_LABELS, **{model: f"{model}\n(dictsr sr)" for model in models.values()}}
    return verdict_bars(found, models, FIGURE_ORDER, labels)
