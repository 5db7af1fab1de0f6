"""The frozen test split: its catalogue, the frozen file in the repository, and the checks prepare makes with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dictsr_core.data.sources import test_photos
from dictsr_core.data.sources.photos import PHOTO_PACKAGES, PHOTOS, VALIDATION_PHOTOS
from dictsr_core.data.sources.test_photos import (FROZEN_FILE, TEST_PACKAGES, TEST_PHOTOS, FrozenSplitChanged,
                                                  check_source, load_frozen, photo_name, sha256_file, split_pre_scale,
                                                  verify_prepared)


def test_the_test_photos_come_from_packages_no_earlier_split_used():
    assert not set(TEST_PACKAGES) & set(PHOTO_PACKAGES)
    assert {package for package, *_ in TEST_PHOTOS} == set(TEST_PACKAGES)
    earlier = {package for package, *_ in PHOTOS + VALIDATION_PHOTOS}
    assert not earlier & set(TEST_PACKAGES)
    names = [photo_name(package, inner) for package, inner, *_ in TEST_PHOTOS]
    assert len(names) == len(set(names)) >= 15


def test_the_repository_freezes_every_test_photo_and_file():
    frozen = load_frozen()
    assert frozen is not None, f"{FROZEN_FILE} is missing"
    assert frozen["frozen_on"] == "2026-12-07"
    assert [p["name"] for p in frozen["photos"]] == [photo_name(p, i) for p, i, *_ in TEST_PHOTOS]
    assert all(len(p["sha256"]) == 64 and p["version"] for p in frozen["photos"])
    for dataset in ("photos-aim-seed0", "photos-ntire-seed0"):
        files = frozen["files"][dataset]
        assert len(files) == 2 * 4 * len(TEST_PHOTOS)  # LR and HR of 4 crops per photo
        assert {name.split("/")[0] for name in files} == {"test_lr", "test_hr"}


def test_pre_scale_halves_quarters_large_photos_and_keeps_four_disjoint_crops():
    assert split_pre_scale(2000, 1500) == 0.5
    assert split_pre_scale(4208, 3120) == 0.25  # 13 MP
    assert split_pre_scale(1024, 768) == pytest.approx(512 / 768)
    for width, height in ((1001, 648), (1352, 900), (4208, 3120)):
        scale = split_pre_scale(width, height)
        assert min(width, height) * scale >= 512 - 1e-9


def test_a_changed_source_is_refused_by_name(tmp_path):
    photo = tmp_path / "pier.jpg"
    photo.write_bytes(b"the bytes that were frozen")
    frozen = {"photos": [{"name": "lifeograph__pier", "sha256": sha256_file(photo)}]}
    check_source("lifeograph__pier", photo, frozen)
    photo.write_bytes(b"an updated package")
    with pytest.raises(FrozenSplitChanged, match="pier.jpg"):
        check_source("lifeograph__pier", photo, frozen)
    with pytest.raises(FrozenSplitChanged, match="not in the frozen"):
        check_source("lifeograph__other", photo, frozen)
    check_source("anything", photo, None)  # a checkout without a frozen file checks nothing


def test_prepared_files_are_checked_against_the_frozen_ones(tmp_path):
    for name, text in (("test_lr/a.png", b"lr"), ("test_hr/a.png", b"hr")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(text)
    manifest = {"source": "photos", "degradation": {"name": "aim"}, "seed": 0,
                "images": [{"file": "test_lr/a.png", "split": "test_lr"}, {"file": "test_hr/a.png", "split": "test_hr"},
                           {"file": "val_lr/b.png", "split": "val_lr"}]}
    frozen = {"files": {"photos-aim-seed0": {name: sha256_file(tmp_path / name) for name in ("test_lr/a.png", "test_hr/a.png")}}}
    assert verify_prepared(manifest, tmp_path, frozen) == {"frozen_as": "photos-aim-seed0", "verified": True, "differing": []}
    (tmp_path / "test_hr/a.png").write_bytes(b"another crop")
    assert verify_prepared(manifest, tmp_path, frozen)["differing"] == ["test_hr/a.png"]
    manifest["seed"] = 1
    assert verify_prepared(manifest, tmp_path, frozen)["verified"] is False  # no frozen files for seed 1


def test_prepare_writes_the_test_split_beside_the_others(tmp_path, monkeypatch):
    """A photos-like plan with pinned test photos: test_lr/ and test_hr/ with 4 crops each, disjoint from the rest,
    the manifest's test_split record, and a dataset with six folders still replaceable."""
    from skimage import data as skdata

    from dictsr_core.data import prepare as prepare_module
    from dictsr_core.data.io import write_rgb
    from dictsr_core.data.sources.records import SourceImage, SourcePlan, assign_splits

    images = []
    for i, function in enumerate(("astronaut", "coffee", "chelsea", "rocket", "camera")):
        array = getattr(skdata, function)()
        array = np.stack([array] * 3, -1) if array.ndim == 2 else array
        path = write_rgb(tmp_path / "src" / f"{function}.png", np.ascontiguousarray(array[:400, :400, :3]))
        images.append(SourceImage(name=function, loader="file", ref=str(path), origin={}, split="test" if i == 4 else None))
    plan = SourcePlan(source="photos", splits=assign_splits(images), real_lr=False, val_crops=4, val_crop=128)
    assert [image.name for image in plan.splits["test"]] == ["camera"]
    monkeypatch.setattr(prepare_module, "make_plan", lambda *args, **kwargs: plan)
    monkeypatch.setattr(prepare_module, "load_frozen", lambda: None)
    out = tmp_path / "photos-aim"
    manifest = prepare_module.prepare_dataset(out, "photos", "aim", workers=1, log=lambda message: None)
    assert manifest["counts"]["test_lr"] == manifest["counts"]["test_hr"] == 4
    assert sorted(p.name for p in (out / "test_hr").iterdir()) == [f"camera__c{k}.png" for k in range(4)]
    assert manifest["test_split"]["verified"] is False
    test_photos_used = {r["photo"] for r in manifest["images"] if r["split"] == "test_hr"}
    assert test_photos_used == {"camera"}
    assert not any(r.get("photo") == "camera" for r in manifest["images"] if r["split"].startswith("val"))
    prepare_module.check_replaceable(out)  # a dataset with a test split is still provably ours
    assert json.loads((out / "manifest.json").read_text())["counts"]["test_hr"] == 4
