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
1/N for unrelated uniform ones. It can be met by making the code uninformative (a one-entry code agrees
everywhere), so no target reads it. What the records report instead, pooled over every code cell of the split:

- Cohen's kappa: (agreement - chance) / (1 - chance), chance = sum_k p_clean(k) p_degraded(k) from the two maps'
  entry-usage marginals: 0 for maps no better than chance whatever the code size, None where chance is 1 (both
  maps use the same single entry: nothing to agree on);
- the mutual information between the two maps, in bits: how much of the clean index the degraded one tells;
- the index cost: LPIPS-Alex of the SR decoded from the degraded LR's own indices minus that of the SR decoded
  from its clean LR's indices (agreement_worth): what index instability costs the picture.

Why it is what it is (cell_geometry), in units of the median distance between neighbouring D_lr entries:
how far the degradation moves a cell's lookup-space embedding (`index_shift`), against how far a clean
embedding sits from the boundary of its cell (`index_margin`). A shift far above the margin leaves the
degraded cell in a neighbouring entry's cell, whatever the decoder does.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

DRAW_SEEDS = (1_000_003, 1_000_033)  # degradation seeds of the two extra draws (not the data's own seeds)
# what perfect agreement would buy: per-image keys of image_agreement <- agreement_worth's (one whole-image pass,
# so "own" is the reference for "clean", not the tiled super_resolve of the evaluation)
WORTH_KEYS = {"psnr_rgb_own_indices": "psnr_own_indices", "psnr_rgb_clean_indices": "psnr_clean_indices",
              "lpips_alex_own_indices": "lpips_own_indices", "lpips_alex_clean_indices": "lpips_clean_indices",
              "index_agreement_near8": "agreement_near8"}
SUMMARY_KEYS = ("index_agreement", "index_agreement_draws", "index_shift", "index_margin", *WORTH_KEYS,
                "index_cost_lpips_alex")
POOLED_KEYS = ("index_kappa", "index_mi_bits")  # over all cells of the split, not means of per-image values


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


def _pair_counts(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(joint counts of the distinct (a, b) pairs, counts of their a, counts of their b), flattened maps."""
    a, b = np.asarray(a).reshape(-1).astype(np.int64), np.asarray(b).reshape(-1).astype(np.int64)
    if a.shape != b.shape:
        raise ValueError(f"index maps differ in size: {a.size} vs {b.size}")
    if a.size == 0:
        raise ValueError("empty index maps")
    _, a_codes, a_counts = np.unique(a, return_inverse=True, return_counts=True)
    _, b_codes, b_counts = np.unique(b, return_inverse=True, return_counts=True)
    pairs, joint = np.unique(a_codes * len(b_counts) + b_codes, return_counts=True)
    return joint, a_counts[pairs // len(b_counts)], b_counts[pairs % len(b_counts)]


def cohen_kappa(a, b) -> float | None:
    """Cohen's kappa of two index maps over the same cells; None where chance agreement is 1 (one shared entry)."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"index maps must be non-empty and of one size: {a.size} vs {b.size}")
    observed = float(np.mean(a == b))
    values_a, counts_a = np.unique(a, return_counts=True)
    values_b, counts_b = np.unique(b, return_counts=True)
    shared, in_a, in_b = np.intersect1d(values_a, values_b, return_indices=True)
    chance = float(np.sum(counts_a[in_a].astype(np.float64) * counts_b[in_b]) / a.size ** 2)
    if chance >= 1.0 - 1e-12:
        return None
    return (observed - chance) / (1.0 - chance)


def mutual_information_bits(a, b) -> float:
    """Mutual information between two index maps over the same cells, in bits (plug-in estimate)."""
    joint, count_a, count_b = _pair_counts(a, b)
    n = joint.sum()
    return float(np.sum(joint / n * np.log2(joint * n / (count_a.astype(np.float64) * count_b))))


def entry_spacing(entries: torch.Tensor) -> float:
    """Median distance from a dictionary entry to its nearest other entry."""
    entries = entries.detach().float()
    gaps = torch.cdist(entries, entries)
    gaps.fill_diagonal_(float("inf"))
    return float(gaps.min(1).values.median())


def cell_geometry(z_clean: torch.Tensor, z_degraded: torch.Tensor, entries: torch.Tensor,
                  chunk_elements: int = 1 << 24) -> dict:
    """Medians over cells, in entry spacings: `index_shift` ||z_degraded - z_clean||, `index_margin` the distance
    from z_clean to the boundary of its nearest entry's cell (min over the other entries i of
    (||z - e_i||^2 - ||z - e_1||^2) / 2||e_i - e_1||, the distance to each bisecting hyperplane). At most
    `chunk_elements` entry differences [rows, N, d] are held at once, as in model.dictionaries.nearest_entry."""
    entries = entries.detach().float()
    z_clean, z_degraded = z_clean.detach().float(), z_degraded.detach().float()
    if z_clean.shape != z_degraded.shape:
        raise ValueError(f"embeddings differ in shape: {tuple(z_clean.shape)} vs {tuple(z_degraded.shape)}")
    spacing = max(entry_spacing(entries), 1e-12)
    margins = []
    chunk = max(1, chunk_elements // entries.numel())
    for start in range(0, len(z_clean), chunk):
        z = z_clean[start : start + chunk]
        d2 = torch.cdist(z, entries).pow(2)
        nearest = d2.argmin(1)
        gap = (entries.unsqueeze(0) - entries[nearest].unsqueeze(1)).norm(dim=2)  # [t, N]
        bisector = (d2 - d2.gather(1, nearest[:, None])) / (2 * gap)
        bisector[torch.arange(len(z)), nearest] = float("inf")
        margins.append(bisector.min(1).values)
    shift = (z_degraded - z_clean).norm(dim=1)
    return {"index_shift": float(shift.median()) / spacing, "index_margin": float(torch.cat(margins).median()) / spacing}


def lookup_embedding(model, image: np.ndarray, window: int = 256) -> torch.Tensor:
    """Lookup-space embeddings [cells, d] of the central window x window LR pixels of an image (whole when smaller)."""
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid
    from dictsr_core.model.dictionaries import to_rows
    from dictsr_core.model.dictsr import to_signed

    h, w = image.shape[:2]
    top, left = max(0, (h - window) // 2), max(0, (w - window) // 2)
    crop = np.ascontiguousarray(image[top : top + window, left : left + window])
    x = pad_to_grid(image_tensor(crop, model_device(model)), model.code_patch)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return to_rows(model.dictionaries.lr_embedding(model.enc_lr(to_signed(x))))


def clean_lr(hr: np.ndarray) -> np.ndarray:
    """The clean LR of an HR image: MATLAB bicubic x1/4 rounded to uint8 (as training.step.downscale_hr makes I_hr_down)."""
    from dictsr_core.data.resize import imresize_np

    if hr.shape[0] % 4 or hr.shape[1] % 4:
        raise ValueError(f"HR image {hr.shape[1]}x{hr.shape[0]} is not a multiple of 4")
    lr = imresize_np(hr.astype(np.float64) / 255.0, 0.25)
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)


def image_agreement(model, lr: np.ndarray, hr: np.ndarray, *, name: str = "", degradation=None, device=None,
                    tile: int | None = 256, amp: bool = False, keep_maps: bool = False, worth: bool = True) -> dict:
    """Per-image index agreement: clean vs degraded (always), two draws of `degradation` (when given); with `worth`
    and a clean LR of the degraded LR's size, the cell geometry and what perfect agreement would buy (WORTH_KEYS)."""
    from dictsr_core.inference.index_maps import content_index_map

    def index_map(image):
        return content_index_map(model, image, tile=tile, device=device, amp=amp).numpy()

    clean = clean_lr(hr)
    degraded_map, clean_map = index_map(lr), index_map(clean)
    out = {"index_agreement": agreement(clean_map, degraded_map), "index_agreement_draws": None}
    if clean.shape == lr.shape:
        out.update(cell_geometry(lookup_embedding(model, clean), lookup_embedding(model, lr), model.dictionaries.content_entries))
        if worth:
            found = agreement_worth(model, lr, hr, device=device, lpips=True)
            out.update({key: found[source] for key, source in WORTH_KEYS.items()})
            out["index_cost_lpips_alex"] = found["lpips_own_indices"] - found["lpips_clean_indices"]
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
                                               device=device, tile=tile, amp=amp, keep_maps=True) for item in pairs}
    maps = [row.pop("maps") for row in per_image.values()]
    clean = np.concatenate([m["clean"].reshape(-1) for m in maps])
    degraded = np.concatenate([m["degraded"].reshape(-1) for m in maps])
    summary = {**mean_summary(per_image.values()), "index_kappa": cohen_kappa(clean, degraded),
               "index_mi_bits": mutual_information_bits(clean, degraded)}
    return {"images": per_image, "summary": summary}


def mean_summary(rows) -> dict:
    """{key: mean over the rows that have it} for SUMMARY_KEYS (None where no row has it)."""
    summary = {}
    for key in SUMMARY_KEYS:
        values = [row[key] for row in rows if row.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
    return summary


@torch.no_grad()
def agreement_worth(model, lr: np.ndarray, hr: np.ndarray, *, device=None, near: int = 8, lpips: bool = False,
                    window: int = 128) -> dict:
    """What agreement would buy on one pair: RGB PSNR (and LPIPS-Alex, with `lpips`) of the SR decoded from the
    degraded LR's own indices and from its clean LR's indices (same degraded-LR base where the model has one), and
    the share of cells whose degraded index is among the `near` entries of D_lr nearest to the clean index (a
    looser agreement). The clean indices are an oracle: a perfect index consistency can buy no more than this.
    Measured on the central `window` x `window` LR pixels (on the 4-pixel grid; the whole pair when smaller)."""
    from dictsr_core.evaluation.metrics import lpips_distance, psnr_rgb
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid
    from dictsr_core.training.coarse_size import central_window

    if hr.shape[:2] != (4 * lr.shape[0], 4 * lr.shape[1]):
        raise ValueError(f"HR {hr.shape[1]}x{hr.shape[0]} is not 4x LR {lr.shape[1]}x{lr.shape[0]}")
    lr, hr = central_window(lr, hr, window)
    device = model_device(model, device)
    grid = model.code_patch
    x = pad_to_grid(image_tensor(lr, device), grid)
    clean = pad_to_grid(image_tensor(clean_lr(hr), device), grid)
    j_degraded, j_clean = model.indices(x), model.indices(clean)
    h, w = 4 * lr.shape[0], 4 * lr.shape[1]

    def to_uint8(y):
        return y[0, :, :h, :w].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()

    own, swapped = to_uint8(model.decode(j_degraded, x)), to_uint8(model.decode(j_clean, x))
    entries = model.dictionaries.content_entries.float()
    neighbours = torch.cdist(entries, entries).topk(min(near, len(entries)), largest=False).indices  # [N, near]
    close = (neighbours[j_clean.reshape(-1)] == j_degraded.reshape(-1, 1)).any(1).float().mean()
    out = {"psnr_own_indices": psnr_rgb(own, hr), "psnr_clean_indices": psnr_rgb(swapped, hr),
           "index_agreement": float((j_clean == j_degraded).float().mean()), f"agreement_near{near}": float(close)}
    if lpips:
        out.update(lpips_own_indices=lpips_distance(own, hr, device=device),
                   lpips_clean_indices=lpips_distance(swapped, hr, device=device))
    return out
