"""The dictionary explorer behind notebook 07_explore: what the model does at one LR location.

For an LR pixel (y, x) it shows the code cell's content entry j (the inference index), the offset k
of the hierarchical lookup, j's nearest neighbours in D_lr, the HR atoms of j and of its neighbours,
and the LR context re-rendered by the LR decoder with the cell's code replaced by D_lr(j) + D_deg(j, k)
for every k: what each degradation offset of that entry looks like.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dictsr_core.inference.tiled import as_rgb_array, image_tensor, model_device, pad_to_grid, receptive_margin
from dictsr_core.model import DictSR
from dictsr_core.model.dictionaries import nearest_entry, nearest_offset
from dictsr_core.model.dictsr import to_signed, to_unit
from dictsr_core.model.lowpass_base import add_base
from dictsr_core.training.checkpoint import CheckpointError, load_checkpoint, model_weights

__all__ = ["ImageCodes", "Location", "load_training_model", "encode_image", "inspect_location", "location_figure",
           "figure_png", "explorer_widget"]


def load_training_model(checkpoint, device="cpu") -> DictSR:
    """The full DictSR (eval mode) of a checkpoint, with the weights inference uses: the explorer needs D_lr's
    decoder, which inference drops."""
    payload = load_checkpoint(checkpoint)
    cfg = payload["config"]
    if cfg.method != "dictsr":
        raise CheckpointError(f"{checkpoint}: a {cfg.method!r} baseline checkpoint (PlainSR, no dictionaries); "
                              "the explorer needs a DictSR checkpoint")
    model = DictSR(cfg.model)
    try:
        model.load_state_dict(model_weights(payload, source=str(checkpoint)))
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{checkpoint}: weights do not match its config: {error}") from None
    return model.to(device).eval()


@dataclass
class ImageCodes:
    """Everything per image that does not depend on the location (computed once, reused by the widget)."""

    image: np.ndarray  # HxWx3 uint8, as given
    z: torch.Tensor  # [h, w, d] lookup-space embedding of the grid-padded image (fp32)
    entries: torch.Tensor  # [h, w] content index j (inference rule)
    offsets: torch.Tensor | None  # [h, w] offset k of the hierarchical lookup for that j (None without D_deg)
    quantized: torch.Tensor  # [h, w, d] branch-3 quantised vectors D_lr(j3) + D_deg(j3, k3)
    padded: np.ndarray  # the grid-padded image, HxWx3 uint8


@dataclass
class Location:
    """One inspected LR location. Distances are Euclidean, in the d-dim lookup space; images are HxWx3 uint8."""

    y: int
    x: int
    cell: tuple[int, int]  # (row, col) on the code grid
    code_patch: int
    entry: int  # j
    offset: int | None  # k (None without D_deg)
    usage: int  # cells of this image whose entry is j
    z: np.ndarray  # [d] embedding at the cell
    content_distance: float  # ||z - D_lr(j)||
    offset_distance: float | None  # ||z - D_lr(j) - D_deg(j, k)||
    offset_norms: list[float]  # ||D_deg(j, k)|| for k = 0..K-1
    neighbours: list[int]  # nearest other D_lr entries to D_lr(j), nearest first
    neighbour_distances: list[float]
    hr_atom: np.ndarray  # 4p x 4p: D_hr(j) decoded in a 3x3 grid of j, centre cell
    neighbour_atoms: list[np.ndarray]
    lr_patch: np.ndarray  # p x p pixels of the cell (grid-padded image)
    box: tuple[int, int, int, int]  # (top, bottom, left, right) of the context, LR pixels
    context: np.ndarray  # LR context crop
    sr_context: np.ndarray  # DictSR inference output of the context (4x)
    reconstruction: np.ndarray  # D_lr decoder on the unmodified branch-3 map, context crop
    renderings: list[np.ndarray]  # context re-rendered with the cell's code = D_lr(j) + D_deg(j, k), k = 0..K-1
    clean_rendering: np.ndarray  # the same with D_lr(j) alone ("clean content")


def _uint8(x: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [0, 1] -> B x H x W x 3 uint8."""
    return x.float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode_image(model: DictSR, lr_image) -> ImageCodes:
    """E_lr and both lookups over the whole image (the index map must see the image the way inference does)."""
    image = as_rgb_array(lr_image)
    p = model.cfg.code_patch
    if image.shape[0] < p or image.shape[1] < p:
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}: smaller than one {p}x{p} code cell")
    d = model.dictionaries
    x = pad_to_grid(image_tensor(image, model_device(model)), p)
    features = model.enc_lr(to_signed(x))
    z_map = d.lr_embedding(features)
    z = z_map[0].permute(1, 2, 0)  # [h, w, d]
    rows = z.reshape(-1, z.shape[-1])
    entries = d.content_indices(features, roughness=d.roughness_for(x, p))[0]
    # k for the inference j: for the two-stage rule this is branch 3's k, for the joint rule the pair's k
    offsets = None
    if d.d_deg is not None:
        flat = entries.reshape(-1)
        offsets = nearest_offset(rows - d.content_entries[flat].float(), d.d_deg, flat, d.lookup_chunk).view(entries.shape)
    # the branch-3 map (eq. 4, as in training) is what the LR decoder was trained to render
    j3 = nearest_entry(rows, d.content_entries, d.lookup_chunk)
    q = d.content_entries[j3].float()
    if d.d_deg is not None:
        q = q + d.d_deg[j3, nearest_offset(rows - q, d.d_deg, j3, d.lookup_chunk)].float()
    padded = _uint8(x)[0]
    return ImageCodes(image, z, entries, offsets, q.view(z.shape), padded)


@torch.no_grad()
def _hr_atoms(model: DictSR, ids: list[int]) -> list[np.ndarray]:
    """D_hr(i) decoded in a 3x3 grid of constant i; the centre cell avoids the decoder's border padding."""
    if not ids:
        return []
    s = model.cfg.hr_patch
    grid = torch.tensor(ids, device=model_device(model)).view(-1, 1, 1).expand(-1, 3, 3)
    out = to_unit(model.dec_hr(model.dictionaries.hr_features(grid)))
    return list(_uint8(out[:, :, s : 2 * s, s : 2 * s]))


def _check_coordinate(name: str, value: int, size: int, image: np.ndarray) -> None:
    if not 0 <= value < size:
        raise ValueError(f"{name}={value} is outside the image ({image.shape[1]} wide x {image.shape[0]} high); "
                         f"{name} must be in 0..{size - 1}")


@torch.no_grad()
def inspect_location(model: DictSR, lr_image, y: int, x: int, neighbours: int = 8, *, context: int = 4,
                     codes: ImageCodes | None = None) -> Location:
    """Everything the explorer shows for LR pixel (y, x); `context` code cells each side are decoded for display.

    Decoders run on a window of the code maps with a receptive-field margin, so the crops equal what
    decoding the whole image would give, at the cost of a small window. `codes` (from encode_image on
    the same image) skips re-encoding when many locations of one image are inspected; lr_image is then unused.
    """
    codes = codes or encode_image(model, lr_image)
    image, d, p = codes.image, model.dictionaries, model.cfg.code_patch
    height, width = image.shape[:2]
    _check_coordinate("y", y, height, image)
    _check_coordinate("x", x, width, image)
    r, c = y // p, x // p
    gh, gw = codes.entries.shape
    j = int(codes.entries[r, c])
    k = None if codes.offsets is None else int(codes.offsets[r, c])
    z = codes.z[r, c]
    content = d.content_entries[j].float()
    offsets = d.d_deg[j].float() if d.d_deg is not None else None  # [K, d]

    gaps = (d.content_entries.float() - content).norm(dim=1)
    gaps[j] = float("inf")
    order = torch.sort(gaps, stable=True).indices[: max(0, min(neighbours, d.entries - 1))].tolist()

    # context box (cells, then LR pixels clipped to the image) and the decoding window around it
    r0, r1, c0, c1 = max(0, r - context), min(gh, r + context + 1), max(0, c - context), min(gw, c + context + 1)
    box = (r0 * p, min(height, r1 * p), c0 * p, min(width, c1 * p))
    m = receptive_margin(model) // p
    w0, w1, v0, v1 = max(0, r0 - m), min(gh, r1 + m), max(0, c0 - m), min(gw, c1 + m)
    rows, cols = slice(box[0] - w0 * p, box[1] - w0 * p), slice(box[2] - v0 * p, box[3] - v0 * p)  # box in the window

    # LR renderings: one window of the branch-3 map per replacement vector (K offsets, clean, unmodified)
    window = codes.quantized[w0:w1, v0:v1]
    vectors = ([content + offsets[i] for i in range(offsets.shape[0])] if offsets is not None else [])
    vectors += [content, window[r - w0, c - v0]]
    maps = window.unsqueeze(0).repeat(len(vectors), 1, 1, 1)
    maps[:, r - w0, c - v0] = torch.stack(vectors)
    weight = d.lr_out.weight
    sigma = model.cfg.base_sigma  # with a low-pass base the decoders add detail to the window's own base
    lr_window = image_tensor(codes.padded[w0 * p : w1 * p, v0 * p : v1 * p], weight.device)
    decoded = model.dec_lr(d.lr_out(maps.permute(0, 3, 1, 2).to(weight.dtype)))
    lr = _uint8(add_base(decoded, lr_window.expand(len(vectors), -1, -1, -1), sigma, 1))
    lr = [a[rows, cols] for a in lr]

    sr = add_base(model.dec_hr(d.hr_features(codes.entries[w0:w1, v0:v1][None])), lr_window, sigma, 4)
    sr = _uint8(sr)[0][4 * rows.start : 4 * rows.stop, 4 * cols.start : 4 * cols.stop]

    atoms = _hr_atoms(model, [j] + order)
    return Location(
        y=y, x=x, cell=(r, c), code_patch=p, entry=j, offset=k,
        usage=int((codes.entries == j).sum()),
        z=z.cpu().numpy(),
        content_distance=float((z - content).norm()),
        offset_distance=None if k is None else float((z - content - offsets[k]).norm()),
        offset_norms=[] if offsets is None else offsets.norm(dim=1).tolist(),
        neighbours=order, neighbour_distances=gaps[order].tolist(),
        hr_atom=atoms[0], neighbour_atoms=atoms[1:],
        lr_patch=codes.padded[r * p : (r + 1) * p, c * p : (c + 1) * p],
        box=box, context=image[box[0] : box[1], box[2] : box[3]], sr_context=sr,
        reconstruction=lr[-1], renderings=lr[:-2], clean_rendering=lr[-2],
    )


# ---- figure ----------------------------------------------------------------------------------

def _show(ax, image: np.ndarray, title: str, bold: bool = False) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=8, fontweight="bold" if bold else "normal")
    ax.set_xticks([])
    ax.set_yticks([])


def _outline(ax, loc: Location, scale: int = 1) -> None:
    """The code cell, drawn black under white so that it reads on any content and in grey print."""
    top, bottom, left, _ = loc.box
    p = loc.code_patch
    y, x = (loc.cell[0] * p - top) * scale - 0.5, (loc.cell[1] * p - left) * scale - 0.5
    h = min(p, bottom - loc.cell[0] * p) * scale
    w = min(p, loc.box[3] - loc.cell[1] * p) * scale
    for color, width in (("black", 3.0), ("white", 1.2)):
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=width))


def _grid(subfigure, panels: int, columns: int):
    """Axes for `panels` panels in rows of `columns`; the unused ones are hidden."""
    rows = max(1, -(-panels // columns))
    axes = subfigure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_axis_off()
    return axes


def location_figure(loc: Location, columns: int = 8, panel_inches: float = 1.7) -> Figure:
    """Location summary | HR atoms of j's neighbours | the cell re-rendered through each D_deg(j, k)."""
    n, renders = len(loc.neighbour_atoms), len(loc.renderings) + 1
    rows = [1, max(1, -(-n // columns)), -(-renders // columns)]
    figure = Figure(figsize=(panel_inches * columns, panel_inches * 1.25 * sum(rows) + 0.6), layout="constrained")
    top, middle, bottom = figure.subfigures(3, 1, height_ratios=rows)
    k_text = "none (no D_deg)" if loc.offset is None else str(loc.offset)
    figure.suptitle(f"LR pixel (y={loc.y}, x={loc.x}) -> cell {loc.cell}: entry j = {loc.entry}, offset k = {k_text}, "
                    f"used by {loc.usage} cells; ||z - D_lr(j)|| = {loc.content_distance:.3f}", fontsize=10)

    axes = _grid(top, 5, columns)
    s = 4 * loc.code_patch
    _show(axes[0], loc.context, f"LR input\n{loc.context.shape[1]}x{loc.context.shape[0]} px")
    _outline(axes[0], loc)
    _show(axes[1], loc.sr_context, "DictSR output (4x)")
    _outline(axes[1], loc, 4)
    _show(axes[2], loc.reconstruction, "LR reconstruction\n(D_lr decoder, branch 3)")
    _outline(axes[2], loc)
    _show(axes[3], loc.lr_patch, f"LR cell {loc.code_patch}x{loc.code_patch}")
    _show(axes[4], loc.hr_atom, f"HR atom of j = {loc.entry}\n{s}x{s} px", bold=True)

    middle.suptitle(f"Nearest D_lr entries to j = {loc.entry} (HR atoms; lookup-space distance)", fontsize=9)
    axes = _grid(middle, n, columns)
    for ax, i, dist, atom in zip(axes, loc.neighbours, loc.neighbour_distances, loc.neighbour_atoms):
        _show(ax, atom, f"#{i}  d = {dist:.3f}")
    if not n:
        axes[0].text(0.5, 0.5, "no neighbours requested", ha="center", va="center", fontsize=8)

    bottom.suptitle(f"LR context re-rendered with the cell's code = D_lr({loc.entry}) + D_deg({loc.entry}, k)",
                    fontsize=9)
    axes = _grid(bottom, renders, columns)
    _show(axes[0], loc.clean_rendering, "clean: D_lr(j) alone")
    _outline(axes[0], loc)
    for k, (ax, image) in enumerate(zip(axes[1:], loc.renderings)):
        chosen = k == loc.offset
        _show(ax, image, f"k = {k}{' (chosen)' if chosen else ''}\n||D_deg|| = {loc.offset_norms[k]:.3f}", bold=chosen)
        _outline(ax, loc)
    return figure


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# ---- widget ----------------------------------------------------------------------------------

def explorer_widget(model: DictSR, images: dict[str, np.ndarray], neighbours: int = 8,
                    start: tuple[str, int, int] | None = None):
    """Dropdown + sliders + figure in one VBox; renders its first view on creation (works headless, e.g. papermill),
    at `start` = (image name, y, x) or the first image's centre, so opening elsewhere costs no extra redraws.

    The box carries its state for code and tests: `update()` redraws, `last_location` / `last_figure`
    are the current view, and the controls are `image_choice`, `y_slider`, `x_slider`, `neighbour_slider`.
    """
    import ipywidgets as w  # optional dependency (the `workbook` extra): imported only here
    from IPython.display import Image, display

    if not images:
        raise ValueError("explorer_widget needs at least one image")
    images = {name: as_rgb_array(image) for name, image in images.items()}
    codes: dict[str, ImageCodes] = {}  # E_lr runs once per image, not once per slider move
    first = start[0] if start else next(iter(images))
    h, wd = images[first].shape[:2]
    y0, x0 = start[1:] if start else (h // 2, wd // 2)
    style = {"description_width": "initial"}
    choice = w.Dropdown(options=list(images), value=first, description="image")
    y_slider = w.IntSlider(value=y0, min=0, max=h - 1, description="y (LR px)", continuous_update=False, style=style)
    x_slider = w.IntSlider(value=x0, min=0, max=wd - 1, description="x (LR px)", continuous_update=False, style=style)
    most = max(0, min(32, model.dictionaries.entries - 1))
    n_slider = w.IntSlider(value=min(neighbours, most), min=0, max=most, description="neighbours",
                           continuous_update=False, style=style)
    info, output = w.HTML(), w.Output()
    box = w.VBox([choice, w.HBox([y_slider, x_slider, n_slider]), info, output])
    box.image_choice, box.y_slider, box.x_slider, box.neighbour_slider = choice, y_slider, x_slider, n_slider
    box.info, box.output = info, output
    box.last_location = box.last_figure = None
    quiet = [False]  # set while the sliders' ranges change, so that a new image redraws once

    def update(_change=None) -> Location | None:
        if quiet[0]:
            return None
        name = choice.value
        if name not in codes:
            codes[name] = encode_image(model, images[name])
        loc = inspect_location(model, images[name], y_slider.value, x_slider.value, n_slider.value, codes=codes[name])
        figure = location_figure(loc)
        box.last_location, box.last_figure = loc, figure
        k = "none" if loc.offset is None else loc.offset
        info.value = (f"<b>{name}</b>: cell {loc.cell}: entry {loc.entry}, offset {k}, "
                      f"used by {loc.usage} cells of this image")
        # a PNG, not the Figure: a bare Figure renders as an image only once pyplot has set up the inline backend
        with output:
            output.clear_output(wait=True)
            display(Image(data=figure_png(figure)))
        return loc

    def image_changed(_change) -> None:
        height, width = images[choice.value].shape[:2]
        quiet[0] = True
        try:
            for slider, size in ((y_slider, height), (x_slider, width)):
                slider.value = min(slider.value, size - 1)
                slider.max = size - 1
        finally:
            quiet[0] = False
        update()

    choice.observe(image_changed, names="value")
    for slider in (y_slider, x_slider, n_slider):
        slider.observe(update, names="value")
    box.update = update
    update()
    return box
