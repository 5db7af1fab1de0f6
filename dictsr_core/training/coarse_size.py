"""How coarse a code must be for the degradation to leave its indices alone, chosen from the training data alone
(not in the paper; `dictsr derive --coarsen auto`).

A coarsened run (training/code_coarsening.py) trades LPIPS for index agreement, and the size M that makes the
trade was so far picked by looking at validation scores. Here M is the largest size whose *training* agreement
reaches a target (0.5, the issue's bar): the share of code cells whose content index is the same for the clean
LR of each HR training photo (HR-down) and for that LR with noise of the real LR training photos added (flat
windows of train_lr, data/noise_bank.py: what the index-consistency loss trains on). No validation image is read.
It stands in for the validation agreement only as far as the real degradation is noise that flat windows show;
a blur of the real LR is not in it. It is also a mean over a few photos (20 on photos-ntire, standard error about
0.01): a code "reaches" the target when that mean less AGREEMENT_Z standard errors does (agreement_bound), so that
the photos of another split are likely to agree as often (with the bare mean, the codes kept from two training
seeds on photos-ntire read 0.507 and 0.535 on the training photos, 0.497 and 0.509 on the validation ones).
"""

from __future__ import annotations

import numpy as np
import torch

AGREEMENT_TARGET = 0.5
AGREEMENT_Z = 2.0  # standard errors of its mean over the training photos the agreement must clear the target by
NOISE_SEED = 0


def noisy_copies(images: list[np.ndarray], patches: np.ndarray, seed: int = NOISE_SEED) -> list[np.ndarray]:
    """Each uint8 image plus one tiled draw of the noise patches, rounded and clipped like data.noise_bank.inject."""
    from dictsr_core.data.noise_bank import noise_field

    rng = np.random.default_rng(seed)
    return [np.clip(image.astype(np.int16) + noise_field(*image.shape[:2], patches, rng), 0, 255).astype(np.uint8)
            for image in images]


@torch.no_grad()
def _features(model, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(E_lr features, the LR roughness map where the model's code is texture-gated, else None) of one image."""
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid
    from dictsr_core.model.dictsr import to_signed

    x = pad_to_grid(image_tensor(image, model_device(model)), model.code_patch)
    return model.enc_lr(to_signed(x)), model.dictionaries.roughness_for(x, model.code_patch)


def agreement_by_size(model, clean: list[np.ndarray], noisy: list[np.ndarray], codes: dict, *,
                      per_image: bool = False) -> dict:
    """{size: mean over the images of the share of code cells whose content index is the same for the clean and
    the noisy image} for each {size: kept entries} of `codes` (None keeps all: the model itself, its texture gate
    included where it has one); `per_image`:
    {size: the list of each image's share} instead."""
    if len(clean) != len(noisy) or not clean:
        raise ValueError(f"need matching, non-empty clean and noisy image lists (got {len(clean)} and {len(noisy)})")
    shares = {size: [] for size in codes}
    for a, b in zip(clean, noisy):
        (fa, ra), (fb, rb) = _features(model, a), _features(model, b)
        for size, keep in codes.items():
            ja = model.dictionaries.content_indices(fa, keep, roughness=ra)
            jb = model.dictionaries.content_indices(fb, keep, roughness=rb)
            shares[size].append(float((ja == jb).float().mean()))
    return shares if per_image else {size: float(np.mean(values)) for size, values in shares.items()}


def mean_less_standard_errors(values, z: float) -> float:
    """The mean of the per-image `values` less `z` standard errors of that mean (the mean itself for one image or
    z = 0): what the training photos vouch for, for an agreement here and a split's LPIPS-Alex gain in
    training/code_refinement.py."""
    if not len(values):
        raise ValueError("need at least one image's value")
    if z < 0:
        raise ValueError(f"z {z}: the bound must not lie above the mean")
    values = np.asarray(values, dtype=float)
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean() - z * error)


def agreement_bound(shares: list[float], z: float = AGREEMENT_Z) -> float:
    """What a code's training agreement is taken to reach: mean_less_standard_errors of the per-image `shares`."""
    return mean_less_standard_errors(shares, z)


def agreement_summary(shares: dict, z: float = AGREEMENT_Z) -> tuple[dict, dict]:
    """({key: mean agreement}, {key: agreement_bound}) of agreement_by_size(..., per_image=True)'s `shares`."""
    return ({key: float(np.mean(values)) for key, values in shares.items()},
            {key: agreement_bound(values, z) for key, values in shares.items()})


def largest_size_reaching(agreements: dict, target: float = AGREEMENT_TARGET) -> int | None:
    """The largest size whose agreement (its agreement_bound, as the callers pass it) is at least `target` (None
    when none is)."""
    reaching = [size for size, value in agreements.items() if value >= target]
    return max(reaching) if reaching else None


def size_ladder(entries: int) -> list[int]:
    """The sizes tried: the powers of 2 below N, largest first."""
    return [2**p for p in range(int(np.log2(max(entries - 1, 1))), 0, -1) if 2**p < entries]


def central_window(lr: np.ndarray, hr: np.ndarray, window: int):
    """The central `window` x `window` LR pixels (on the 4-pixel grid) and the HR under them."""
    top, left = (max(0, (side - window) // 2) // 4 * 4 for side in lr.shape[:2])
    lr = np.ascontiguousarray(lr[top : top + window, left : left + window])
    return lr, np.ascontiguousarray(hr[4 * top : 4 * (top + lr.shape[0]), 4 * left : 4 * (left + lr.shape[1])])


@torch.no_grad()
def training_lpips(model, keep: torch.Tensor, noisy: list[np.ndarray], hr: list[np.ndarray], window: int = 64, *,
                   per_image: bool = False) -> float | list[float]:
    """Mean LPIPS-Alex of the SR of each noisy training LR (its central `window` pixels) against its HR photo, with
    the lookup restricted to the entries `keep` (what the coarsened run would output); `per_image`: the list of
    each image's instead."""
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid
    from dictsr_core.model.dictsr import to_signed
    from dictsr_core.perceptual.lpips_models import build_lpips

    device = model_device(model)
    lpips = build_lpips("alex", device=device)
    keep = keep.to(device)
    scores = []
    for lr_image, hr_image in zip(noisy, hr):
        lr_crop, hr_crop = central_window(lr_image, hr_image, window)
        x = pad_to_grid(image_tensor(lr_crop, device), model.code_patch)
        j = model.dictionaries.content_indices(model.enc_lr(to_signed(x)), keep)
        h, w = hr_crop.shape[:2]
        sr = model.decode(keep[j], x)[:, :, :h, :w].float().clamp(0, 1).mul(255).round().div(255)  # as a saved image
        scores.append(float(lpips(to_signed(sr), to_signed(image_tensor(hr_crop, device))).item()))
    return scores if per_image else float(np.mean(scores))


def best_restart(agreement: dict, lpips: dict, target: float = AGREEMENT_TARGET):
    """The restart with the lowest training LPIPS among those whose training agreement (its agreement_bound, as
    the callers pass it) reaches `target`; when none does, the one with the highest agreement: the target comes
    first."""
    eligible = [seed for seed in lpips if agreement[seed] >= target]
    if not eligible:
        return max(lpips, key=lambda seed: (agreement[seed], -seed))
    return min(eligible, key=lambda seed: (lpips[seed], seed))
