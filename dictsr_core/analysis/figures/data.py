"""Notebook 01's figures: the validation pairs as HR / clean LR / degraded LR, degradation statistics, and
what the synthetic degradations do to any HR image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dictsr_core.data.degradations import AimDegradation, NtireDegradation, bicubic_downscale, quantize
from dictsr_core.data.statistics import GROUPS, STATISTIC_TITLES, STATISTICS

GROUP_COLORS = dict(zip(GROUPS, ("#009E73", "#D55E00", "#0072B2")))


def data_gallery(data_dir, count: int = 3, scale: int = 4, panel_inches: float = 2.6) -> Figure:
    """One row per validation pair: HR | clean LR (MATLAB bicubic x1/4 of HR) | degraded LR (val_lr) | train LR.

    The clean and degraded LR of the same scene side by side show what the degradation does; the last
    column is an unrelated image of the LR training domain (the unpaired protocol).
    """
    from dictsr_core.data.datasets import PairedImages
    from dictsr_core.data.io import list_images, read_rgb
    from dictsr_core.data.resize import imresize_np

    data_dir = Path(data_dir)
    pairs = PairedImages(data_dir / "val_lr", data_dir / "val_hr", scale=scale)
    train_lr = list_images(data_dir / "train_lr")
    count = min(count, len(pairs))
    if count < 1:
        raise ValueError(f"{data_dir}: no validation pairs to show")
    titles = ("HR (val_hr)", f"clean LR (bicubic x1/{scale})", "degraded LR (val_lr)", "train LR (unrelated)")
    figure = Figure(figsize=(panel_inches * 4, panel_inches * count), layout="constrained")
    axes = figure.subplots(count, 4, squeeze=False)
    for row in range(count):
        item = pairs[row]
        clean = np.clip(np.round(imresize_np(item["hr"], 1 / scale)), 0, 255).astype(np.uint8)
        other = read_rgb(train_lr[row % len(train_lr)]) if train_lr else np.zeros_like(item["lr"])
        for col, (panel, title) in enumerate(zip((item["hr"], clean, item["lr"], other), titles)):
            ax = axes[row, col]
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(f"{title}\n{item['name'] if col < 3 else 'train_lr'} {panel.shape[1]}x{panel.shape[0]}", fontsize=8)
            ax.set_axis_off()
    figure.suptitle(f"{data_dir.name}: validation pairs and the LR training domain", fontsize=10)
    return figure


def degradation_statistics_figure(rows: list[dict], panel_inches: float = 2.8) -> Figure:
    """One panel per statistic: each image a dot, per group (clean LR / train LR / val LR), group mean a bar."""
    if not rows:
        raise ValueError("degradation_statistics_figure needs at least one row")
    groups = [g for g in GROUPS if any(r["group"] == g for r in rows)]
    figure = Figure(figsize=(panel_inches * len(STATISTICS), panel_inches * 1.2), layout="constrained")
    axes = figure.subplots(1, len(STATISTICS))
    rng = np.random.default_rng(0)
    for ax, statistic in zip(axes, STATISTICS):
        for position, group in enumerate(groups):
            values = np.array([r[statistic] for r in rows if r["group"] == group], dtype=float)
            color = GROUP_COLORS[group]
            ax.bar(position, np.nanmean(values), color=color, alpha=0.35, width=0.7)
            ax.scatter(position + rng.uniform(-0.18, 0.18, len(values)), values, color=color, s=14, zorder=3)
        ax.set_xticks(range(len(groups)), [g.split(" (")[0] for g in groups], rotation=20, fontsize=8)
        ax.set_ylabel(STATISTIC_TITLES[statistic], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Degradation statistics per image (bar: group mean)", fontsize=10)
    return figure


def degradation_gallery(images, seed: int = 0, scale: int = 4, panel_inches: float = 2.6) -> Figure:
    """For each HR image (HxWx3 uint8): HR | clean bicubic LR | aim LR | ntire LR, in one row.

    Shows what the synthetic LR domains look like next to the clean downscale, at the
    same seed that `prepare` would use for image i (seed, i).
    """
    images = [np.asarray(image) for image in images]
    if not images:
        raise ValueError("degradation_gallery needs at least one image")
    columns = [("HR", None), ("clean LR (bicubic x1/%d)" % scale, None),
               ("aim LR", AimDegradation(scale=scale)), ("ntire LR", NtireDegradation(scale=scale))]
    figure = Figure(figsize=(panel_inches * len(columns), panel_inches * len(images)), layout="constrained")
    axes = figure.subplots(len(images), len(columns), squeeze=False)
    for row, hr in enumerate(images):
        panels = [hr, quantize(bicubic_downscale(hr, scale))]
        panels += [degradation(hr, [seed, row]) for _, degradation in columns[2:]]
        for column, (panel, (title, _)) in enumerate(zip(panels, columns)):
            ax = axes[row, column]
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(f"{title}\n{panel.shape[1]}x{panel.shape[0]}", fontsize=8)
            ax.set_axis_off()
    return figure
