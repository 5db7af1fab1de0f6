"""`dictsr prepare`: build DIR/train_hr, train_lr, val_lr, val_hr (PNG) and DIR/manifest.json.

HR-domain, LR-domain and validation images come from three disjoint sets of photos (the
unpaired protocol). Clean sources are degraded here with a seeded recipe, each image with
its own seed (seed, crc32(name)), so re-running with the same arguments gives
byte-identical files whatever the number of worker processes. Everything is written
into a temporary folder beside DIR that replaces DIR only when complete, and only when DIR is
missing, empty or provably a dataset `dictsr prepare` made (see check_replaceable). Unusable input
files are all reported by name; with ``--skip-bad`` they are left out, otherwise nothing
is written and the exit code is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from dictsr_core.atomic import atomic_write_json
from dictsr_core.data.degradations import DEGRADATIONS, make_degradation
from dictsr_core.data.io import ImageError, write_rgb
from dictsr_core.data.resize import imresize_np
from dictsr_core.data.sources.download import DATASET_URLS, DownloadError, download_dataset
from dictsr_core.data.sources.folder import LayoutError, folder_plan
from dictsr_core.data.sources.photos import PhotosUnavailable, default_cache_dir, photos_plan
from dictsr_core.data.sources.test_photos import FrozenSplitChanged, load_frozen, verify_prepared
from dictsr_core.data.sources.records import SourceImage, SourcePlan, SplitError
from dictsr_core.data.sources.sample import sample_plan

OUTPUT_FOLDERS = ("train_hr", "train_lr", "val_lr", "val_hr")
TEST_FOLDERS = ("test_lr", "test_hr")  # only sources with a test split (photos) write them
MANIFEST_FORMAT = "dictsr-dataset-v1"
LEGACY_MANIFEST_FORMATS = (None, 1)  # what older versions wrote (no key at all, or the number 1)
MADE_BY = "dictsr prepare"
SCALE = 4
HR_PATCH = 256
LR_PATCH = 64
MIN_VAL_LR = 16


class PrepareError(RuntimeError):
    """The dataset cannot be prepared as asked; the message says why."""


class BadInputError(PrepareError):
    """Some input files are unusable; ``problems`` lists every one (file: reason)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} unusable input file(s):\n  " + "\n  ".join(problems)
                         + "\nNothing was written. Fix or remove them, or pass --skip-bad to leave them out.")


@dataclass(frozen=True)
class Job:
    """One output image (or validation pair) to make; run in a worker process."""

    kind: str  # "hr", "lr", "val" (clean sources) or "lr_real", "hr_real", "val_real" (as distributed)
    image: SourceImage
    partner: SourceImage | None = None  # the HR image of a real validation pair
    degradation: dict = field(default_factory=dict)
    seed: int = 0
    crop: int | None = None  # "val" of a cropped source: which of the photo's `crops` crops (see val_crop_box)
    crops: int = 0
    crop_side: int = 0
    pairs: str = "val"  # "val" or "test": the folders a clean pair is written to (PAIRS_lr/, PAIRS_hr/)


def image_seed(seed: int, name: str) -> list[int]:
    """The per-image seed: independent of the processing order and of the other images."""
    return [int(seed), zlib.crc32(name.encode("utf-8"))]


def _too_small(image: SourceImage, array: np.ndarray, minimum: int, what: str) -> ImageError:
    return ImageError(image.ref, f"{array.shape[1]}x{array.shape[0]} after preprocessing, {what} needs at least {minimum} px on the short side")


def _record(image: SourceImage, split: str, array: np.ndarray, steps: list[str], **extra) -> dict:
    return {"file": f"{split}/{image.name}.png", "split": split, "source": image.origin, "author": image.author,
            "license": image.license, "size": [int(array.shape[1]), int(array.shape[0])], "steps": steps, **extra}


def _load_clean(image: SourceImage) -> tuple[np.ndarray, list[str]]:
    array = image.load()
    steps = []
    if image.pre_scale != 1.0:
        array = imresize_np(array, image.pre_scale)
        steps.append(f"MATLAB bicubic x{image.pre_scale:g}")
    return array, steps


def _write_as_distributed(image: SourceImage, target: Path, array: np.ndarray) -> None:
    """Copy an RGB PNG byte for byte (fast for thousands of files); re-encode anything else."""
    source = Path(image.ref)
    if source.suffix.lower() == ".png":
        with Image.open(source) as opened:
            if opened.mode == "RGB" and not opened.info.get("transparency"):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                return
    write_rgb(target, array)


def run_job(job: Job, staging: Path) -> tuple[list[dict], list[str]]:
    """Make one job's outputs under ``staging``; return (manifest records, problems)."""
    image = job.image
    try:
        if job.kind in ("hr", "lr", "val"):
            array, steps = _load_clean(image)
            seed = image_seed(job.seed, image.name)
            if job.kind == "hr":
                if min(array.shape[:2]) < HR_PATCH:
                    raise _too_small(image, array, HR_PATCH, "an HR training image")
                write_rgb(staging / "train_hr" / f"{image.name}.png", array)
                return [_record(image, "train_hr", array, steps)], []
            degradation = make_degradation(job.degradation["name"], **{k: v for k, v in job.degradation.items() if k != "name"})
            if job.kind == "lr":
                if min(array.shape[:2]) < LR_PATCH * SCALE:
                    raise _too_small(image, array, LR_PATCH * SCALE, "an LR-domain source image")
                lr = degradation(array, seed)
                write_rgb(staging / "train_lr" / f"{image.name}.png", lr)
                return [_record(image, "train_lr", lr, steps + [f"degradation {degradation.name}"],
                                degradation=degradation.recipe(), seed=seed)], []
            if job.crop is not None:
                if min(array.shape[:2]) < job.crop_side:
                    raise _too_small(image, array, job.crop_side, "a cropped validation photo")
                top, left = val_crop_box(array.shape[0], array.shape[1], job.crop_side, job.crop, job.crops)
                hr = np.ascontiguousarray(array[top : top + job.crop_side, left : left + job.crop_side])
                crop = [f"crop {job.crop} of {job.crops}: {job.crop_side}x{job.crop_side} at x={left}, y={top}"]
                image = dataclasses.replace(image, name=f"{image.name}__c{job.crop}")
                seed = image_seed(job.seed, image.name)
                lr = degradation(hr, seed)
                hr_dir, lr_dir = f"{job.pairs}_hr", f"{job.pairs}_lr"
                write_rgb(staging / hr_dir / f"{image.name}.png", hr)
                write_rgb(staging / lr_dir / f"{image.name}.png", lr)
                return [_record(image, hr_dir, hr, steps + crop, pair=f"{lr_dir}/{image.name}.png", photo=job.image.name),
                        _record(image, lr_dir, lr, steps + crop + [f"degradation {degradation.name}"],
                                pair=f"{hr_dir}/{image.name}.png", degradation=degradation.recipe(), seed=seed,
                                photo=job.image.name)], []
            height, width = (array.shape[0] // SCALE) * SCALE, (array.shape[1] // SCALE) * SCALE
            if min(height, width) < MIN_VAL_LR * SCALE:
                raise _too_small(image, array, MIN_VAL_LR * SCALE, "a validation image")
            hr = np.ascontiguousarray(array[:height, :width])
            crop = [f"top-left crop to {width}x{height} (multiple of {SCALE})"] if hr.shape != array.shape else []
            lr = degradation(hr, seed)
            write_rgb(staging / "val_hr" / f"{image.name}.png", hr)
            write_rgb(staging / "val_lr" / f"{image.name}.png", lr)
            return [_record(image, "val_hr", hr, steps + crop, pair=f"val_lr/{image.name}.png"),
                    _record(image, "val_lr", lr, steps + crop + [f"degradation {degradation.name}"], pair=f"val_hr/{image.name}.png",
                            degradation=degradation.recipe(), seed=seed)], []
        if job.kind in ("hr_real", "lr_real"):
            split, minimum = ("train_hr", HR_PATCH) if job.kind == "hr_real" else ("train_lr", LR_PATCH)
            array = image.load()
            if min(array.shape[:2]) < minimum:
                raise _too_small(image, array, minimum, "an HR training image" if split == "train_hr" else "an LR training image")
            _write_as_distributed(image, staging / split / f"{image.name}.png", array)
            return [_record(image, split, array, ["as distributed"])], []
        if job.kind == "val_real":
            lr, hr = image.load(), job.partner.load()
            if hr.shape[:2] != (lr.shape[0] * SCALE, lr.shape[1] * SCALE):
                return [], [f"{image.ref} ({lr.shape[1]}x{lr.shape[0]}) and {job.partner.ref} ({hr.shape[1]}x{hr.shape[0]}): "
                            f"validation pair is not exactly 1:{SCALE}"]
            _write_as_distributed(image, staging / "val_lr" / f"{image.name}.png", lr)
            _write_as_distributed(job.partner, staging / "val_hr" / f"{image.name}.png", hr)
            return [_record(job.partner, "val_hr", hr, ["as distributed"], pair=f"val_lr/{image.name}.png"),
                    _record(image, "val_lr", lr, ["as distributed"], pair=f"val_hr/{image.name}.png")], []
        raise ValueError(f"unknown job kind {job.kind!r}")
    except ImageError as error:
        return [], [str(error)]


def val_crop_box(height: int, width: int, side: int, index: int, count: int) -> tuple[int, int]:
    """(top, left) of crop `index` of `count`: centred in the cells of a near-square grid over the photo
    (4 crops: the quadrants), on the 4-pixel grid, inside the photo. Fixed positions, never chosen by content."""
    rows = max(1, int(np.floor(np.sqrt(count))))
    cols = int(np.ceil(count / rows))
    row, col = divmod(index, cols)
    def start(extent: int, cells: int, cell: int) -> int:
        centre = (cell + 0.5) * extent / cells
        return int(min(max(0, round((centre - side / 2) / SCALE) * SCALE), (extent - side) // SCALE * SCALE))
    return start(height, rows, row), start(width, cols, col)


def plan_jobs(plan: SourcePlan, degradation: dict, seed: int) -> list[Job]:
    """The jobs of a source plan, in a fixed order."""
    if plan.real_lr:
        jobs = [Job("hr_real", image) for image in plan.splits["train_hr"]]
        jobs += [Job("lr_real", image) for image in plan.splits["train_lr"]]
        jobs += [Job("val_real", lr, partner=hr) for lr, hr in plan.splits["val"]]
    else:
        jobs = [Job("hr", image, seed=seed) for image in plan.splits["train_hr"]]
        jobs += [Job("lr", image, degradation=degradation, seed=seed) for image in plan.splits["train_lr"]]
        if plan.val_crops:
            jobs += [Job("val", image, degradation=degradation, seed=seed, crop=k, crops=plan.val_crops,
                         crop_side=plan.val_crop) for image in plan.splits["val"] for k in range(plan.val_crops)]
            jobs += [Job("val", image, degradation=degradation, seed=seed, crop=k, crops=plan.val_crops,
                         crop_side=plan.val_crop, pairs="test")
                     for image in plan.splits.get("test", []) for k in range(plan.val_crops)]
        else:
            jobs += [Job("val", image, degradation=degradation, seed=seed) for image in plan.splits["val"]]
    names = {}
    for job in jobs:
        split = {"hr": "train_hr", "hr_real": "train_hr", "lr": "train_lr", "lr_real": "train_lr"}.get(job.kind, job.pairs)
        key = (split, job.image.name if job.crop is None else f"{job.image.name}__c{job.crop}")
        if key in names:
            raise PrepareError(f"two inputs would both be written as {split}/{job.image.name}.png: {names[key]} and {job.image.ref}")
        names[key] = job.image.ref
    return jobs


def _staging_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.preparing-{os.getpid()}"


def _not_ours(out: Path, why: str) -> PrepareError:
    return PrepareError(f"{out} is not a dataset made by `dictsr prepare` ({why}); nothing was changed. "
                        "Choose another --out, or remove the folder yourself")


def check_replaceable(out: Path) -> None:
    """Raise PrepareError unless ``out`` is missing, empty, or provably a dataset `dictsr prepare` made.

    Provably ours: manifest.json has dictsr's own schema (made_by, counts of the four splits, images) and a
    format key of ours (or none, as older versions wrote), and the folder holds nothing but the four split
    folders (files only) and manifest.json. Anything else in it could be someone's work: refuse.
    """
    if not out.exists():
        return
    if not out.is_dir() or out.is_symlink():
        raise PrepareError(f"{out} exists and is not a folder; choose another --out")
    entries = sorted(out.iterdir())
    if not entries:
        return
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise _not_ours(out, "it is not empty and has no manifest.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _not_ours(out, f"its manifest.json is not readable JSON: {error}") from None
    schema = (isinstance(manifest, dict) and manifest.get("made_by") == MADE_BY
              and isinstance(manifest.get("images"), list) and isinstance(manifest.get("counts"), dict)
              and set(manifest["counts"]) in (set(OUTPUT_FOLDERS), set(OUTPUT_FOLDERS + TEST_FOLDERS)))
    if not schema:
        raise _not_ours(out, "its manifest.json was not written by dictsr")
    if manifest.get("format") != MANIFEST_FORMAT and manifest.get("format") not in LEGACY_MANIFEST_FORMATS:
        raise _not_ours(out, f"its manifest.json has an unknown format {manifest.get('format')!r}")
    folders = set(OUTPUT_FOLDERS + TEST_FOLDERS)
    allowed = folders | {"manifest.json"}
    foreign = [entry.name for entry in entries if entry.name not in allowed or entry.is_symlink()
               or (entry.name in folders and not entry.is_dir())]
    foreign += [f"{entry.name}/{child.name}" for entry in entries if entry.name in folders and entry.is_dir()
                and not entry.is_symlink() for child in sorted(entry.iterdir()) if not child.is_file() or child.is_symlink()]
    if foreign:
        raise _not_ours(out, "it also holds " + ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else ""))


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished staging folder to ``out``, replacing a previous prepared dataset (checked again here)."""
    if out.exists():
        check_replaceable(out)
        retired = out.parent / f".{out.name}.replaced-{os.getpid()}"
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired)
    else:
        staging.rename(out)


def _run_jobs(jobs: list[Job], staging: Path, workers: int) -> list[tuple[list[dict], list[str]]]:
    if workers <= 1 or len(jobs) <= 1:
        return [run_job(job, staging) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_job, jobs, [staging] * len(jobs)))


def make_plan(source: str, *, root=None, dirs: dict | None = None, download: str | None = None,
              cache_dir=None, log=print) -> SourcePlan:
    """The SourcePlan for a --source (and --root / --*-dir / --download) choice."""
    dirs = dirs or {}
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if source != "folder" and not download and (root or any(dirs.values())):
        raise PrepareError("--root and --hr-dir/--lr-dir/--val-lr-dir/--val-hr-dir need --source folder")
    if download:
        if source not in ("folder", None):
            raise PrepareError(f"--download gives a folder dataset; it cannot be combined with --source {source}")
        root = download_dataset(download, cache_dir, log=log)
        source = "folder"
    try:
        if source == "sample":
            return sample_plan()
        if source == "photos":
            return photos_plan(cache_dir, log)
        if source == "folder":
            return folder_plan(root=root, **dirs)
    except SplitError as error:  # too few photos for the three disjoint sets
        where = root if root else ", ".join(str(v) for v in dirs.values() if v) or f"--source {source}"
        raise PrepareError(f"{where}: {error} (HR domain, LR domain and validation)") from None
    raise PrepareError(f"unknown source {source!r}")


def prepare_dataset(out, source: str = "sample", degradation: str = "aim", seed: int = 0, *, skip_bad: bool = False,
                    root=None, dirs: dict | None = None, download: str | None = None, cache_dir=None,
                    workers: int | None = None, log=print) -> dict:
    """Prepare the dataset at ``out``; return the manifest. Raises BadInputError, PrepareError and the sources' errors."""
    out = Path(out).resolve()
    check_replaceable(out)  # before any work: refuse a folder dictsr did not make
    recipe = make_degradation(degradation).recipe()
    plan = make_plan(source, root=root, dirs=dirs, download=download, cache_dir=cache_dir, log=log)
    jobs = plan_jobs(plan, recipe, seed)
    workers = workers or min(os.cpu_count() or 1, 8)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(out)
    shutil.rmtree(staging, ignore_errors=True)
    folders = OUTPUT_FOLDERS + (TEST_FOLDERS if plan.splits.get("test") else ())
    try:
        for folder in folders:
            (staging / folder).mkdir(parents=True)
        log(f"[prepare] {plan.source}: {len(jobs)} images with {workers} worker(s) -> {out}")
        results = _run_jobs(jobs, staging, workers)
        problems = [problem for _, found in results for problem in found]
        if problems and not skip_bad:
            raise BadInputError(problems)
        for problem in problems:
            log(f"[prepare] skipping {problem}")
        records = [record for found, _ in results for record in found]
        counts = {folder: sum(r["split"] == folder for r in records) for folder in folders}
        empty = [folder for folder, count in counts.items() if count == 0]
        if empty:
            raise PrepareError(f"no usable images left for {', '.join(empty)}; nothing was written")
        manifest = {
            "format": MANIFEST_FORMAT,
            "made_by": MADE_BY,
            "source": plan.source,
            "source_notes": plan.notes,
            "degradation": None if plan.real_lr else recipe,
            "seed": int(seed),
            "scale": SCALE,
            "counts": counts,
            "skipped": problems,
            "protocol": "unpaired: train_hr, train_lr, val and test come from disjoint sets of photos; "
                        "val is for choices, test is for reporting",
            "val_crops": {"per_photo": plan.val_crops, "side": plan.val_crop} if plan.val_crops else None,
            "images": records,
        }
        if "test_hr" in counts:
            manifest["test_split"] = verify_prepared(manifest, staging, load_frozen())
            state = "matches" if manifest["test_split"]["verified"] else "does NOT match"
            log(f"[prepare] test split {state} the frozen one ({manifest['test_split']['frozen_as']})")
        atomic_write_json(staging / "manifest.json", manifest)
        _replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"[prepare] wrote {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return manifest


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """The `dictsr prepare` options."""
    parser.add_argument("--source", choices=("sample", "photos", "folder"), default="sample",
                        help="sample: skimage's bundled photos (offline); photos: 55 photographs from Debian "
                             "wallpaper packages (apt); folder: datasets on disk (--root or the four --*-dir)")
    parser.add_argument("--degradation", choices=sorted(DEGRADATIONS), default="aim",
                        help="synthetic LR recipe for clean sources (real LR datasets are used as they are)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (replaced atomically if it is a prepared dataset)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradation noise")
    parser.add_argument("--skip-bad", action="store_true", help="leave out unusable input files (listed) instead of stopping")
    parser.add_argument("--root", type=Path, help="--source folder: AIM-RWSR / NTIRE-RWSR / DIV2K layout, or a folder of clean photos")
    parser.add_argument("--hr-dir", type=Path, help="clean HR training images (with the three other --*-dir)")
    parser.add_argument("--lr-dir", type=Path, help="real LR-domain training images, used as they are")
    parser.add_argument("--val-lr-dir", type=Path, help="validation LR images")
    parser.add_argument("--val-hr-dir", type=Path, help="validation HR images (same file names, exactly 4x larger)")
    parser.add_argument("--download", choices=sorted(DATASET_URLS), help="fetch this dataset into the cache first (needs internet)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $DICTSR_CACHE or ~/.cache/dictsr")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count, at most 8)")


def prepare_from_args(args) -> int:
    """Run `dictsr prepare`; exit code 0 when written, 1 for unusable input files, 2 for other errors."""
    dirs = {"hr_dir": args.hr_dir, "lr_dir": args.lr_dir, "val_lr_dir": args.val_lr_dir, "val_hr_dir": args.val_hr_dir}
    source = "folder" if args.download else args.source
    try:
        prepare_dataset(args.out, source, args.degradation, args.seed, skip_bad=args.skip_bad, root=args.root,
                        dirs={k: v for k, v in dirs.items() if v is not None}, download=args.download,
                        cache_dir=args.cache_dir, workers=args.workers)
    except BadInputError as error:
        print(f"dictsr prepare: {error}", file=sys.stderr)
        return 1
    except (PrepareError, LayoutError, PhotosUnavailable, FrozenSplitChanged, DownloadError, FileNotFoundError) as error:
        print(f"dictsr prepare: error: {error}", file=sys.stderr)
        return 2
    return 0
