"""Build `.gpu/`, what `scripts/gpu_call.sh` carries to the device machine (no network there, 64 MiB a call):

    .gpu/whl/                  lpips and spandrel wheels (pure Python; their own needs are in the device image)
    .gpu/cache/                the verified fp16 VGG16 copy for the LPIPS training term (half the size), xz-compressed
                               (3 MB less; gpu_call.sh unpacks it into /tmp)
    .gpu/data/photos-aim/      train_hr (lossless WebP, checked pixel for pixel), train_lr, val_lr; no val_hr:
                               scoring happens here, on data/photos-aim

    python scripts/make_gpu_carry.py            # prepares data/photos-aim first if it is missing (~2 min)
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ("lpips==0.1.4", "spandrel==0.4.2")
LIMIT_MB = 63  # the carry and the tracked tree together, within the call's 64 MiB


def lossless_webp(source: Path, target: Path) -> None:
    image = Image.open(source).convert("RGB")
    image.save(target, format="WEBP", lossless=True, quality=100, method=6)
    if not np.array_equal(np.asarray(Image.open(target).convert("RGB")), np.asarray(image)):
        raise RuntimeError(f"{target}: WebP round trip changed pixels")


def main() -> None:
    carry = ROOT / ".gpu"
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.parent.is_dir() and "/.gpu/" not in (exclude.read_text().split() if exclude.exists() else []):
        with open(exclude, "a") as handle:  # never committed, and not sent as untracked files either
            handle.write("/.gpu/\n")
    shutil.rmtree(carry, ignore_errors=True)

    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "py", "--platform", "any",
                    "-d", str(carry / "whl"), *WHEELS], check=True)

    from dictsr_core.perceptual.weights import export_half_copies

    for path in export_half_copies(carry / "cache", names=("vgg16",)):
        with open(path, "rb") as source, lzma.open(f"{path}.xz", "wb", preset=9) as packed:
            shutil.copyfileobj(source, packed)
        path.unlink()

    data = ROOT / "data" / "photos-aim"
    if not (data / "val_hr").is_dir():
        from dictsr_core.data.prepare import prepare_dataset

        prepare_dataset(data, source="photos", degradation="aim", seed=0)
    target = carry / "data" / "photos-aim"
    for split in ("train_lr", "val_lr"):
        shutil.copytree(data / split, target / split)
    (target / "train_hr").mkdir(parents=True)
    for path in sorted((data / "train_hr").glob("*.png")):
        lossless_webp(path, target / "train_hr" / f"{path.stem}.webp")

    size_mb = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file()) / 2**20
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    tree_mb = sum((ROOT / name.decode()).stat().st_size for name in tracked if name and (ROOT / name.decode()).is_file()) / 2**20
    print(f"[carry] {carry}: {size_mb:.1f} MiB, with the tracked tree {size_mb + tree_mb:.1f} MiB")
    if size_mb + tree_mb > LIMIT_MB:
        raise SystemExit(f"[carry] {size_mb + tree_mb:.1f} MiB is over {LIMIT_MB} MiB: the device call would refuse it")


if __name__ == "__main__":
    main()
