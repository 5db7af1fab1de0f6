"""super_resolve: any image, any size, tiled with overlap so that the whole image never has to fit on the device.

Tiles start on the code grid (multiples of the LR code patch) and carry a margin wider than the
network's receptive field; only each tile's core is kept, so tiled and untiled outputs agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from dictsr_core.data.io import MAX_SR_INPUT_PIXELS, pil_to_rgb
from dictsr_core.inference.color_fix import apply_color_fix, check_color_fix
from dictsr_core.inference.fast import graphed
from dictsr_core.model import DictSRInference
from dictsr_core.model.lowpass_base import base_margin, kernel_radius
from dictsr_core.model.texture_gate import roughness_radius

MIN_SIZE = 8  # LR pixels: smaller images carry no usable content for 2x2 codes and 3x3 convs
MIN_TILE = 8  # LR pixels: a smaller tile is almost all margin (the receptive field), so extremely slow
TILE_RANGE = f"0 (the whole image) or at least {MIN_TILE} LR pixels"


def check_tiling(tile: int | None, batch_tiles: int = 1) -> None:
    """ValueError naming the allowed range for a tile side or a tile batch outside it."""
    if tile is not None and not (tile == 0 or tile >= MIN_TILE):
        raise ValueError(f"tile {tile}: must be {TILE_RANGE}")
    if batch_tiles < 1:
        raise ValueError(f"batch_tiles {batch_tiles}: must be at least 1")


def receptive_margin(model: DictSRInference) -> int:
    """LR pixels of context each output pixel depends on (rounded up to the code grid), from the config; a model
    with a `tile_margin` of its own (a pretrained peer, peers/pretrained.py) says it itself."""
    if getattr(model, "tile_margin", None) is not None:
        return int(model.tile_margin)
    cfg = model.cfg
    radius = 1.0  # E_lr conv in
    for s in range(cfg.lr_stages):
        scale = 2**s
        radius += cfg.enc_lr_blocks * 2 * scale  # two 3x3 convs per residual block
        if s + 1 < cfg.lr_stages:
            radius += scale  # stride-2 conv
    scale = float(cfg.code_patch)
    for s in range(cfg.hr_stages):
        radius += cfg.dec_hr_blocks * 2 * scale
        if s + 1 < cfg.hr_stages:
            scale /= 2
            radius += 2 * scale  # nearest x2 (half a source pixel) + 3x3 conv
    radius += scale  # tail conv
    if getattr(cfg, "lookup_blur", 0) > 0:  # the blurred lookup sees this many more code cells around each cell
        radius += kernel_radius(cfg.lookup_blur) * cfg.code_patch
    if getattr(cfg, "texture_gate", 0) > 0:  # a cell's roughness reads the LR pixels around it
        radius += roughness_radius() + cfg.code_patch
    if getattr(cfg, "base_sigma", 0) > 0:
        radius = max(radius, base_margin(cfg.base_sigma))
    step = cfg.code_patch
    return int(math.ceil((radius + step) / step) * step)


def as_rgb_array(image) -> np.ndarray:
    """PIL image (any mode) or array (HxW, HxWx1/3/4, uint8 or uint16) -> HxWx3 uint8."""
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    if array.dtype != np.uint8:
        raise TypeError(f"expected a uint8 or uint16 image array, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW or HxWxC image array, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        array = pil_to_rgb(Image.fromarray(array, mode="RGBA"))
    return np.ascontiguousarray(array)


def model_device(model: torch.nn.Module, device=None) -> torch.device:
    """`device` if given, else where the model's weights are."""
    return torch.device(device) if device is not None else next(model.parameters()).device


def image_tensor(image: np.ndarray, device=None) -> torch.Tensor:
    """HxWx3 uint8 -> [1, 3, H, W] float in [0, 1] on `device`."""
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:  # torch warns on read-only memory (e.g. a decoded image in a dataset)
        array = array.copy()
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device).float().div_(255)


def pad_to_grid(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Replicate-pad a [B, C, h, w] batch at the bottom/right up to multiples of `grid` (the code grid)."""
    pad_h, pad_w = (-x.shape[-2]) % grid, (-x.shape[-1]) % grid
    if pad_h or pad_w:
        x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


@torch.no_grad()
def _run(model: DictSRInference, lr: torch.Tensor, device, amp: bool, cuda_graphs: bool = False) -> torch.Tensor:
    """SR of a [B, 3, h, w] uint8 batch (h, w padded by replication up to the code grid), returned on the CPU."""
    h, w = lr.shape[-2:]
    x = pad_to_grid(lr.to(device, non_blocking=True).float().div_(255), model.code_patch)
    if getattr(model, "channels_last", False):
        x = x.contiguous(memory_format=torch.channels_last)
    graph = graphed(model, x, amp) if cuda_graphs else None
    if graph is not None:
        y = graph(x)  # the graph's output buffer: read before the next replay
    else:
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            y = model(x)
    y = y[..., : 4 * h, : 4 * w].float().clamp_(0, 1).mul_(255).round_()
    return y.to("cpu", torch.uint8)


def tile_plan(h: int, w: int, tile: int, margin: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """((t0, t1, l0, l1) input window, (top, bottom, left, right) core) for every tile of an h x w image."""
    plan = []
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            window = (max(0, top - margin), min(h, bottom + margin), max(0, left - margin), min(w, right + margin))
            plan.append((window, (top, bottom, left, right)))
    return plan


def super_resolve(
    model: DictSRInference,
    image,
    *,
    tile: int | None = 256,
    margin: int | None = None,
    device=None,
    amp: bool = False,
    batch_tiles: int = 1,
    cuda_graphs: bool = False,
    color_fix: str = "none",
) -> np.ndarray:
    """4x super-resolution of one image -> (4H, 4W, 3) uint8.

    tile: core tile side in LR pixels (None or 0: whole image at once); margin: LR context around each
    tile (default: the receptive field); batch_tiles: tiles of equal size run together (GPU throughput).
    amp: bf16 autocast (see use_bf16). cuda_graphs: replay each tile-batch shape as a captured CUDA graph
    (kept per model for the next images; up to MAX_GRAPHS shapes, the rest run eagerly).
    color_fix: "wavelet" takes the low frequencies from the bicubic LR (not the paper; see color_fix.py).
    """
    check_tiling(tile, batch_tiles)
    array = as_rgb_array(image)
    h, w = array.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"image is {w}x{h}; super_resolve needs at least {MIN_SIZE}x{MIN_SIZE} pixels")
    if h * w > MAX_SR_INPUT_PIXELS:  # its output would be over what dictsr reads (data.io.MAX_PIXELS)
        raise ValueError(f"image is {w}x{h}; super_resolve takes at most {MAX_SR_INPUT_PIXELS / 1e6:.1f} million "
                         "pixels, so that its 4x output stays readable; crop or downscale it")
    device = model_device(model, device)
    if cuda_graphs and torch.device(device).type != "cuda":
        raise ValueError(f"cuda_graphs needs a CUDA device, not {device}")
    lr = torch.from_numpy(array if array.flags.writeable else array.copy()).permute(2, 0, 1).unsqueeze(0)  # CPU
    grid = model.code_patch
    check_color_fix(color_fix)  # before the network runs, not after
    if not tile or (h <= tile and w <= tile):
        return apply_color_fix(color_fix, _run(model, lr, device, amp, cuda_graphs)[0].permute(1, 2, 0).numpy(), array)
    tile = max(grid, tile // grid * grid)
    margin = receptive_margin(model) if margin is None else int(math.ceil(margin / grid) * grid)
    out = torch.empty(1, 3, 4 * h, 4 * w, dtype=torch.uint8)
    groups: dict[tuple[int, int], list] = {}
    for window, core in tile_plan(h, w, tile, margin):
        groups.setdefault((window[1] - window[0], window[3] - window[2]), []).append((window, core))
    for members in groups.values():
        for start in range(0, len(members), max(1, batch_tiles)):
            chunk = members[start : start + max(1, batch_tiles)]
            batch = torch.cat([lr[..., t0:t1, l0:l1] for (t0, t1, l0, l1), _ in chunk])
            srs = _run(model, batch, device, amp, cuda_graphs)
            for sr, ((t0, _, l0, _), (top, bottom, left, right)) in zip(srs, chunk):
                out[0, :, 4 * top : 4 * bottom, 4 * left : 4 * right] = sr[
                    :, 4 * (top - t0) : 4 * (bottom - t0), 4 * (left - l0) : 4 * (right - l0)
                ]
    return apply_color_fix(color_fix, out[0].permute(1, 2, 0).numpy(), array)
