"""Code coarsening: how much of a trained D_lr code's fineness does its decoder use, and what does that fineness
cost the index agreement?

A probe of a finished model, no training: the N content entries are grouped into M clusters (k-means in the
lookup space over the entries the training images choose, each choice one point: the clean LR of every HR
training photo and every LR training image; or, as asked, the validation images'), every code cell is decoded
with its cluster's representative (the entry nearest the centroid, with that entry's own D_hr atom), and the
agreement of the *cluster* maps of the clean and the degraded LR is measured beside the SR's PSNR / LPIPS-Alex.
M = N is the model itself; M = 1 decodes one atom everywhere (the low-pass base plus a constant detail).
It is why ablation R8 (a code of 8 entries) exists: for the cpu recipe's 1024-entry photos-aim model, 8 clusters
keep nearly all of its LPIPS-Alex while the degradation stops moving most indices (docs/recipe.md item 6).
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_SIZES = (1024, 256, 64, 32, 16, 8, 4, 2, 1)


@torch.no_grad()
def coarsening_curve(model, pairs, sizes=DEFAULT_SIZES, *, fit_images=None, window: int = 128, lpips: bool = True,
                     device=None, seed: int = 0) -> dict:
    """For each M in `sizes`: mean index agreement (clean vs degraded LR, of the cluster maps), RGB PSNR and
    LPIPS-Alex of the SR decoded from the degraded LR's clusters, over the validation `pairs` (dicts with name, lr,
    hr; central `window` LR pixels of each). The clusters are fit on the entries `fit_images` (LR uint8 arrays,
    e.g. training_lr_images) choose, or the validation pairs' when None. Sizes above N count as N.
    {"entries": N, "fit": "images" | "validation", "rows": [...]}."""
    from dictsr_core.evaluation.index_consistency import clean_lr
    from dictsr_core.evaluation.metrics import lpips_distance, psnr_rgb
    from dictsr_core.inference.index_maps import content_index_map
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid
    from dictsr_core.model.dictionaries import coarse_code
    from dictsr_core.training.coarse_size import central_window

    device = model_device(model, device)
    entries = model.dictionaries.content_entries
    cells = []
    for item in pairs:
        lr, hr = central_window(item["lr"], item["hr"], window)
        if hr.shape[:2] != (4 * lr.shape[0], 4 * lr.shape[1]):
            raise ValueError(f"{item.get('name', '?')}: HR {hr.shape[1]}x{hr.shape[0]} is not 4x LR {lr.shape[1]}x{lr.shape[0]}")
        x = pad_to_grid(image_tensor(lr, device), model.code_patch)
        clean = pad_to_grid(image_tensor(clean_lr(hr), device), model.code_patch)
        cells.append((x, hr, model.indices(x), model.indices(clean)))
    if not cells:
        raise ValueError("a coarsening curve needs at least one validation pair")
    if fit_images is None:
        chosen = torch.cat([torch.cat([own.reshape(-1), clean.reshape(-1)]) for _, _, own, clean in cells])
    else:
        chosen = torch.cat([content_index_map(model, image, tile=None, device=device).reshape(-1).to(device)
                            for image in fit_images])
    rows = []
    for size in sorted({min(int(s), entries.shape[0]) for s in sizes}, reverse=True):
        code = coarse_code(entries, chosen, size, seed=seed)
        agree, psnr, lp = [], [], []
        for x, hr, own, clean in cells:
            mine = code.group[own]
            agree.append(float((mine == code.group[clean]).float().mean()))
            h, w = hr.shape[:2]
            sr = model.decode(code.representative[mine], x)[0, :, :h, :w].float().clamp(0, 1)
            sr = sr.mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
            psnr.append(psnr_rgb(sr, hr))
            if lpips:
                lp.append(lpips_distance(sr, hr, device=device))
        rows.append({"clusters": size, "index_agreement": float(np.mean(agree)), "psnr_rgb": float(np.mean(psnr)),
                     "lpips_alex": float(np.mean(lp)) if lpips else None})
    return {"entries": int(entries.shape[0]), "images": len(cells), "window": window,
            "fit": "validation" if fit_images is None else "images", "fit_cells": int(chosen.numel()), "rows": rows}


def coarsening_markdown(curve: dict, label: str) -> str:
    """The curve as a Markdown table."""
    fit = {"validation": "the validation images' own choices (a leak: a probe only)",
           "images": f"{curve['fit_cells']} code cells of {curve.get('fit_label', 'other images')}"}[curve["fit"]]
    lines = [f"Code coarsening of {label} (N = {curve['entries']}; {curve['images']} validation pairs, central "
             f"{curve['window']}x{curve['window']} LR pixels): the N entries in M k-means clusters fit on the entries "
             f"chosen by {fit}, each cell decoded with its cluster's representative entry; index agreement of the "
             "cluster maps, clean vs degraded LR. Written by `dictsr coarsen`; do not edit.", "",
             "| clusters M | index agreement | PSNR (RGB) | LPIPS-Alex |", "|---|---|---|---|"]
    for row in curve["rows"]:
        lp = "-" if row["lpips_alex"] is None else f"{row['lpips_alex']:.4f}"
        lines.append(f"| {row['clusters']}{' (the model)' if row['clusters'] == curve['entries'] else ''} | "
                     f"{row['index_agreement']:.2f} | {row['psnr_rgb']:.2f} | {lp} |")
    return "\n".join(lines) + "\n"
