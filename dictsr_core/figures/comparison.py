"""Plotting helpers the notebooks call; each returns a matplotlib Figure and never calls show()."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from dictsr_core.data.degradations import AimDegradation, NtireDegradation, bicubic_downscale, quantize


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


def sr_comparison(rows: list[dict], crop: int = 96, panel_inches: float = 2.4) -> Figure:
    """One row per image: LR (nearest-upscaled) | bicubic | DictSR | HR on the same HR crop.

    Each row dict has "name", "LR", "HR" and any number of method outputs (HR-sized arrays);
    the crop is centred where the methods' outputs differ most from HR on average.
    """
    if not rows:
        raise ValueError("sr_comparison needs at least one image")
    methods = [key for key in rows[0] if key not in ("name", "LR", "HR")]
    columns = ["LR"] + methods + ["HR"]
    figure = Figure(figsize=(panel_inches * len(columns), panel_inches * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        hr = row["HR"]
        scale = hr.shape[0] // row["LR"].shape[0]
        size = min(crop, hr.shape[0], hr.shape[1]) // scale * scale
        error = sum(np.abs(row[m].astype(np.float32) - hr).mean(2) for m in methods)
        top, left = _busiest_window(error, size, scale)
        for c, name in enumerate(columns):
            if name == "LR":
                panel = row["LR"][top // scale:(top + size) // scale, left // scale:(left + size) // scale]
                panel = np.repeat(np.repeat(panel, scale, 0), scale, 1)
            else:
                panel = row[name][top:top + size, left:left + size]
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(row["name"], fontsize=9)
    return figure


def _busiest_window(error: np.ndarray, size: int, step: int) -> tuple[int, int]:
    """Top-left corner (multiples of `step`) of the size x size window with the largest summed error."""
    integral = np.pad(error, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best, where = -1.0, (0, 0)
    for top in range(0, error.shape[0] - size + 1, step):
        for left in range(0, error.shape[1] - size + 1, step):
            total = integral[top + size, left + size] - integral[top, left + size] - integral[top + size, left] + integral[top, left]
            if total > best:
                best, where = total, (top, left)
    return where
