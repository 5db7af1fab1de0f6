"""Throughput of UnpairedPatches through a torch DataLoader: (HR 256 + LR 64) patch pairs per second.

Usage: python scripts/bench_loader.py [--data DIR] [--workers N ...] [--batches 40]
Without --data it prepares the `sample` dataset in a temporary folder first. The trainer
needs about 500 pairs/s at the paper batch on an H100; the target is 3x that.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from dictsr_core.data.datasets import UnpairedPatches
from dictsr_core.data.prepare import prepare_dataset


def pairs_per_second(dataset: UnpairedPatches, workers: int, batch_size: int, batches: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    iterator = iter(loader)
    for _ in range(min(3, batches)):  # warm-up: worker start and first batches
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    elapsed = time.perf_counter() - start
    assert batch["hr"].shape[1:] == (3, dataset.hr_patch, dataset.hr_patch)
    return batches * batch_size / elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, help="a prepared dataset (default: prepare `sample` in a temp folder)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "sample"
            prepare_dataset(data, "sample", "aim", seed=0, log=lambda *_: None)
        dataset = UnpairedPatches(data / "train_hr", data / "train_lr", hr_patch=256, lr_patch=64, seed=0)
        for workers in args.workers:
            rate = pairs_per_second(dataset, workers, args.batch_size, args.batches)
            print(f"workers={workers:2d}  batch={args.batch_size}  {rate:8.0f} HR256+LR64 pairs/s")


if __name__ == "__main__":
    main()
