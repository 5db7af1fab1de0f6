"""What a source hands to `prepare`: images with provenance, already assigned to splits."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib

import numpy as np

from dictsr_core.data.io import read_rgb

SPLITS = ("train_hr", "train_lr", "val", "test")


@dataclasses.dataclass(frozen=True)
class SourceImage:
    """One input image: how to load it and what the manifest says about it.

    ``loader`` is "file" (``ref`` is a path) or "skimage" (``ref`` is a skimage.data
    function name, ``name:index`` for functions returning several images). ``group`` keeps
    related images (a stereo pair) in one split. ``pre_scale`` is a MATLAB-bicubic factor
    applied before anything else (0.5 for JPEG wallpapers, to hide compression). ``split``
    pins the image to one split ("val": a validation-only photo added to a catalogue after
    its runs were trained, so that the hashed split of the others, and their training sets,
    stay exactly as they were; "test": a photo of the frozen test split, test_photos.py).
    """

    name: str
    loader: str
    ref: str
    origin: dict
    author: str | None = None
    license: str | None = None
    group: str | None = None
    pre_scale: float = 1.0
    split: str | None = None

    def load(self) -> np.ndarray:
        """The image as HxWx3 uint8 (ImageError naming the file if it cannot be used)."""
        if self.loader == "file":
            return read_rgb(self.ref)
        if self.loader == "skimage":
            function, _, index = self.ref.partition(":")
            image = getattr(importlib.import_module("skimage.data"), function)()
            if index:
                image = image[int(index)]
            return np.ascontiguousarray(image[..., :3].astype(np.uint8))
        raise ValueError(f"unknown loader {self.loader!r} for {self.name}")


@dataclasses.dataclass
class SourcePlan:
    """A source's images by split.

    Clean sources (``real_lr`` False) give clean photos for "train_hr", "train_lr" and "val"
    that `prepare` degrades; real sources give degraded LR images in "train_lr" and
    (lr, hr) pairs in "val", used as they are.
    """

    source: str
    splits: dict
    real_lr: bool
    notes: dict = dataclasses.field(default_factory=dict)
    # clean sources: each validation photo gives this many crops of val_crop x val_crop HR pixels (0: the whole
    # photo), at the centres of a grid of its quadrants: more pairs for the same disjoint photos
    val_crops: int = 0
    val_crop: int = 256


class SplitError(ValueError):
    """Too few distinct photos to make the disjoint sets."""


def _stable_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assign_splits(images: list[SourceImage], val_fraction: float = 0.2) -> dict[str, list[SourceImage]]:
    """Split clean photos three ways, disjoint by group, independent of any seed.

    Groups are ordered by a hash of their name (stable when photos are added or removed
    elsewhere); the first ``val_fraction`` (at least one, none if 0) go to validation and the rest
    alternate between the HR and LR domains. Images with a ``split`` of their own go there and
    take no part in the hashing, so pinning new photos leaves every other image where it was.
    """
    pinned = [image for image in images if image.split is not None]
    unknown = sorted({image.split for image in pinned} - set(SPLITS))
    if unknown:
        raise SplitError(f"unknown pinned split(s) {unknown}; expected one of {SPLITS}")
    groups: dict[str, list[SourceImage]] = {}
    for image in images:
        if image.split is None:
            groups.setdefault(image.group or image.name, []).append(image)
    clash = sorted({image.group or image.name for image in pinned} & set(groups))
    if clash:
        raise SplitError(f"group(s) {clash} are both pinned and hashed: a group must stay in one split")
    needed = 3 if val_fraction > 0 else 2
    if len(groups) < needed:
        raise SplitError(f"need at least {needed} distinct photos to make disjoint sets, got {len(groups)}")
    order = sorted(groups, key=_stable_key)
    n_val = max(1, round(len(order) * val_fraction)) if val_fraction > 0 else 0
    splits = {"train_hr": [], "train_lr": [], "val": [], "test": []}
    for position, group in enumerate(order):
        if position < n_val:
            split = "val"
        else:
            split = "train_hr" if (position - n_val) % 2 == 0 else "train_lr"
        splits[split].extend(groups[group])
    for image in pinned:
        splits[image.split].append(image)
    return splits
