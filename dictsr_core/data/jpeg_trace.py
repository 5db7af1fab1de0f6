"""Whether the real LR photos went through JPEG, and at about what quality, from their pixels alone (not in the
paper): what the training probe of `dictsr derive`'s rules must add to its noisy copies for their index agreement
to read like the validation one (docs/recipe.md item 14).

JPEG codes 8x8 luma blocks independently, so the luma steps between pixels that straddle a block boundary are
larger than the steps inside a block. `blockiness`: per axis, the median absolute luma step at the 8-pixel phase
with the largest median over the mean of the other seven phases' medians (1 for no grid; the phase is searched, so a crop that
moved the grid is still found), averaged over both axes, pooled over the images. `estimate_jpeg_quality` compares
the real LR photos' blockiness with that of the probe's noisy copies (clean HR-down plus real LR noise) as they are
and after a JPEG round trip at each quality of a ladder, and returns the nearest: None where the copies as they
are come nearest, else that quality (values in tests/test_data_jpeg_trace.py and docs/recipe.md item 14). The unpaired setting's rule holds: only the LR training images and the HR-down
of the HR training images are read, never a pair.

data/statistics.blockiness (the degradation table's column) is its twin with the grid fixed at phase 0 and means:
right for images whose grid is known to start at the corner, while this one must find a grid in real LR photos that
may have been cropped, and not be moved by a few strong edges on it.
"""

from __future__ import annotations

import numpy as np

from dictsr_core.data.statistics import luma

QUALITY_LADDER = (10, 20, 30, 40, 50, 60, 70, 80, 90)
BLOCK = 8
# a grid weaker than this is not told from chance on a few small photos (24-pixel test images read 1.14-1.30
# without JPEG); photos-aim's real LR reads 3.6 (JPEG q30), photos-ntire's 1.005
MIN_BLOCKINESS = 1.3


def blockiness(images: list[np.ndarray]) -> float:
    """The 8x8 grid strength of uint8 RGB images (module docstring): about 1 without JPEG, larger with."""
    steps = {axis: [[] for _ in range(BLOCK)] for axis in range(2)}
    for image in images:
        y = luma(image)
        if min(y.shape) <= BLOCK:
            raise ValueError(f"blockiness needs images at least {BLOCK + 1} pixels on each side, got {y.shape}")
        for axis, diffs in enumerate((np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T)):
            phase = (np.arange(diffs.shape[1]) + 1) % BLOCK
            for p in range(BLOCK):
                steps[axis][p].append(diffs[:, phase == p].ravel())
    ratios = []
    for axis in range(2):
        # medians: one strong edge that happens to sit on the grid moves a mean, not a median
        medians = np.array([np.median(np.concatenate(parts)) for parts in steps[axis]]) + 1e-6
        top = int(medians.argmax())
        ratios.append(medians[top] / np.delete(medians, top).mean())
    return float(np.mean(ratios))


def estimate_jpeg_quality(real_lr: list[np.ndarray], noisy: list[np.ndarray],
                          ladder: tuple[int, ...] = QUALITY_LADDER) -> tuple[int | None, dict]:
    """(the JPEG quality whose round trip of `noisy` comes nearest the blockiness of `real_lr`, or None where
    `noisy` as it is comes nearest or the real grid is under MIN_BLOCKINESS; {real, none, by_quality} record)."""
    from dictsr_core.data.degradations import jpeg_roundtrip

    real, none = blockiness(real_lr), blockiness(noisy)
    by_quality = {int(q): blockiness([jpeg_roundtrip(image, int(q)) for image in noisy]) for q in ladder}
    best = min(by_quality, key=lambda q: (abs(by_quality[q] - real), q))
    quality = None if real < MIN_BLOCKINESS or abs(none - real) <= abs(by_quality[best] - real) else best
    return quality, {"real": real, "none": none, "by_quality": by_quality, "quality": quality}
