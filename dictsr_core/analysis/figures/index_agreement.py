"""Index consistency at a glance: the content index maps of a clean LR and its degraded LR side by side,
and where they agree (the quantity the degradation dictionary exists for; see evaluation/index_consistency.py)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

AGREE, DISAGREE = "#009E73", "#D55E00"  # Okabe-Ito green / vermillion


def index_colors(index_map: np.ndarray, entries: int, seed: int = 0) -> np.ndarray:
    """HxWx3 floats: one fixed random colour per D_lr entry, so equal indices look equal in both panels."""
    palette = np.random.default_rng(seed).uniform(0.1, 0.95, (entries, 3))
    return palette[np.asarray(index_map)]


def index_agreement_figure(clean_lr: np.ndarray, degraded_lr: np.ndarray, clean_map: np.ndarray,
                           degraded_map: np.ndarray, *, entries: int, name: str = "", rows: list | None = None,
                           inches: float = 11.0) -> Figure:
    """Five panels: clean LR, degraded LR, their two index maps (one colour per entry) and the agreement map;
    below, when `rows` ({name, index_agreement}) is given, the per-image agreement over the validation set."""
    same = np.asarray(clean_map) == np.asarray(degraded_map)
    figure = Figure(figsize=(inches, inches * (0.52 if rows else 0.27)), layout="constrained")
    grid = figure.add_gridspec(2 if rows else 1, 5, height_ratios=[1, 0.9] if rows else [1])
    panels = [(clean_lr, "clean LR (HR downscaled)"), (degraded_lr, "degraded LR (input)"),
              (index_colors(clean_map, entries), "content indices, clean"),
              (index_colors(degraded_map, entries), "content indices, degraded"),
              (same.astype(float), f"agreement {same.mean():.0%} of cells")]
    for column, (image, title) in enumerate(panels):
        ax = figure.add_subplot(grid[0, column])
        if column == 4:
            ax.imshow(image, cmap=ListedColormap([DISAGREE, AGREE]), vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    if name:
        figure.suptitle(f"{name}: same content entry in {same.mean():.0%} of code cells (green)", fontsize=10)
    if rows:
        ax = figure.add_subplot(grid[1, :])
        values = np.array([row["index_agreement"] for row in rows])
        order = np.argsort(values)
        colors = [AGREE if rows[i]["name"] == name else "#999999" for i in order]
        ax.bar(np.arange(len(values)), values[order], color=colors)
        ax.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_xticks([])
        ax.set_xlabel(f"validation images, sorted ({len(values)}; mean {values.mean():.2f}; dashed: 0.5)")
        ax.set_ylabel("index agreement\nclean vs degraded")
    return figure
