"""Torch datasets over prepared folders: unpaired HR/LR training patches and paired validation images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dictsr_core.data.io import ImageError, PairingError, list_images, pair_by_stem, read_rgb


def load_folder(folder, min_size: int = 1, skip_small: bool = False) -> tuple[list[Path], list[np.ndarray]]:
    """Decode every image of a folder into memory as HxWx3 uint8.

    An empty folder is an error naming it; an image smaller than ``min_size`` on its short
    side is an ImageError naming the file, or is skipped with a warning when ``skip_small``.
    """
    paths = list_images(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no images found (expected .png/.jpg/... files)")
    kept_paths, images = [], []
    for path in paths:
        image = read_rgb(path)
        if min(image.shape[:2]) < min_size:
            error = ImageError(path, f"image is {image.shape[1]}x{image.shape[0]}, smaller than the {min_size}x{min_size} patch")
            if not skip_small:
                raise error
            warnings.warn(f"skipping {error}", stacklevel=2)
            continue
        kept_paths.append(path)
        images.append(image)
    if not images:
        raise FileNotFoundError(f"{folder}: no image is at least {min_size}x{min_size} pixels")
    return kept_paths, images


def _random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return image[top : top + size, left : left + size]


def _random_dihedral(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 rotations/flips of a square patch, uniformly."""
    patch = np.rot90(patch, k=int(rng.integers(0, 4)))
    if rng.integers(0, 2):
        patch = patch[:, ::-1]
    return patch


def _to_chw_tensor(patch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))


class UnpairedPatches(Dataset):
    """Random HR crops and independent random LR crops from unrelated images (paper 4.1.2).

    Item ``i`` is a pure function of (seed, i): a trainer that resumes at step s with the
    same seed sees the same patches, whatever the number or order of DataLoader workers.
    All images are decoded once here and kept as uint8 arrays, which forked workers share.
    Images smaller than a patch are an error naming the file, unless ``skip_small`` is
    set (then they are left out with a warning).
    """

    def __init__(self, hr_dir, lr_dir, hr_patch: int = 256, lr_patch: int = 64, seed: int = 0,
                 augment: bool = True, length: int = 10**9, skip_small: bool = False, noise_patches=None):
        if hr_patch < 1 or lr_patch < 1:
            raise ValueError(f"patch sizes must be positive, got hr_patch={hr_patch}, lr_patch={lr_patch}")
        self.hr_patch, self.lr_patch = int(hr_patch), int(lr_patch)
        self.seed, self.augment, self.length = int(seed), bool(augment), int(length)
        self.hr_paths, self.hr_images = load_folder(hr_dir, self.hr_patch, skip_small)
        self.lr_paths, self.lr_images = load_folder(lr_dir, self.lr_patch, skip_small)
        self.noise_patches = noise_patches  # [M, s, s, 3] int16 (data/noise_bank.py): items also get a "noise" patch

    def __len__(self) -> int:
        return self.length

    def _patch(self, images: list[np.ndarray], size: int, rng: np.random.Generator) -> torch.Tensor:
        patch = _random_crop(images[int(rng.integers(0, len(images)))], size, rng)
        if self.augment:
            patch = _random_dihedral(patch, rng)
        return _to_chw_tensor(patch)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng([self.seed, int(index)])
        item = {"hr": self._patch(self.hr_images, self.hr_patch, rng),
                "lr": self._patch(self.lr_images, self.lr_patch, rng)}
        if self.noise_patches is not None:
            noise = self.noise_patches[int(rng.integers(0, len(self.noise_patches)))]
            item["noise"] = _to_chw_tensor(_random_dihedral(noise, rng) if self.augment else noise)
        return item


class DegradedPairs(Dataset):
    """HR crops with their own LR made by `degrade(hr_crop, rng)`: training pairs for the paired baselines.

    Like UnpairedPatches, item ``i`` is a pure function of (seed, i).
    """

    def __init__(self, hr_dir, degrade, hr_patch: int = 256, seed: int = 0, augment: bool = True,
                 length: int = 10**9, skip_small: bool = False):
        self.hr_patch, self.seed, self.augment, self.length = int(hr_patch), int(seed), bool(augment), int(length)
        self.degrade = degrade
        self.hr_paths, self.hr_images = load_folder(hr_dir, self.hr_patch, skip_small)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng([self.seed, int(index)])
        hr = _random_crop(self.hr_images[int(rng.integers(0, len(self.hr_images)))], self.hr_patch, rng)
        if self.augment:
            hr = _random_dihedral(hr, rng)
        hr = np.ascontiguousarray(hr)
        return {"hr": _to_chw_tensor(hr), "lr": _to_chw_tensor(self.degrade(hr, rng))}


class PairedImages(Dataset):
    """Whole validation images, LR and HR matched by file stem, sized exactly 1 : scale."""

    def __init__(self, lr_dir, hr_dir, scale: int = 4):
        self.scale = int(scale)
        self.names, self.pairs, self.paths = [], [], []
        for name, lr_path, hr_path in pair_by_stem(lr_dir, hr_dir):
            lr, hr = read_rgb(lr_path), read_rgb(hr_path)
            if (hr.shape[0], hr.shape[1]) != (lr.shape[0] * self.scale, lr.shape[1] * self.scale):
                raise PairingError(
                    f"{lr_path} ({lr.shape[1]}x{lr.shape[0]}) and {hr_path} ({hr.shape[1]}x{hr.shape[0]}) "
                    f"are not exactly 1:{self.scale}")
            self.names.append(name)
            self.pairs.append((lr, hr))
            self.paths.append((lr_path, hr_path))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        lr, hr = self.pairs[index]
        return {"name": self.names[index], "lr": lr, "hr": hr}


def training_hr_images(data_dir) -> list[np.ndarray]:
    """Each train_hr photo, cropped to a multiple of 4."""
    hr = [read_rgb(p) for p in sorted((Path(data_dir) / "train_hr").glob("*.png"))]
    return [im[: im.shape[0] // 4 * 4, : im.shape[1] // 4 * 4] for im in hr]


def training_clean_lr_images(data_dir, hr: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The clean LR (MATLAB bicubic x1/4 to 8 bits, HR-down) of each train_hr photo (of `hr`, training_hr_images
    when None)."""
    from dictsr_core.data.degradations import make_degradation

    downscale = make_degradation("aim", noise_sigma=0.0, jpeg_quality=None)
    return [downscale(im, 0) for im in (training_hr_images(data_dir) if hr is None else hr)]


def training_lr_images(data_dir, clean: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """What the LR side of a model sees of a data folder's training photos: training_clean_lr_images (`clean`, where
    the caller has them already), then each train_lr image."""
    data_dir = Path(data_dir)
    clean = training_clean_lr_images(data_dir) if clean is None else clean
    images = list(clean) + [read_rgb(p) for p in sorted((data_dir / "train_lr").glob("*.png"))]
    if not images:
        raise ValueError(f"{data_dir}: no training images in train_hr/ or train_lr/")
    return images
