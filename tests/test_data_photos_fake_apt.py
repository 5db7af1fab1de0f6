"""The photos source end to end without the network: a fake `apt-get` on PATH serves small .debs built here with
dpkg-deb (the real `dpkg -x` / `dpkg-deb --field` unpack them), so fetching, caching, credits, the three disjoint
splits and the frozen test split's checks run as they do with Debian's packages (test_data_photos.py's `network`
tests fetch the real ones)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dictsr_core.data.prepare import prepare_dataset
from dictsr_core.data.sources import photos as photos_module
from dictsr_core.data.sources import test_photos as test_photos_module
from dictsr_core.data.sources.photos import PhotosUnavailable, fetch_photo_packages
from dictsr_core.data.sources.test_photos import FrozenSplitChanged, freeze, sha256_file

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                                reason="dpkg/dpkg-deb not available: the photos source unpacks Debian packages")
QUIET = {"log": lambda *_: None}

FAKE_APT_GET = """#!{python}
\"\"\"apt-get download, as far as the photos source uses it: copies <package>_*.deb from $FAKE_APT_REPO into the
working folder, or fails as apt does for a package it does not know (and then downloads nothing).\"\"\"
import os, pathlib, shutil, sys
repo = pathlib.Path(os.environ["FAKE_APT_REPO"])
with open(repo / "calls.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:2] != ["download"]:
    sys.exit("E: this fake apt-get only downloads")
debs = {{}}
for package in sys.argv[2:]:
    found = sorted(repo.glob(package + "_*.deb"))
    if not found:
        print("E: Unable to locate package " + package, file=sys.stderr)
        sys.exit(100)
    debs[package] = found[-1]
for deb in debs.values():
    shutil.copy(deb, os.getcwd())
"""


def _photo(path: Path, width: int, height: int, seed: int) -> None:
    """A smooth random field with some texture, saved as a JPEG: big enough for the source's size rules."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (height // 64 + 2, width // 64 + 2, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float64)
    field += rng.normal(0, 6, field.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(path, quality=92)


def _build_deb(repo: Path, package: str, version: str, files: dict) -> Path:
    """files: {path inside the package: callable(path) writing it}."""
    root = repo / f".{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <test@example.org>\n"
        f"Description: photos for the fake apt test\n")
    for inner, write in files.items():
        write(root / inner)
    deb = repo / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    shutil.rmtree(root)
    return deb


WALL, PHONE, TEST = "fake-wallpapers", "fake-phone-photos", "fake-test-photos"
PLASMA = "usr/share/wallpapers/Dune/"


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """Three fake packages (six catalogue photos, one of them a plasma wallpaper folder; one pinned validation
    photo; one test photo), a fake apt-get first on PATH, and the catalogue pointed at them."""
    repo = tmp_path / "repo"
    repo.mkdir()
    photo = lambda w, h, seed: (lambda path: _photo(path, w, h, seed))  # noqa: E731

    def plasma(folder_file: Path) -> None:
        folder = folder_file.parent
        folder.mkdir(parents=True, exist_ok=True)
        folder_file.write_text(json.dumps({"KPlugin": {"Authors": [{"Name": "Dune Author"}], "License": "CC-BY-4.0"}}))
        _photo(folder / "contents" / "images" / "1280x960.jpg", 1280, 960, 10)
        _photo(folder / "contents" / "images" / "640x480.jpg", 640, 480, 11)

    wall = {f"usr/share/backgrounds/photo{i}.jpg": photo(1280, 960, i) for i in range(5)}
    wall[PLASMA + "metadata.json"] = plasma
    wall["usr/share/backgrounds/small.jpg"] = photo(800, 600, 7)  # under MIN_LONG_SIDE: left out by name
    _build_deb(repo, WALL, "1.0-1", wall)
    _build_deb(repo, PHONE, "2.3-4", {"usr/share/phone/IMG_1.JPG": photo(1280, 1024, 20)})
    _build_deb(repo, TEST, "0.9-2", {"usr/share/test/bee.jpg": photo(1280, 1024, 30)})

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT_GET.format(python=sys.executable))
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT_REPO", str(repo))

    photos = [(WALL, f"usr/share/backgrounds/photo{i}.jpg", f"Author {i}", "CC0-1.0") for i in range(5)]
    photos += [(WALL, PLASMA, None, None), (WALL, "usr/share/backgrounds/small.jpg", "Small", "CC0-1.0")]
    monkeypatch.setattr(photos_module, "PHOTO_PACKAGES", (WALL, PHONE))
    monkeypatch.setattr(photos_module, "TEST_PACKAGES", (TEST,))
    monkeypatch.setattr(photos_module, "PHOTOS", tuple(photos))
    monkeypatch.setattr(photos_module, "VALIDATION_PHOTOS", ((PHONE, "usr/share/phone/IMG_1.JPG", "Phone Author",
                                                               "CC-BY-SA-4.0", 0.5),))
    test_photos = ((TEST, "usr/share/test/bee.jpg", "Bee Author", "CC0-1.0"),)
    monkeypatch.setattr(photos_module, "TEST_PHOTOS", test_photos)
    monkeypatch.setattr(test_photos_module, "TEST_PHOTOS", test_photos)
    monkeypatch.setattr(test_photos_module, "FROZEN_FILE", tmp_path / "test-split.json")  # none yet
    return repo


def _calls(repo: Path) -> list[str]:
    log = repo / "calls.log"
    return log.read_text().splitlines() if log.is_file() else []


def test_packages_are_downloaded_once_unpacked_and_versioned(fake_apt, tmp_path):
    cache = tmp_path / "cache"
    packages = fetch_photo_packages(cache, **QUIET)
    assert _calls(fake_apt) == [f"download {WALL} {PHONE} {TEST}"]
    assert {name: info["version"] for name, info in packages.items()} == {WALL: "1.0-1", PHONE: "2.3-4", TEST: "0.9-2"}
    assert (packages[PHONE]["root"] / "usr/share/phone/IMG_1.JPG").is_file()
    assert packages[TEST]["deb"] == f"{TEST}_0.9-2_all.deb"
    assert not [p for p in (cache / "photos").iterdir() if p.name.endswith(".unpacking")]

    fetch_photo_packages(cache, **QUIET)  # all unpacked: apt-get is not asked again
    assert len(_calls(fake_apt)) == 1
    (cache / "photos" / PHONE / ".unpacked").unlink()  # an interrupted unpack: only that package again
    fetch_photo_packages(cache, **QUIET)
    assert _calls(fake_apt)[1:] == [f"download {PHONE}"]


def test_a_package_apt_does_not_know_is_named_with_the_fix(fake_apt, tmp_path, monkeypatch):
    monkeypatch.setattr(photos_module, "TEST_PACKAGES", (TEST, "no-such-package"))
    with pytest.raises(PhotosUnavailable, match="no-such-package.*apt-get update.*--source sample"):
        fetch_photo_packages(tmp_path / "cache", **QUIET)


def test_a_broken_deb_is_named_and_nothing_half_unpacked_is_kept(fake_apt, tmp_path):
    deb = next(fake_apt.glob(f"{PHONE}_*.deb"))
    deb.write_bytes(deb.read_bytes()[:300])  # truncated
    cache = tmp_path / "cache"
    with pytest.raises(PhotosUnavailable, match=rf"dpkg -x .*{PHONE}_2.3-4_all.deb"):
        fetch_photo_packages(cache, **QUIET)
    assert not (cache / "photos" / PHONE).exists()
    assert (cache / "photos" / WALL / ".unpacked").is_file()  # the package before it is kept, once


@pytest.mark.slow
def test_the_photos_dataset_from_fake_packages_is_split_credited_and_frozen(fake_apt, tmp_path):
    cache = tmp_path / "cache"
    manifest = prepare_dataset(tmp_path / "a", "photos", "aim", cache_dir=cache, workers=1, **QUIET)
    by_split = {}
    for record in manifest["images"]:
        # whole photos are named by their file, crops carry the photo they come from
        by_split.setdefault(record["split"], set()).add(record.get("photo") or Path(record["file"]).stem)
    # six photos of >= 1280 px hashed into HR / LR / validation; small.jpg left out; the phone photo pinned
    assert len(by_split["train_hr"] | by_split["train_lr"] | by_split["val_hr"]) == 7
    assert f"{WALL}__small" not in set().union(*by_split.values())
    assert f"{PHONE}__IMG_1" in by_split["val_hr"] and by_split["val_hr"] == by_split["val_lr"]
    assert by_split["test_hr"] == by_split["test_lr"] == {f"{TEST}__bee"}
    assert not (by_split["train_hr"] & by_split["train_lr"]) and not (by_split["val_hr"] & by_split["train_hr"])
    assert manifest["counts"]["test_hr"] == manifest["counts"]["test_lr"] == 4
    dune = [r for r in manifest["images"] if r["file"].endswith(f"{WALL}__Dune.png")]
    assert dune[0]["author"] == "Dune Author" and dune[0]["license"] == "CC-BY-4.0"
    assert dune[0]["source"]["path"].endswith("contents/images/1280x960.jpg")  # the largest of the folder
    assert {r["source"]["version"] for r in manifest["images"] if r.get("photo") == f"{TEST}__bee"} == {"0.9-2"}
    assert manifest["test_split"]["verified"] is False and manifest["test_split"]["frozen_as"] is None

    frozen = freeze([tmp_path / "a"], cache / "photos", frozen_on="2026-12-07")
    assert frozen["photos"][0]["sha256"] == sha256_file(cache / "photos" / TEST / "usr/share/test/bee.jpg")
    again = prepare_dataset(tmp_path / "b", "photos", "aim", cache_dir=cache, workers=1, **QUIET)
    assert again["test_split"] == {"frozen_as": "photos-aim-seed0", "verified": True, "differing": []}
    assert len(_calls(fake_apt)) == 1  # the second dataset came from the cache

    # a package update that changes a test photo is refused by name, before anything is written
    _photo(cache / "photos" / TEST / "usr/share/test/bee.jpg", 1280, 1024, 31)
    with pytest.raises(FrozenSplitChanged, match="bee.jpg.*differs from the frozen"):
        prepare_dataset(tmp_path / "c", "photos", "aim", cache_dir=cache, workers=1, **QUIET)
    assert not (tmp_path / "c").exists()
