"""A coarse code made finer where it pays, chosen from the training data alone (not in the paper; `dictsr derive
--coarsen M --split`).

k-means coarsening (training/code_coarsening.py) gives every region of the lookup space the same number of kept
entries. On flat content that is what index consistency wants, but a textured photo can need more entries than
the degradation lets a uniform code keep (photos-ntire: 8 entries win on flat photos and lose detail on
textured ones). Here the kept entries grow one greedy split at a time: each kept entry in turn is replaced by
two (2-means of the fine entries whose cells it stands for, model.dictionaries.split_kept_entry), and the split
kept is the one with the lowest LPIPS-Alex on the noisy training images among those whose training index
agreement still reaches the target by `agreement_z` standard errors (training/coarse_size.py's probe and
agreement_bound: the clean LR of every HR training photo, and the same with real LR noise added). The growth
stops when no split both keeps the agreement and lowers the training LPIPS-Alex by more than `z` standard errors
of its mean paired (per-image) difference: a split has to show on the training photos that it helps, since each
one costs agreement. No validation image is read.
"""

from __future__ import annotations

import numpy as np
import torch

from dictsr_core.training.coarse_size import AGREEMENT_Z, mean_less_standard_errors

SIGNIFICANCE_Z = 2.0  # a split's training LPIPS-Alex gain, in standard errors of the mean paired difference
MAX_SPLITS = 8


def significant_gain(before: list[float], after: list[float], z: float = SIGNIFICANCE_Z) -> bool:
    """Whether the per-image scores `after` are lower than `before` on average by more than `z` standard errors of
    the mean paired difference (with z = 0: lower at all)."""
    if len(before) != len(after) or not before:
        raise ValueError(f"need matching, non-empty per-image scores (got {len(before)} and {len(after)})")
    return mean_less_standard_errors(np.asarray(before, dtype=float) - np.asarray(after, dtype=float), z) > 0


def refine_code(model, chosen: torch.Tensor, keep: torch.Tensor, probe: dict, target: float, *,
                max_entries: int | None = None, max_splits: int = MAX_SPLITS, z: float = SIGNIFICANCE_Z,
                agreement_z: float = AGREEMENT_Z, log=print) -> tuple[torch.Tensor, dict]:
    """(the grown kept entries, the record of every step: {target, z, agreement_z, steps: [{entries, split (None
    for the start), agreement, agreement_bound, lpips_alex, tried}]}) from the kept entries `keep` of `model`'s
    fine code. `chosen`: the fine indices the training images choose (what the clusters were fit on); `probe`:
    training_probe's."""
    from dictsr_core.model.dictionaries import split_kept_entry
    from dictsr_core.training.coarse_size import agreement_by_size, agreement_summary, training_lpips

    entries = model.dictionaries.content_entries
    max_entries = entries.shape[0] if max_entries is None else int(max_entries)
    if not 0 < target <= 1:
        raise ValueError(f"target index agreement {target}: a fraction in (0, 1]")
    if z < 0 or agreement_z < 0:
        raise ValueError(f"z {z}, agreement_z {agreement_z}: a split must not be allowed to raise the training "
                         "LPIPS-Alex, nor its agreement be counted above its mean")

    def scores_of(kept):
        return training_lpips(model, kept, probe["noisy"], probe["hr"], per_image=True)

    def agreements_of(codes):
        return agreement_summary(agreement_by_size(model, probe["clean"], probe["noisy"], codes, per_image=True),
                                 agreement_z)

    keep = keep.detach().clone()
    agreements, bounds = agreements_of({0: keep})
    agreement, bound = agreements[0], bounds[0]
    scores = scores_of(keep)
    steps = [{"entries": len(keep), "split": None, "agreement": agreement, "agreement_bound": bound,
              "lpips_alex": float(np.mean(scores)), "tried": 0}]
    log(f"[split] {len(keep)} entries: training agreement {agreement:.3f} (less {agreement_z:g} SE: {bound:.3f}), "
        f"LPIPS-Alex {np.mean(scores):.4f}")
    for _ in range(max_splits):
        if len(keep) + 1 > max_entries:
            break
        candidates = {int(keep[i]): grown for i in range(len(keep))
                      if (grown := split_kept_entry(entries, chosen, keep, i)) is not None}
        if not candidates:
            break
        agreements, bounds = agreements_of(candidates)
        eligible = [entry for entry in candidates if bounds[entry] >= target]
        tried = {entry: scores_of(candidates[entry]) for entry in eligible}
        best = min(tried, key=lambda entry: (np.mean(tried[entry]), entry)) if tried else None
        if best is None or not significant_gain(scores, tried[best], z):
            log(f"[split] stop at {len(keep)} entries: of {len(candidates)} splits, {len(eligible)} keep the "
                "agreement" + (f"; the best reaches LPIPS-Alex {np.mean(tried[best]):.4f}, not {z:g} standard "
                               "errors better" if best is not None else ""))
            break
        keep, scores = candidates[best], tried[best]
        steps.append({"entries": len(keep), "split": best, "agreement": agreements[best],
                      "agreement_bound": bounds[best], "lpips_alex": float(np.mean(scores)), "tried": len(candidates)})
        log(f"[split] {len(keep)} entries (entry {best} split): training agreement {agreements[best]:.3f} (less "
            f"{agreement_z:g} SE: {bounds[best]:.3f}), LPIPS-Alex {np.mean(scores):.4f}")
    return keep, {"target": float(target), "z": float(z), "agreement_z": float(agreement_z), "steps": steps}
