"""Degradation statistics of a prepared data folder: what separates the degraded LR domain from clean LR.

Per image: estimated noise level (wavelet MAD, scikit-image), high-frequency energy (Laplacian std),
JPEG blockiness (jumps across 8x8 block edges relative to jumps inside blocks), and mean saturation.
Computed for the clean LR (bicubic x1/4 of the HR images), the training LR and the validation LR.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dictsr_core.data.io import list_images, read_rgb
from dictsr_core.data.resize import imresize_np

STATISTICS = ("noise_sigma", "laplacian_std", "blockiness", "saturation")
STATISTIC_TITLES = {"noise_sigma": "estimated noise sigma (0-255)", "laplacian_std": "Laplacian std (0-255)",
                    "blockiness": "8x8 blockiness (1 = none)", "saturation": "mean saturation (0-1)"}
GROUPS = ("clean LR (bicubic of train HR)", "train LR (degraded domain)", "val LR")


def luma(image: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma (0-255 scale) of a uint8 RGB image, float64."""
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def laplacian_energy(values: np.ndarray) -> float:
    """Mean square of the 3x3 Laplacian of a 2-D array (a luma) over its interior pixels, where no border rule
    enters: the high-frequency energy that metrics.hf_energy_ratio and the noise-injection kernel estimator compare."""
    from scipy.ndimage import laplace

    return float(np.mean(laplace(np.asarray(values, dtype=np.float64))[1:-1, 1:-1] ** 2))


def blockiness(luma: np.ndarray, block: int = 8) -> float:
    """Mean |horizontal + vertical jump| on 8x8 block boundaries over the mean jump elsewhere (about 1: no blocks)."""
    dx, dy = np.abs(np.diff(luma, axis=1)), np.abs(np.diff(luma, axis=0))
    on_x = (np.arange(dx.shape[1]) % block) == block - 1
    on_y = (np.arange(dy.shape[0]) % block) == block - 1
    if not on_x.any() or not on_y.any():
        return float("nan")
    edge = np.concatenate([dx[:, on_x].ravel(), dy[on_y].ravel()]).mean()
    inner = np.concatenate([dx[:, ~on_x].ravel(), dy[~on_y].ravel()]).mean()
    return float(edge / max(inner, 1e-9))


def image_statistics(image: np.ndarray) -> dict:
    """The STATISTICS of one uint8 RGB image."""
    from scipy.ndimage import laplace
    from skimage.restoration import estimate_sigma

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image_statistics needs an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    y = luma(image)
    rgb = image.astype(np.float64) / 255.0
    saturation = (rgb.max(2) - rgb.min(2)) / np.maximum(rgb.max(2), 1e-9)
    return {
        "noise_sigma": float(estimate_sigma(y / 255.0) * 255.0),
        "laplacian_std": float(laplace(y).std()),
        "blockiness": blockiness(y),
        "saturation": float(saturation.mean()),
    }


def degradation_statistics(data_dir, scale: int = 4) -> list[dict]:
    """One row per image: {"group", "name", "width", "height", *STATISTICS} over the three GROUPS."""
    data_dir = Path(data_dir)
    rows = []
    sources = ((GROUPS[0], data_dir / "train_hr", True), (GROUPS[1], data_dir / "train_lr", False),
               (GROUPS[2], data_dir / "val_lr", False))
    for group, folder, downscale in sources:
        paths = list_images(folder)
        if not paths:
            raise FileNotFoundError(f"{folder}: no images (prepare the data folder first: `dictsr prepare`)")
        for path in paths:
            image = read_rgb(path)
            if downscale:
                image = np.clip(np.round(imresize_np(image, 1 / scale)), 0, 255).astype(np.uint8)
            rows.append({"group": group, "name": path.stem, "width": image.shape[1], "height": image.shape[0],
                         **image_statistics(image)})
    return rows


def statistics_table(rows: list[dict]) -> str:
    """Markdown: per group, the number of images and the mean of each statistic."""
    header = "| group | images | " + " | ".join(STATISTIC_TITLES[s] for s in STATISTICS) + " |"
    lines = [header, "|" + "---|" * (len(STATISTICS) + 2)]
    for group in GROUPS:
        mine = [row for row in rows if row["group"] == group]
        if mine:
            means = [np.nanmean([row[s] for row in mine]) for s in STATISTICS]
            lines.append(f"| {group} | {len(mine)} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines) + "\n"


def split_summary(data_dir) -> list[dict]:
    """Per split folder: image count and size range, plus the manifest's source and degradation recipe."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    rows = []
    for split in ("train_hr", "train_lr", "val_lr", "val_hr"):
        sizes = []
        for path in list_images(data_dir / split):
            with Image.open(path) as handle:
                sizes.append(handle.size)
        rows.append({
            "split": split, "images": len(sizes),
            "min_size": f"{min(w for w, _ in sizes)}x{min(h for _, h in sizes)}" if sizes else "-",
            "max_size": f"{max(w for w, _ in sizes)}x{max(h for _, h in sizes)}" if sizes else "-",
            "source": manifest.get("source", "?"),
            "degradation": json.dumps(manifest.get("degradation")) if manifest else "?",
        })
    return rows
