"""data/jpeg_trace.py: the JPEG grid found in LR photos from their pixels alone, and the training probe that adds
it to its noisy copies (so the rules' training agreement reads like the validation one on JPEG'd data)."""

import numpy as np
import pytest

from dictsr_core.data.degradations import jpeg_roundtrip
from dictsr_core.data.io import read_rgb, write_rgb
from dictsr_core.data.jpeg_trace import blockiness, estimate_jpeg_quality


def _photos(count=3, side=96, seed=0):
    """Smooth colour ramps with a few edges and sigma-6 noise: content JPEG must work on, no grid of its own."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    out = []
    for k in range(count):
        base = np.stack([80 + 90 * x, 60 + 120 * y, 140 - 60 * x * y], -1) + 40 * (x + k / 7 > 0.6)[..., None]
        out.append(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    return out


def test_blockiness_is_about_one_without_jpeg_and_finds_a_moved_grid():
    photos = _photos()
    assert blockiness(photos) < 1.15
    coded = [jpeg_roundtrip(p, 20) for p in photos]
    assert blockiness(coded) > 1.4
    assert blockiness([c[3:, 5:] for c in coded]) > 1.4  # a crop moved the grid: its phase is searched
    with pytest.raises(ValueError, match="at least 9 pixels"):
        blockiness([np.zeros((4, 4, 3), np.uint8)])


def test_quality_estimate_is_none_without_jpeg_and_near_the_truth_with_it():
    photos, others = _photos(seed=0), _photos(seed=1)  # "real LR" and "probe copies": different photos
    quality, trace = estimate_jpeg_quality(photos, others)
    assert quality is None and trace["quality"] is None and trace["real"] < trace["by_quality"][90]
    quality, trace = estimate_jpeg_quality([jpeg_roundtrip(p, 30) for p in photos], others)
    assert quality in (20, 30, 40) and set(trace["by_quality"]) == {10, 20, 30, 40, 50, 60, 70, 80, 90}


def test_the_probe_adds_the_jpeg_it_finds_and_the_derivation_records_it(tiny_run, noisy_data, tmp_path):
    import shutil

    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.training.code_coarsening import derive_coarse_run, training_probe

    cfg = load_checkpoint(tiny_run / "checkpoints" / "last.pt")["config"]
    plain = training_probe(noisy_data, cfg)
    assert plain["jpeg_quality"] is None
    coded = tmp_path / "data"
    shutil.copytree(noisy_data, coded)
    for path in (coded / "train_lr").glob("*.png"):
        write_rgb(path, jpeg_roundtrip(read_rgb(path), 20))
    probe = training_probe(coded, cfg)
    assert probe["jpeg_quality"] is not None
    assert any(not np.array_equal(a, b) for a, b in zip(probe["noisy"], plain["noisy"]))
    out = tmp_path / "c"
    assert derive_coarse_run(tiny_run, out, 4, coded, target=0.05, restarts=2, log=lambda line: None)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["derived_from"]["probe_jpeg"] == probe["jpeg_quality"]
