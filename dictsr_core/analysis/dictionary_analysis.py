"""What the learned dictionaries look like (the paper's Fig. 4): entry usage on validation LR images,
lookup-space embeddings of validation code cells, a 2-D map of D_lr with its D_deg offsets, and D_hr
entries decoded into HR patches. Computations only; the plots live in dictsr_core/analysis/figures/dictionaries.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dictsr_core.inference.index_maps import content_index_map
from dictsr_core.inference.tiled import as_rgb_array, image_tensor, model_device, pad_to_grid
from dictsr_core.model.dictionaries import to_rows
from dictsr_core.model.dictsr import to_signed

EMBED_METHODS = ("umap", "pca")


def entry_usage(model, lr_images, tile: int = 256, device=None) -> np.ndarray:
    """[N] how many code cells of the LR images chose each D_lr content entry (the index maps super_resolve decodes)."""
    counts = torch.zeros(model.dictionaries.entries, dtype=torch.long)
    for image in lr_images:
        index_map = content_index_map(model, image, tile=tile, device=device)
        counts += torch.bincount(index_map.reshape(-1).cpu(), minlength=counts.numel())
    return counts.numpy()


@torch.no_grad()
def lr_patch_embeddings(model, lr_images, max_points: int = 2000, seed: int = 0, device=None):
    """Lookup-space rows z = P_in(E_lr(x)) of every code cell of the LR images (fp32) and the content entry
    each one chose, subsampled to max_points (seeded) so a 2-D map of them stays legible and cheap.

    Entries follow the model's own inference rule (eq. 4, or the joint (j, k) rule when joint_lookup is set),
    so they agree with entry_usage and with what super_resolve decodes.
    """
    device = model_device(model, device)
    dicts = model.dictionaries
    zs, entries = [], []
    for image in lr_images:
        array = as_rgb_array(image)
        x = image_tensor(array, device)
        with torch.autocast(device_type=device.type, enabled=False):
            x = pad_to_grid(x, model.code_patch)
            features = model.enc_lr(to_signed(x)).float()
            zs.append(to_rows(dicts.lr_embedding(features)).cpu())
            entries.append(dicts.content_indices(features, roughness=dicts.roughness_for(x, model.code_patch))
                           .reshape(-1).cpu())
    z, chosen = torch.cat(zs).numpy(), torch.cat(entries).numpy()
    if z.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(z.shape[0], size=max_points, replace=False))
        z, chosen = z[keep], chosen[keep]
    return z.astype(np.float32), chosen.astype(np.int64)


def embed_2d(points: np.ndarray, method: str = "umap", seed: int = 0, n_neighbors: int = 15,
             min_dist: float = 0.1) -> np.ndarray:
    """[M, d] -> [M, 2] with ONE fit, so everything that must share a map is embedded together.

    "umap" is what the paper's Fig. 4 shows; "pca" (an SVD) is exact and fast, for tests and quick looks.
    """
    if method not in EMBED_METHODS:
        raise ValueError(f"method={method!r}: choose one of {', '.join(EMBED_METHODS)}")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must be an [M, d] array, got shape {points.shape}")
    if points.shape[0] < 3:
        raise ValueError(f"points: a 2-D embedding needs at least 3 points, got {points.shape[0]}")
    if not np.isfinite(points).all():
        raise ValueError(f"points: {int((~np.isfinite(points)).sum())} values are NaN or infinite")
    if method == "pca":
        if points.shape[1] == 2:
            return points.astype(np.float32)
        centred = points - points.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        if xy.shape[1] < 2:  # d == 1: the second axis carries nothing
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        return xy.astype(np.float32)
    import umap  # lazily: numba compiles it on first import (~35 s per process)

    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(n_neighbors, points.shape[0] - 1),
                        min_dist=min_dist)
    return np.asarray(reducer.fit_transform(points), dtype=np.float32)


@dataclass
class DictionaryMap:
    """D_lr entries, validation code cells and degradation offsets embedded in one shared 2-D map."""

    method: str  # "umap" | "pca"
    entry_xy: np.ndarray  # [N, 2] D_lr content entries
    usage: np.ndarray  # [N] uses on the validation LR images
    patch_xy: np.ndarray  # [M, 2] validation code cells F_lr
    patch_entries: np.ndarray  # [M] the content entry each code cell chose
    offset_entries: np.ndarray  # [E] the most-used entries whose offsets are shown (empty without D_deg)
    offset_xy: np.ndarray  # [E, K, 2] D_lr(j) + D_deg(j, k)
    offset_norms: np.ndarray  # [E, K] ||D_deg(j, k)|| in the lookup space (2-D maps distort distances)
    entry_spacing: np.ndarray  # [E] lookup-space distance from D_lr(j) to its nearest other D_lr entry
    hierarchical: bool  # False for ablation A1 (no D_deg)


@torch.no_grad()
def dictionary_map(model, lr_images, *, max_points: int = 2000, offset_entries: int = 4, method: str = "umap",
                   seed: int = 0, tile: int = 256, device=None) -> DictionaryMap:
    """Everything Fig. 4 plots, embedded by a single embed_2d fit so entries, cells and offsets share axes."""
    lr_images = list(lr_images)
    dicts = model.dictionaries
    d_lr = dicts.content_entries.detach().float().cpu().numpy()
    usage = entry_usage(model, lr_images, tile=tile, device=device)
    z, patch_entries = lr_patch_embeddings(model, lr_images, max_points=max_points, seed=seed, device=device)
    if dicts.d_deg is not None and offset_entries > 0:
        chosen = np.argsort(-usage, kind="stable")[: min(offset_entries, len(usage))]
        offsets = dicts.d_deg.detach().float().cpu().numpy()[chosen]  # [E, K, d]
        offset_points = d_lr[chosen][:, None, :] + offsets
        gaps = np.linalg.norm(d_lr[chosen][:, None, :] - d_lr[None, :, :], axis=-1)  # [E, N]
        gaps[np.arange(len(chosen)), chosen] = np.inf
        spacing = gaps.min(1) if len(d_lr) > 1 else np.full(len(chosen), np.nan)
        norms = np.linalg.norm(offsets, axis=-1)
    else:
        chosen = np.zeros(0, dtype=np.int64)
        offset_points = np.zeros((0, 0, d_lr.shape[1]), dtype=np.float32)
        spacing, norms = np.zeros(0), np.zeros((0, 0))
    e, k = offset_points.shape[:2]
    xy = embed_2d(np.concatenate([d_lr, z, offset_points.reshape(e * k, d_lr.shape[1])]), method=method, seed=seed)
    n, m = len(d_lr), len(z)
    return DictionaryMap(
        method=method, entry_xy=xy[:n], usage=usage, patch_xy=xy[n : n + m], patch_entries=patch_entries,
        offset_entries=chosen.astype(np.int64), offset_xy=xy[n + m :].reshape(e, k, 2),
        offset_norms=norms.astype(np.float32), entry_spacing=spacing.astype(np.float32),
        hierarchical=dicts.d_deg is not None,
    )


@torch.no_grad()
def decode_hr_atoms(model, entries=None, context: int = 3, batch: int = 256) -> np.ndarray:
    """[n, P, P, 3] uint8: each D_hr entry decoded into its HR patch (P = 4 * code_patch).

    A lone code cell would be decoded next to zero padding; a context x context grid of the same index
    and a centre crop shows the patch as it looks inside a region that uses it.
    """
    if context < 1 or context % 2 == 0:
        raise ValueError(f"context={context}: must be a positive odd number (the crop is the centre cell)")
    n_entries = model.dictionaries.entries
    entries = torch.arange(n_entries) if entries is None else torch.as_tensor(np.asarray(entries), dtype=torch.long)
    if entries.numel() and (entries.min() < 0 or entries.max() >= n_entries):
        raise ValueError(f"entries must lie in [0, {n_entries}), got {entries.min().item()}..{entries.max().item()}")
    device = model_device(model)
    p = 4 * model.code_patch
    start = p * (context // 2)
    atoms = []
    for chunk in entries.reshape(-1).split(batch):
        grid = chunk.view(-1, 1, 1).expand(-1, context, context).to(device)
        image = model.decode(grid).float()[:, :, start : start + p, start : start + p]
        atoms.append(image.clamp(0, 1).mul(255).round().to("cpu", torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(atoms).numpy() if atoms else np.zeros((0, p, p, 3), dtype=np.uint8)
