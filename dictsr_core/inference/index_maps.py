"""Content index maps: which D_lr entry each code cell of an LR image chooses, for an image of any size.

What the dictionary analysis (Fig. 4), the activated-entries count of result records and the index consistency
measure are computed from.
"""

from __future__ import annotations

import math

import torch

from dictsr_core.inference.tiled import as_rgb_array, pad_to_grid, receptive_margin, tile_plan


@torch.no_grad()
def _window_indices(model, lr_uint8: torch.Tensor, device, amp: bool) -> torch.Tensor:
    x = pad_to_grid(lr_uint8.to(device).float().div_(255), model.code_patch)
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
        return model.indices(x)[0].cpu()


def content_index_map(model, image, *, tile: int | None = 256, device=None, amp: bool = False) -> torch.Tensor:
    """The content index map (one D_lr index per code cell, ceil(h/p) x ceil(w/p)) that super_resolve decodes.

    Tiled like super_resolve (same tiles, same receptive-field margin, only each tile's core kept), so it
    is the index map of the whole image however large the image is.
    """
    array = as_rgb_array(image)
    h, w = array.shape[:2]
    device = device or next(model.parameters()).device
    lr = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
    grid = model.code_patch
    if not tile or (h <= tile and w <= tile):
        return _window_indices(model, lr, device, amp)
    tile = max(grid, tile // grid * grid)
    margin = receptive_margin(model)
    out = torch.empty(math.ceil(h / grid), math.ceil(w / grid), dtype=torch.long)
    for (t0, t1, l0, l1), (top, bottom, left, right) in tile_plan(h, w, tile, margin):
        cells = _window_indices(model, lr[..., t0:t1, l0:l1], device, amp)
        rows, cols = math.ceil(bottom / grid) - top // grid, math.ceil(right / grid) - left // grid
        r0, c0 = (top - t0) // grid, (left - l0) // grid
        out[top // grid : top // grid + rows, left // grid : left // grid + cols] = cells[r0 : r0 + rows, c0 : c0 + cols]
    return out
