"""Index consistency: does a degraded LR image choose the same D_lr content entries as its clean version?

The degradation dictionary exists so that the content index j of a code cell is the same whether the
cell is clean or degraded (eq. 4: the degradation is absorbed by the offset k, not by j). The paper
never measures it. For a validation pair (degraded LR, HR) we compare the content index maps that
super_resolve decodes:

- clean vs degraded: the map of the clean LR (HR downscaled by MATLAB bicubic x1/4, to 8 bits, the
  I_hr_down of training) against the map of the degraded LR;
- two draws: the maps of two independent draws of the same synthetic degradation of HR (only where
  the data folder records its degradation recipe).

Agreement is the fraction of code cells whose content index is equal: 1 for identical maps, about
1/N for unrelated uniform ones.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

DRAW_SEEDS = (1_000_003, 1_000_033)  # degradation seeds of the two extra draws (not the data's own seeds)


def agreement_map(a, b) -> np.ndarray:
    """Boolean map of the cells where two index maps choose the same entry (same shape required)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"index maps differ in shape: {a.shape} vs {b.shape}")
    return a == b


def agreement(a, b) -> float:
    """Fraction of code cells with the same content index, in [0, 1]."""
    same = agreement_map(a, b)
    if same.size == 0:
        raise ValueError("empty index maps have no agreement")
    return float(same.mean())


def clean_lr(hr: np.ndarray) -> np.ndarray:
    """The clean LR of an HR image: MATLAB bicubic x1/4 rounded to uint8 (as training.step.downscale_hr makes I_hr_down)."""
    from dictsr_core.data.resize import imresize_np

    if hr.shape[0] % 4 or hr.shape[1] % 4:
        raise ValueError(f"HR image {hr.shape[1]}x{hr.shape[0]} is not a multiple of 4")
    lr = imresize_np(hr.astype(np.float64) / 255.0, 0.25)
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)


def image_agreement(model, lr: np.ndarray, hr: np.ndarray, *, name: str = "", degradation=None, device=None,
                    tile: int | None = 256, amp: bool = False, keep_maps: bool = False) -> dict:
    """Per-image index agreement: clean vs degraded (always), two draws of `degradation` (when given)."""
    from dictsr_core.inference.index_maps import content_index_map

    def index_map(image):
        return content_index_map(model, image, tile=tile, device=device, amp=amp).numpy()

    degraded_map, clean_map = index_map(lr), index_map(clean_lr(hr))
    out = {"index_agreement": agreement(clean_map, degraded_map), "index_agreement_draws": None}
    if degradation is not None:
        draws = [index_map(degradation(hr, [seed, zlib.crc32(name.encode("utf-8"))])) for seed in DRAW_SEEDS]
        out["index_agreement_draws"] = agreement(*draws)
    if keep_maps:
        out["maps"] = {"clean": clean_map, "degraded": degraded_map}
    return out


@torch.no_grad()
def validation_agreement(model, pairs, *, degradation=None, device=None, tile: int | None = 256, amp: bool = False) -> dict:
    """{name: image_agreement(...)} over validation pairs, and the means (`index_agreement`, `index_agreement_draws`)."""
    per_image = {item["name"]: image_agreement(model, item["lr"], item["hr"], name=item["name"], degradation=degradation,
                                               device=device, tile=tile, amp=amp) for item in pairs}
    summary = {}
    for key in ("index_agreement", "index_agreement_draws"):
        values = [row[key] for row in per_image.values() if row[key] is not None]
        summary[key] = float(np.mean(values)) if values else None
    return {"images": per_image, "summary": summary}


@torch.no_grad()
def agreement_worth(model, lr: np.ndarray, hr: np.ndarray, *, device=None, near: int = 8) -> dict:
    """What agreement would buy on one pair: RGB PSNR of the SR decoded from the degraded LR's own indices and
    from its clean LR's indices (same degraded-LR base where the model has one), and the share of cells whose
    degraded index is among the `near` entries of D_lr nearest to the clean index (a looser agreement)."""
    from dictsr_core.evaluation.metrics import psnr_rgb
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid

    device = model_device(model, device)
    grid = model.code_patch
    x = pad_to_grid(image_tensor(lr, device), grid)
    clean = pad_to_grid(image_tensor(clean_lr(hr), device), grid)
    j_degraded, j_clean = model.indices(x), model.indices(clean)
    h, w = 4 * lr.shape[0], 4 * lr.shape[1]

    def to_uint8(y):
        return y[0, :, :h, :w].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()

    own, swapped = to_uint8(model.decode(j_degraded, x)), to_uint8(model.decode(j_clean, x))
    entries = model.dictionaries.d_lr.float()
    neighbours = torch.cdist(entries, entries).topk(min(near, len(entries)), largest=False).indices  # [N, near]
    close = (neighbours[j_clean.reshape(-1)] == j_degraded.reshape(-1, 1)).any(1).float().mean()
    return {"psnr_own_indices": psnr_rgb(own, hr), "psnr_clean_indices": psnr_rgb(swapped, hr),
            "index_agreement": float((j_clean == j_degraded).float().mean()), f"agreement_near{near}": float(close)}
