"""The paper's Fig. 3 (notebook 06_qualitative): per image, the HR overview with the crop marked, then
zoomed crops LR | methods | HR with each crop's PSNR, and optionally |error| maps on one colour scale."""

from __future__ import annotations


import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dictsr_core.analysis.figures.style import method_color, method_label

CROP_COLOR = "#CC79A7"  # Okabe-Ito reddish purple: not one of the fixed method colours
ERROR_CMAP = "inferno"
ERROR_LABEL = "|error| (0-255)"
NOT_METHODS = ("name", "LR", "HR")


def crop_psnr(a, b) -> float:
    """RGB PSNR in dB of two uint8 crops: `metrics.psnr_rgb` (range 255, no border crop, inf when identical),
    imported on use so that importing the figures does not load torch and LPIPS."""
    from dictsr_core.evaluation.metrics import psnr_rgb

    return psnr_rgb(a, b)


def _error_map(output, hr) -> np.ndarray:
    """Per-pixel mean absolute error over RGB, in 0-255."""
    return np.abs(np.asarray(output, np.float32) - np.asarray(hr, np.float32)).mean(2)


def _check_shapes(outputs: dict, hr: np.ndarray) -> None:
    for method, output in outputs.items():
        if np.shape(output) != hr.shape:
            raise ValueError(f"output of {method!r} has shape {np.shape(output)} but HR has shape {hr.shape}")


def choose_crops(outputs: dict[str, np.ndarray], hr: np.ndarray, size: int, count: int = 1, scale: int = 4,
                 min_gap: int | None = None) -> list[tuple[int, int]]:
    """Top-left corners (multiples of `scale`, so the LR crop aligns) of `count` size x size windows
    where the methods disagree most, best first.

    Score per pixel = max - min across methods of the mean-abs error vs HR (zero where all methods agree,
    so the crop shows differences rather than regions every method finds hard); with a single method it
    is that method's error. Windows are picked greedily; a later window's corner must be at least
    `min_gap` (default `size`, i.e. no overlap) away from every earlier one in rows or columns.
    """
    hr = np.asarray(hr)
    if not outputs:
        raise ValueError("choose_crops needs at least one method output")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    _check_shapes(outputs, hr)
    height, width = hr.shape[:2]
    if not 1 <= size <= min(height, width):
        raise ValueError(f"image too small for crop: {height}x{width} image, {size}x{size} crop")
    errors = np.stack([_error_map(output, hr) for output in outputs.values()])
    score = errors[0] if len(errors) == 1 else errors.max(0) - errors.min(0)

    integral = np.pad(score.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    tops, lefts = np.arange(0, height - size + 1, scale), np.arange(0, width - size + 1, scale)
    sums = (integral[np.ix_(tops + size, lefts + size)] - integral[np.ix_(tops, lefts + size)]
            - integral[np.ix_(tops + size, lefts)] + integral[np.ix_(tops, lefts)])
    gap = size if min_gap is None else min_gap
    corners = []
    for _ in range(count):
        if not np.isfinite(sums).any():
            raise ValueError(f"only {len(corners)} crops of {size}x{size} at gap {gap} fit a {height}x{width} image")
        i, j = np.unravel_index(np.argmax(sums), sums.shape)
        top, left = int(tops[i]), int(lefts[j])
        corners.append((top, left))
        near_rows, near_cols = np.abs(tops - top) < gap, np.abs(lefts - left) < gap
        sums[np.ix_(near_rows, near_cols)] = -np.inf
    return corners


def _zoom(row: dict, column: str, top: int, left: int, size: int, scale: int) -> np.ndarray:
    """The HR-sized crop of one column; LR is cut at LR resolution and nearest-upscaled, so its pixels show."""
    if column == "LR":
        lr = np.asarray(row["LR"])[top // scale:(top + size) // scale, left // scale:(left + size) // scale]
        return np.repeat(np.repeat(lr, scale, 0), scale, 1)
    return np.asarray(row[column])[top:top + size, left:left + size]


def _frame(ax, color: str, title: str | None = None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(2.5)
    if title:
        ax.set_title(title, fontsize=8)


def _blocks(rows, crops, size, methods):
    """Validate the rows and resolve one (row, scale, top, left, side) per panel row of the figure."""
    if crops is not None and len(crops) != len(rows):
        raise ValueError(f"crops has {len(crops)} entries for {len(rows)} images")
    blocks = []
    for i, row in enumerate(rows):
        name, hr, lr = row.get("name", f"image {i}"), np.asarray(row["HR"]), np.asarray(row["LR"])
        missing = [m for m in methods if m not in row]
        if missing:
            raise ValueError(f"image {name!r} has no output for {missing}")
        scale = hr.shape[0] // lr.shape[0]
        if scale < 1 or hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise ValueError(f"image {name!r}: HR {hr.shape} is not an integer multiple of LR {lr.shape}")
        outputs = {m: row[m] for m in methods}
        _check_shapes(outputs, hr)
        side = size // scale * scale  # whole LR pixels, so the LR crop shows exactly the HR crop's area
        corners = choose_crops(outputs, hr, side, 1, scale) if crops is None else crops[i]
        for top, left in corners:
            if top % scale or left % scale or top < 0 or left < 0 or top + side > hr.shape[0] or left + side > hr.shape[1]:
                raise ValueError(f"image {name!r}: crop at ({top}, {left}) of size {side} is off the x{scale} LR "
                                 f"grid or outside the {hr.shape[0]}x{hr.shape[1]} image")
            blocks.append((row, name, scale, int(top), int(left), side))
    return blocks


def qualitative_figure(rows: list[dict], crops: list[list[tuple[int, int]]] | None = None, size: int = 64,
                       methods: list[str] | None = None, error_maps: bool = True, panel_inches: float = 2.0) -> Figure:
    """Fig. 3: for each image and crop, the full HR with the crop marked, then LR | methods | HR zooms
    (titles: label and crop PSNR; frames in the method's colour) and, when `error_maps`, a row of
    |output - HR| maps under the methods, all on one colour scale with one colorbar so they compare.

    Each row dict has "name", "LR", "HR" and HR-sized uint8 outputs keyed by method; `methods` defaults to
    the first row's other keys in order; `crops` (per image, a list of top-left corners) defaults to
    one `choose_crops` window per image. `size` is rounded down to a multiple of the scale.
    """
    if not rows:
        raise ValueError("qualitative_figure needs at least one image")
    methods = [k for k in rows[0] if k not in NOT_METHODS] if methods is None else list(methods)
    if not methods:
        raise ValueError("qualitative_figure needs at least one method output")
    blocks = _blocks(rows, crops, size, methods)
    columns = ["LR", *methods, "HR"]
    per_block = 2 if error_maps else 1

    zooms = [[_zoom(row, c, top, left, side, scale) for c in columns] for row, _, scale, top, left, side in blocks]
    errors = [[_error_map(z, panels[-1]) for z in panels[1:-1]] for panels in zooms]
    norm = Normalize(0, max(1.0, max(float(e.max()) for es in errors for e in es)))

    figure = Figure(figsize=(panel_inches * (len(columns) + 1), panel_inches * per_block * len(blocks)),
                    layout="constrained")
    grid = figure.add_gridspec(per_block * len(blocks), len(columns) + 1)
    error_axes = []
    for b, ((row, name, scale, top, left, side), panels) in enumerate(zip(blocks, zooms)):
        r = b * per_block
        ax = figure.add_subplot(grid[r:r + per_block, 0])
        ax.imshow(np.asarray(row["HR"]), interpolation="nearest")
        for color, width in (("white", 4.0), (CROP_COLOR, 2.0)):  # white halo: visible on any background
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor=color, linewidth=width))
        _frame(ax, "black", f"{name}\ncrop ({top}, {left}), {side}px")
        for k, (column, panel) in enumerate(zip(columns, panels)):
            is_method = 0 < k <= len(methods)  # columns are LR, methods..., HR
            ax = figure.add_subplot(grid[r, k + 1])
            ax.imshow(panel, interpolation="nearest")
            if is_method:
                title = f"{method_label(column)}\n{crop_psnr(panel, panels[-1]):.2f} dB"
            else:
                title = method_label(column) + (f"\nx{scale} nearest" if column == "LR" else "")
            _frame(ax, method_color(column), title)
            if error_maps and is_method:
                ax = figure.add_subplot(grid[r + 1, k + 1])
                image = ax.imshow(errors[b][k - 1], cmap=ERROR_CMAP, norm=norm, interpolation="nearest")
                _frame(ax, method_color(column))
                if k == 1:
                    ax.set_ylabel("|output - HR|", fontsize=8)
                error_axes.append(ax)
    if error_axes:
        # anchored to every panel, so it sits at the far right instead of splitting DictSR from HR
        figure.colorbar(image, ax=figure.axes, label=ERROR_LABEL, shrink=0.8)
    return figure
