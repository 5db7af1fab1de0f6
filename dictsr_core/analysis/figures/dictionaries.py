"""Fig. 4-style views of the learned dictionaries: a 2-D map of D_lr with validation code cells, the
degradation offsets around the most-used entries, and an atlas of decoded D_hr atoms."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dictsr_core.analysis.figures.style import method_color

UNUSED_GREY = "#D0D0D0"
PATCH_COLOR = "#0072B2"  # Okabe-Ito blue: the validation code cells in every panel
ENTRY_COLOR = method_color("dictsr")


def _axis_names(method: str) -> tuple[str, str]:
    return ("UMAP 1", "UMAP 2") if method == "umap" else ("PC 1", "PC 2")


def _method_name(method: str) -> str:
    return "UMAP" if method == "umap" else "PCA"


def dictionary_umap_figure(dmap, inches: float = 6.5) -> Figure:
    """D_lr entries coloured by how often validation LR code cells chose them, over those code cells."""
    usage = np.asarray(dmap.usage)
    used = usage > 0
    figure = Figure(figsize=(inches, inches * 0.85), layout="constrained")
    ax = figure.subplots()
    ax.scatter(*dmap.patch_xy.T, s=5, marker=".", color=PATCH_COLOR, alpha=0.45, linewidths=0, zorder=1)
    ax.scatter(*dmap.entry_xy[~used].T, s=8, color=UNUSED_GREY, linewidths=0, zorder=2)
    norm = LogNorm(vmin=1, vmax=max(2, int(usage.max(initial=0))))
    order = np.argsort(usage[used])  # most-used drawn last, on top
    ax.scatter(*dmap.entry_xy[used][order].T, c=usage[used][order], cmap="viridis", norm=norm, s=12,
               edgecolors="black", linewidths=0.2, zorder=3)
    figure.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="uses on validation (log scale)")
    x_name, y_name = _axis_names(dmap.method)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(f"D_lr: {int(used.sum())} of {len(usage)} entries used", fontsize=10)
    ax.legend(handles=[
        Line2D([], [], ls="", marker="o", ms=5, mfc="#21918C", mec="black", mew=0.3, label="D_lr entry (used)"),
        Line2D([], [], ls="", marker="o", ms=4, mfc=UNUSED_GREY, mec=UNUSED_GREY, label="D_lr entry (unused)"),
        Line2D([], [], ls="", marker=".", ms=6, color=PATCH_COLOR, label=f"validation LR code cell ({len(dmap.patch_xy)})"),
    ], loc="best", fontsize=8, framealpha=0.85)
    figure.suptitle(f"Content dictionary D_lr and validation LR embeddings, {_method_name(dmap.method)} "
                    f"of the lookup space (one fit)", fontsize=10)
    return figure


def degradation_offsets_figure(dmap, columns: int = 2, panel_inches: float = 3.4) -> Figure:
    """For each selected entry j: D_lr(j), its K offsets D_lr(j) + D_deg(j, k), and the code cells that chose j."""
    entries = np.asarray(dmap.offset_entries)
    x_name, y_name = _axis_names(dmap.method)
    if len(entries) == 0:
        figure = Figure(figsize=(panel_inches * 1.6, panel_inches), layout="constrained")
        ax = figure.subplots()
        reason = "no degradation dictionary (A1)" if not dmap.hierarchical else "no entries selected"
        ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=14, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        ax.set_title("Degradation offsets D_deg", fontsize=10)
        figure.suptitle("This model looks LR embeddings up over D_lr alone: there are no offsets to show", fontsize=10)
        return figure
    columns = min(columns, len(entries))
    rows = math.ceil(len(entries) / columns)
    figure = Figure(figsize=(panel_inches * columns + 1.0, panel_inches * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    norm = Normalize(vmin=0, vmax=max(float(dmap.offset_norms.max()), 1e-12))
    for ax, j, xy, norms, spacing in zip(axes, entries, dmap.offset_xy, dmap.offset_norms, dmap.entry_spacing):
        centre = dmap.entry_xy[j]
        cells = dmap.patch_xy[dmap.patch_entries == j]
        for point in xy:
            ax.plot([centre[0], point[0]], [centre[1], point[1]], color="#888888", lw=0.6, zorder=1)
        ax.scatter(*cells.T, s=6, marker=".", color=PATCH_COLOR, alpha=0.6, linewidths=0, zorder=2)
        ax.scatter(*centre, marker="*", s=160, color=ENTRY_COLOR, edgecolors="black", linewidths=0.5, zorder=3)
        ax.scatter(*xy.T, c=norms, cmap="magma", norm=norm, s=22, edgecolors="black", linewidths=0.3, zorder=4)
        ax.set_title(f"entry {int(j)}: used {int(dmap.usage[j])}x\n"
                     f"offsets reach {norms.max():.3g}, nearest entry {spacing:.3g}", fontsize=8)
        ax.set_xlabel(x_name, fontsize=8)
        ax.set_ylabel(y_name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(entries):]:
        ax.set_visible(False)
    axes[0].legend(handles=[
        Line2D([], [], ls="", marker="*", ms=10, mfc=ENTRY_COLOR, mec="black", label="D_lr(j)"),
        Line2D([], [], ls="", marker="o", ms=5, mfc="#B73779", mec="black", label="D_lr(j) + D_deg(j, k)"),
        Line2D([], [], ls="", marker=".", ms=6, color=PATCH_COLOR, label="validation cells choosing j"),
    ], loc="best", fontsize=7, framealpha=0.85)
    figure.colorbar(ScalarMappable(norm=norm, cmap="magma"), ax=list(axes[: len(entries)]),
                    label="||D_deg(j, k)|| in the lookup space")
    k = dmap.offset_xy.shape[1]
    figure.suptitle(f"K = {k} degradation offsets around the {len(entries)} most-used D_lr entries "
                    f"({_method_name(dmap.method)} map)\ndistances in titles and colours are measured in the "
                    "lookup space, not on the 2-D map", fontsize=10)
    return figure


def hr_atom_atlas_figure(atoms, entry_ids, usage=None, columns: int = 16, max_atoms: int = 256,
                         tile_inches: float = 0.4) -> Figure:
    """A grid of decoded D_hr atoms ([n, P, P, 3] uint8), 1-px gaps; most-used first when `usage` is given.

    usage: per-entry counts indexed by entry id (DictionaryMap.usage), so a subset of atoms can be passed.
    """
    atoms = np.asarray(atoms)
    entry_ids = np.asarray(entry_ids, dtype=np.int64)
    if atoms.ndim != 4 or atoms.shape[3] != 3 or len(atoms) != len(entry_ids):
        raise ValueError(f"atoms must be [n, P, P, 3] with one entry id each; got {atoms.shape} and {len(entry_ids)} ids")
    if len(atoms) == 0:
        raise ValueError("hr_atom_atlas_figure needs at least one atom")
    if usage is not None:
        usage = np.asarray(usage)
        if entry_ids.max() >= len(usage):
            raise ValueError(f"usage has {len(usage)} entries but entry ids reach {entry_ids.max()}")
        order = np.argsort(-usage[entry_ids], kind="stable")
        ordering = "most-used first"
    else:
        order = np.arange(len(atoms))
        ordering = "in entry order"
    order = order[:max_atoms]
    p = atoms.shape[1]
    columns = min(columns, len(order))
    rows = math.ceil(len(order) / columns)
    mosaic = np.full((rows * (p + 1) - 1, columns * (p + 1) - 1, 3), 255, dtype=np.uint8)
    for slot, index in enumerate(order):
        r, c = divmod(slot, columns)
        mosaic[r * (p + 1) : r * (p + 1) + p, c * (p + 1) : c * (p + 1) + p] = atoms[index]
    figure = Figure(figsize=(max(3.0, columns * tile_inches), rows * tile_inches + 1.0), layout="constrained")
    ax = figure.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{columns} atoms per row, read row by row", fontsize=8)
    ax.set_ylabel(f"{rows} rows", fontsize=8)
    detail = ""
    if usage is not None:
        shown = usage[entry_ids[order]]
        detail = f"; uses {int(shown.max())} down to {int(shown.min())}"
    ax.set_title(f"{len(order)} shown of {len(atoms)} D_hr atoms, {ordering}{detail}", fontsize=9)
    figure.suptitle(f"D_hr entries decoded to {p}x{p} HR patches (centre of a constant code grid)", fontsize=10)
    return figure
