"""What each step trains on: the method's dataset (unpaired patches for DictSR, HR crops degraded on the fly for
the paired baselines) and a loader whose batches are a pure function of (seed, step, rank).

Step s of rank r uses dataset indices ((s * world + r) * batch + i), so a resumed run sees exactly the batches
an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dictsr_core.config import Config, ConfigError


class StepBatches(torch.utils.data.Sampler):
    """Dataset indices of each step of this rank, from start_step up to end_step."""

    def __init__(self, start_step: int, end_step: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start_step, self.end_step, self.batch_size, self.rank, self.world = start_step, end_step, batch_size, rank, world

    def __iter__(self):
        for step in range(self.start_step, self.end_step):
            first = (step * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))

    def __len__(self):
        return max(0, self.end_step - self.start_step)


def baseline_degradation(method: str, data_dir: Path, hr_crop: int = 96, log=print):
    """How a paired baseline makes the LR of each HR crop: bicubic, the data's own synthetic degradation (oracle),
    Real-ESRGAN's second-order degradation, or the kernels and noise estimated from DATA/train_lr."""
    from dictsr_core.data.degradations import data_degradation, make_degradation

    if method == "paired-bicubic":
        return make_degradation("aim", noise_sigma=0.0, jpeg_quality=None)  # bicubic x1/4 to 8 bits, nothing else
    if method == "plain-realesrgan-deg":
        from dictsr_core.data.realesrgan_degradation import RealESRGANDegradation

        return RealESRGANDegradation()
    if method == "plain-noise-injection":
        from dictsr_core.data.noise_injection import estimate_noise_injection

        try:
            return estimate_noise_injection(data_dir, patch_size=max(8, hr_crop // 4), log=log)[0]
        except ValueError as error:
            raise ConfigError(f"method plain-noise-injection: {data_dir / 'train_lr'}: {error}") from None
    degradation = data_degradation(data_dir)
    if degradation is None:
        raise ConfigError(f"method oracle needs the synthetic degradation recorded in {data_dir / 'manifest.json'}; "
                          "real LR data has no true pairs to train an oracle on")
    return degradation


def noise_bank(dataset, t_cfg, rank: int = 0):
    """Noise patches of the HR-down size from the flattest windows of the LR training images (index consistency)."""
    from dictsr_core.data.noise_bank import extract_noise_patches

    patches = extract_noise_patches(dataset.lr_images, t_cfg.hr_crop // 4)
    if rank == 0:
        spread = float(patches.reshape(len(patches), -1).std(1).mean())
        print(f"[train] index consistency: {len(patches)} noise patches from flat windows of "
              f"{len(dataset.lr_images)} LR training images (mean std {spread:.1f} grey levels)", flush=True)
    return patches


def training_dataset(cfg: Config, data_dir: Path, length: int, rank: int = 0):
    """DictSR: unpaired HR / LR patches (with noise patches when index consistency is on); the paired baselines:
    HR crops and their LR made by baseline_degradation."""
    from dictsr_core.data.datasets import DegradedPairs, UnpairedPatches

    t = cfg.train
    if cfg.method != "dictsr":
        say = print if rank == 0 else (lambda _message: None)
        return DegradedPairs(data_dir / "train_hr", baseline_degradation(cfg.method, data_dir, t.hr_crop, say),
                             hr_patch=t.hr_crop, seed=t.seed, length=length)
    dataset = UnpairedPatches(data_dir / "train_hr", data_dir / "train_lr", hr_patch=t.hr_crop,
                              lr_patch=t.lr_crop, seed=t.seed, length=length)
    if t.consistency_weight > 0:
        dataset.noise_patches = noise_bank(dataset, t, rank)
        if t.noise_jpeg:
            from dictsr_core.data.noise_bank import noise_jpeg_quality

            dataset.noise_jpeg_quality, trace = noise_jpeg_quality(dataset.hr_images, dataset.lr_images,
                                                                   dataset.noise_patches)
            if rank == 0:
                print(f"[train] index consistency: the LR photos' JPEG grid reads {trace['real']:.2f} (copies "
                      f"{trace['none']:.2f}): noisy copies get "
                      + (f"JPEG q{dataset.noise_jpeg_quality}" if dataset.noise_jpeg_quality else "no JPEG"), flush=True)
    return dataset


def build_loader(cfg: Config, data_dir: Path, start_step: int, end_step: int, rank: int, world: int,
                 pin_memory: bool) -> DataLoader:
    """The batches of steps start_step..end_step of this rank."""
    t = cfg.train
    dataset = training_dataset(cfg, data_dir, t.total_steps * t.batch_size * world, rank)
    return DataLoader(
        dataset,
        batch_sampler=StepBatches(start_step, end_step, t.batch_size, rank, world),
        num_workers=t.num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if t.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(t.seed),  # keeps the global RNG (restarts) resumable
    )
