"""`--source photos`: real photographs from Debian packages via apt-get download + dpkg -x (no install)."""

import json
import shutil

import pytest

from dictsr_core.data.datasets import PairedImages, UnpairedPatches
from dictsr_core.data.prepare import prepare_dataset
from dictsr_core.data.sources import photos as photos_module
from dictsr_core.data.sources.photos import (PHOTO_PACKAGES, PHOTOS, VALIDATION_PHOTOS, PhotosUnavailable,
                                             fetch_photo_packages)
from dictsr_core.data.sources.test_photos import FROZEN_FILE, TEST_PACKAGES, sha256_file
from dictsr_core.data.sources.records import SourceImage, SplitError, assign_splits

needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg") is None,
                               reason="apt-get/dpkg not available: the photos source needs a Debian-like system")
QUIET = {"log": lambda *_: None}


def test_catalogue_is_unique_and_from_the_listed_packages():
    keys = [(package, path) for package, path, _, _ in PHOTOS]
    pinned = [(package, path) for package, path, _, _, _ in VALIDATION_PHOTOS]
    assert len(keys) == len(set(keys)) == 50 and len(pinned) == len(set(pinned)) == 5
    assert not set(keys) & set(pinned)
    assert {package for package, _ in keys + pinned} == set(PHOTO_PACKAGES)
    assert all(author and license_ and 0 < scale <= 0.5 for _, _, author, license_, scale in VALIDATION_PHOTOS)


def _photo(name, split=None):
    return SourceImage(name=name, loader="file", ref=f"/nowhere/{name}.jpg", origin={}, split=split)


def test_pinned_validation_photos_leave_the_hashed_split_as_it_was():
    hashed = [_photo(f"photo{i:02d}") for i in range(50)]
    before = assign_splits(hashed)
    after = assign_splits(hashed + [_photo(f"extra{i}", split="val") for i in range(5)])
    for split in ("train_hr", "train_lr"):
        assert [image.name for image in after[split]] == [image.name for image in before[split]]
    assert len(before["val"]) == 10
    assert [image.name for image in after["val"]] == [image.name for image in before["val"]] + [f"extra{i}" for i in range(5)]


def test_a_bad_pin_is_refused_by_name():
    photos = [_photo(f"photo{i}") for i in range(5)]
    with pytest.raises(SplitError, match="'validation'"):
        assign_splits(photos + [_photo("extra", split="validation")])
    with pytest.raises(SplitError, match="photo1"):
        assign_splits(photos + [_photo("photo1", split="val")])


def test_without_apt_the_message_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(photos_module.shutil, "which", lambda tool: None)
    with pytest.raises(PhotosUnavailable, match="--source sample.*--source folder"):
        fetch_photo_packages(tmp_path, **QUIET)


@needs_apt
@pytest.mark.network
@pytest.mark.slow
def test_a_subset_of_photos_is_fetched_credited_and_split(tmp_path, monkeypatch):
    # Six photos from four packages (one plasma wallpaper, whose credits come from metadata.json).
    subset = [row for row in PHOTOS if row[1].endswith(("/flower.png", "Storm.jpg", "fog.jpg", "Wine_by_Jakkub_Mede.jpg",
                                                         "Dune.jpg"))] + [row for row in PHOTOS if "/Path/" in row[1]]
    assert len(subset) == 6
    monkeypatch.setattr(photos_module, "PHOTOS", tuple(subset))
    pinned = [row for row in VALIDATION_PHOTOS if row[1].endswith("IMG_1054.JPG")]
    monkeypatch.setattr(photos_module, "VALIDATION_PHOTOS", tuple(pinned))
    test = [row for row in photos_module.TEST_PHOTOS if row[1].endswith("european-honey-bee.jpg")]
    monkeypatch.setattr(photos_module, "TEST_PHOTOS", tuple(test))
    manifest = prepare_dataset(tmp_path / "out", "photos", "aim", workers=2, **QUIET)
    # 4 crops of the one hashed validation photo + 4 of the pinned one; 4 of the one test photo
    assert manifest["counts"] == {"train_hr": 3, "train_lr": 2, "val_lr": 8, "val_hr": 8, "test_lr": 4, "test_hr": 4}
    bee = [r for r in manifest["images"] if r["split"] == "test_hr"]
    assert {r["photo"] for r in bee} == {"palapeli-data__european-honey-bee"} and bee[0]["author"] == "John Severns"
    assert bee[0]["steps"][0] == "MATLAB bicubic x0.5"  # 1620x1280: half size keeps 640 px on the short side
    # the one test photo's crops are exactly the frozen ones (the frozen file lists every test file's sha256)
    frozen = json.loads(FROZEN_FILE.read_text())["files"]["photos-aim-seed0"]
    written = [r["file"] for r in manifest["images"] if r["split"] in ("test_lr", "test_hr")]
    assert len(written) == 8 and all(sha256_file(tmp_path / "out" / name) == frozen[name] for name in written)
    assert manifest["test_split"]["frozen_as"] == "photos-aim-seed0" and not manifest["test_split"]["verified"]
    assert manifest["val_crops"] == {"per_photo": 4, "side": 256}
    for record in manifest["images"]:
        assert record["source"]["debian_package"] in PHOTO_PACKAGES + TEST_PACKAGES and record["source"]["version"]
        assert record["author"] and record["license"]
        assert record["steps"][0] == "MATLAB bicubic x0.5"
    phone = [r for r in manifest["images"] if r["source"]["debian_package"] == "forensics-samples-files"]
    assert {r["split"] for r in phone} == {"val_hr", "val_lr"} and len(phone) == 8
    assert phone[0]["license"] == "CC-BY-SA-4.0" and phone[0]["photo"] == "forensics-samples-files__IMG_1054"
    plasma = [r for r in manifest["images"] if r["source"]["debian_package"] == "plasma-workspace-wallpapers"]
    assert plasma[0]["author"] == "Risto Saukonpää" and plasma[0]["source"]["path"].endswith("2560x1600.jpg")
    UnpairedPatches(tmp_path / "out" / "train_hr", tmp_path / "out" / "train_lr")
    val = PairedImages(tmp_path / "out" / "val_lr", tmp_path / "out" / "val_hr")
    assert len(val) == 8 and {val[i]["hr"].shape for i in range(8)} == {(256, 256, 3)}


@needs_apt
@pytest.mark.network
@pytest.mark.slow
def test_all_fifty_five_photos(tmp_path):
    manifest = prepare_dataset(tmp_path / "out", "photos", "aim", **QUIET)
    assert manifest["counts"] == {"train_hr": 20, "train_lr": 20, "val_lr": 60, "val_hr": 60, "test_lr": 96, "test_hr": 96}
    assert manifest["test_split"]["verified"], manifest["test_split"]  # the frozen test split, byte for byte
    assert manifest["source_notes"]["catalogue"] == 3
    by_split = {}
    for record in manifest["images"]:
        by_split.setdefault(record["split"].replace("val_lr", "val_hr"), set()).add(record["source"]["path"])
    assert not (by_split["train_hr"] & by_split["train_lr"]) and not (by_split["val_hr"] & by_split["train_hr"])
    assert not (by_split["val_hr"] & by_split["train_lr"])
