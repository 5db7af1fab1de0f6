"""`--source folder`: datasets already on disk, in the published layouts or as explicit folders.

Recognised under ``--root`` (each folder may also sit one level deeper, as some archives unzip):

- AIM-RWSR: ``train-clean-images`` (HR), ``train-noisy-images`` (LR domain),
  ``valid-input-noisy`` / ``valid-gt-clean`` (validation LR / HR);
- NTIRE-RWSR: ``Corrupted-tr-y`` (HR), ``Corrupted-tr-x`` (LR domain),
  ``Corrupted-va-x`` / ``track1-valid-gt`` (validation LR / HR);
- DIV2K: ``DIV2K_train_HR`` split disjointly into HR and LR-domain photos,
  ``DIV2K_valid_HR`` for validation; the chosen synthetic degradation is applied;
- anything else holding images directly: your own clean photos, split three ways and
  degraded like DIV2K.

Real degraded datasets (AIM, NTIRE, explicit ``--lr-dir``) are used as they are: their LR
images get no synthetic degradation on top and no resizing, whatever their scale.
"""

from __future__ import annotations

from pathlib import Path

from dictsr_core.data.io import list_images
from dictsr_core.data.sources.records import SourceImage, SourcePlan, assign_splits

REAL_LAYOUTS = {
    "aim-rwsr": {"train_hr": "train-clean-images", "train_lr": "train-noisy-images",
                 "val_lr": "valid-input-noisy", "val_hr": "valid-gt-clean"},
    "ntire-rwsr": {"train_hr": "Corrupted-tr-y", "train_lr": "Corrupted-tr-x",
                   "val_lr": "Corrupted-va-x", "val_hr": "track1-valid-gt"},
}
DIV2K_LAYOUT = {"train": "DIV2K_train_HR", "val": "DIV2K_valid_HR"}


class LayoutError(ValueError):
    """A --root or set of folders that does not form a usable dataset; the message says why."""


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / name / name):
        if candidate.is_dir() and list_images(candidate):
            return candidate
    return None


def detect_layout(root) -> tuple[str, dict[str, Path]]:
    """The layout name and its folders under ``root`` ("aim-rwsr", "ntire-rwsr", "div2k" or "photos")."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder")
    for layout, names in {**REAL_LAYOUTS, "div2k": DIV2K_LAYOUT}.items():
        found = {role: _find(root, name) for role, name in names.items()}
        if all(found.values()):
            return layout, found
        if any(found.values()):
            missing = [names[role] for role, path in found.items() if path is None]
            raise LayoutError(f"{root}: looks like {layout} but has no images in {', '.join(missing)}")
    if list_images(root):
        return "photos", {"photos": root}
    expected = sorted({n for names in (*REAL_LAYOUTS.values(), DIV2K_LAYOUT) for n in names.values()})
    raise LayoutError(f"{root}: no images and none of the known dataset folders ({', '.join(expected)}); "
                      "or give --hr-dir, --lr-dir, --val-lr-dir and --val-hr-dir")


def _file_images(folder: Path) -> list[SourceImage]:
    return [SourceImage(name=path.stem, loader="file", ref=str(path), origin={"file": str(path.resolve())})
            for path in list_images(folder)]


def _val_pairs(lr_dir: Path, hr_dir: Path) -> list[tuple[SourceImage, SourceImage]]:
    lr = {image.name: image for image in _file_images(lr_dir)}
    hr = {image.name: image for image in _file_images(hr_dir)}
    unmatched = [lr[n].ref for n in sorted(lr.keys() - hr.keys())] + [hr[n].ref for n in sorted(hr.keys() - lr.keys())]
    if unmatched:
        raise LayoutError("validation images without a partner of the same name in the other folder: " + ", ".join(unmatched))
    return [(lr[name], hr[name]) for name in sorted(lr)]


def real_plan(folders: dict[str, Path], layout: str) -> SourcePlan:
    """A real unpaired dataset from four folders, used as distributed."""
    for role, folder in folders.items():
        if not Path(folder).is_dir():
            raise LayoutError(f"{folder}: no such folder (given for {role})")
        if not list_images(folder):
            raise LayoutError(f"{folder}: no images found (given for {role})")
    splits = {"train_hr": _file_images(Path(folders["train_hr"])),
              "train_lr": _file_images(Path(folders["train_lr"])),
              "val": _val_pairs(Path(folders["val_lr"]), Path(folders["val_hr"]))}
    return SourcePlan(source="folder", splits=splits, real_lr=True,
                      notes={"layout": layout, "folders": {k: str(Path(v).resolve()) for k, v in folders.items()}})


def folder_plan(root=None, hr_dir=None, lr_dir=None, val_lr_dir=None, val_hr_dir=None) -> SourcePlan:
    """The plan for `--source folder`: explicit folders, or the layout detected under ``root``."""
    explicit = {"train_hr": hr_dir, "train_lr": lr_dir, "val_lr": val_lr_dir, "val_hr": val_hr_dir}
    if any(explicit.values()):
        missing = [f"--{role.replace('train_', '').replace('_', '-')}-dir" for role, v in explicit.items() if not v]
        if missing or root:
            raise LayoutError("give all four of --hr-dir, --lr-dir, --val-lr-dir, --val-hr-dir (and no --root)"
                              + (f"; missing {', '.join(missing)}" if missing else ""))
        return real_plan({k: Path(v) for k, v in explicit.items()}, "explicit")
    if root is None:
        raise LayoutError("--source folder needs --root DIR or the four --hr-dir/--lr-dir/--val-lr-dir/--val-hr-dir")
    layout, folders = detect_layout(root)
    if layout in REAL_LAYOUTS:
        return real_plan(folders, layout)
    if layout == "div2k":
        pool = assign_splits(_file_images(folders["train"]), val_fraction=0.0)
        splits = {"train_hr": pool["train_hr"], "train_lr": pool["train_lr"], "val": _file_images(folders["val"])}
        return SourcePlan(source="folder", splits=splits, real_lr=False,
                          notes={"layout": "div2k", "root": str(Path(root).resolve()),
                                 "split": "DIV2K_train_HR alternately into HR / LR domain by name hash; DIV2K_valid_HR for validation"})
    return SourcePlan(source="folder", splits=assign_splits(_file_images(folders["photos"])), real_lr=False,
                      notes={"layout": "photos", "root": str(Path(root).resolve()),
                             "split": "by a hash of the file name, 20% validation, the rest alternating HR / LR"})
