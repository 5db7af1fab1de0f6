"""`--source photos`: 55 real photographs shipped in Debian wallpaper/test-data packages.

The packages are fetched with ``apt-get download`` into the cache and unpacked with
``dpkg -x``; nothing is installed. Which files are photographs was decided by looking at
every image of >= 1280 px in these packages (the list below); left out are drawings,
renders, gradients, logos, abstract patterns, duplicates (lxqt ``themes/silver/beam.png``,
the other resolutions of plasma wallpapers, the re-encoded libjxl flowers) and the
``Elephants`` painting. Author and licence are transcribed from each package's
``/usr/share/doc/<package>/copyright`` (and, for lxqt, its ``wallpapers/License``; for
plasma, each wallpaper's ``metadata.json``, read at prepare time). Every photo is
downscaled by 2 (MATLAB bicubic) before use, since most are JPEGs.

Catalogue 2 adds ``VALIDATION_PHOTOS``: every camera photo of >= 1280 px in
``forensics-samples-files`` (phone photos, CC-BY-SA-4.0), pinned to validation so that the 50
photos' hashed split, and so every training set, stays as it was (records.assign_splits). The
12-megapixel ones are downscaled by 4, not 2: at 2 their sensor noise would be in the target.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from dictsr_core.data.sources.records import SourceImage, SourcePlan, assign_splits
from dictsr_core.data.sources.test_photos import (TEST_PACKAGES, TEST_PHOTOS, check_source, load_frozen, photo_name,
                                                   split_pre_scale)

PHOTO_PACKAGES = (
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "lxqt-themes",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "libjxl-testdata",
    "forensics-samples-files",
)
# 1: the 50 photos; 2: + VALIDATION_PHOTOS; 3: + the test split (test_photos.py). A dataset made from an older
# catalogue is made again; its training and validation files come out byte-identical.
CATALOGUE = 3
MIN_LONG_SIDE = 1280
PRE_SCALE = 0.5
VAL_CROPS = 4  # 15 validation photos x 4 crops = 60 pairs (the bootstrap resamples photos, not crops)
VAL_CROP = 256  # HR pixels (64 LR)

_LOMIRI = "usr/share/backgrounds/"
_LXQT = "usr/share/lxqt/wallpapers/"
_LXQT_LICENSE = "CC-BY-SA-3.0 (lxqt wallpapers/License; Debian copyright: LGPL-2.1+)"
_MATE = "usr/share/backgrounds/mate/nature/"
_PLASMA = "usr/share/wallpapers/"

# (package, path inside the package, author, licence); a path ending in "/" is a plasma
# wallpaper folder whose largest image is used and whose metadata.json names the author.
PHOTOS = (
    ("libjxl-testdata", "usr/share/libjxl-testdata/jxl/flower/flower.png", "the JPEG XL Project Authors", "BSD-3-clause"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "analogpattern_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "Dragonfly_by_Bolly.jpg", '"Bolly"', "CC-BY-SA-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "Picture_0B_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "Picture_1A_by_freespace.jpg", 'Trevor "Freespace"', "CC-BY-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("lomiri-wallpapers-16.04", _LOMIRI + "Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
    ("lomiri-wallpapers-20.04", _LOMIRI + "Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0"),
    ("lxqt-themes", _LXQT + "after-the-rain.jpg", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "appleflower.png", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "beam.png", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "butterfly.png", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "Butterfly-Kenneth-Wimer.jpg", "Kenneth Wimer", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "cloud.png", "LXQt Project Team", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "drop.png", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "flowers.png", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "fog.jpg", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "this-is-not-windows.jpg", "stefonarch", _LXQT_LICENSE),
    ("lxqt-themes", _LXQT + "Valendas.png", "LXQt Project Team", _LXQT_LICENSE),
    ("mate-backgrounds", _MATE + "Aqua.jpg", "Charles Barbin", "GPL-2+"),
    ("mate-backgrounds", _MATE + "Blinds.jpg", "Lennart Poettering, Andrea Cimitan", "GPL-2+"),
    ("mate-backgrounds", _MATE + "Dune.jpg", "Marco Cogoni, Hylke Bons", "GPL-2+"),
    ("mate-backgrounds", _MATE + "FreshFlower.jpg", "Jens Ansorg", "GPL-2+"),
    ("mate-backgrounds", _MATE + "Garden.jpg", "Charles Barbin", "GPL-2+"),
    ("mate-backgrounds", _MATE + "GreenMeadow.jpg", "Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
    ("mate-backgrounds", _MATE + "LadyBird.jpg", "Charles Barbin", "GPL-2+"),
    ("mate-backgrounds", _MATE + "RainDrops.jpg", '"blackcombwhistler07"', "GPL-2+"),
    ("mate-backgrounds", _MATE + "Storm.jpg", "Sergey Nazarov", "GPL-2+"),
    ("mate-backgrounds", _MATE + "TwoWings.jpg", "Charles Barbin, Hylke Bons", "GPL-2+"),
    ("mate-backgrounds", _MATE + "Wood.jpg", "Jean-François Fortin Tam", "GPL-2+"),
    ("mate-backgrounds", _MATE + "YellowFlower.jpg", "Charles Barbin", "GPL-2+"),
    *(("plasma-workspace-wallpapers", f"{_PLASMA}{name}/", None, None) for name in (
        "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
        "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")),
)
_PLASMA_FALLBACK_LICENSE = "GPL-2+ (Debian copyright: KDE Visual Design Group)"

_FORENSICS = "usr/share/forensics-samples/original-files/"
_ERIBERTO = "Joao Eriberto Mota Filho"
# (package, path, author, licence, pre_scale): validation only. The package's other photo (1024x768) is under
# MIN_LONG_SIDE; its original-multiple/ and carved copies are not used.
VALIDATION_PHOTOS = (
    ("forensics-samples-files", _FORENSICS + "pic1/IMG_1054.JPG", _ERIBERTO, "CC-BY-SA-4.0", 0.5),
    ("forensics-samples-files", _FORENSICS + "pic1/IMG_20200827_231612.jpg", _ERIBERTO, "CC-BY-SA-4.0", 0.25),
    ("forensics-samples-files", _FORENSICS + "pic2/IMG_20191224_234846.jpg", _ERIBERTO, "CC-BY-SA-4.0", 0.25),
    ("forensics-samples-files", _FORENSICS + "pic2/IMG_20200124_231153.jpg", _ERIBERTO, "CC-BY-SA-4.0", 0.25),
    ("forensics-samples-files", _FORENSICS + "pic2/IMG_20200608_111614.jpg", _ERIBERTO, "CC-BY-SA-4.0", 0.25),
)


class PhotosUnavailable(RuntimeError):
    """The Debian packages could not be fetched or unpacked; the message says what to do instead."""


_INSTEAD = ("Use `--source sample` (offline, bundled with scikit-image) or put your own photos in a folder "
            "and run `dictsr prepare --source folder --root FOLDER`.")


def default_cache_dir() -> Path:
    """$DICTSR_CACHE, else ~/.cache/dictsr."""
    return Path(os.environ.get("DICTSR_CACHE") or Path.home() / ".cache" / "dictsr")


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def fetch_photo_packages(cache_dir=None, log=print) -> dict[str, dict]:
    """Download and unpack the packages once into <cache>/photos/<package>; return {package: {root, version}}."""
    photos_dir = Path(cache_dir or default_cache_dir()) / "photos"
    debs_dir = photos_dir / "debs"
    packages = {}
    wanted = PHOTO_PACKAGES + TEST_PACKAGES
    missing = [p for p in wanted if not (photos_dir / p / ".unpacked").is_file()]
    if missing:
        for tool in ("apt-get", "dpkg", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise PhotosUnavailable(f"`{tool}` was not found: the photos source needs a Debian/Ubuntu system with apt. {_INSTEAD}")
        debs_dir.mkdir(parents=True, exist_ok=True)
        log(f"[photos] apt-get download {' '.join(missing)} -> {debs_dir}")
        result = _run(["apt-get", "download", *missing], debs_dir)
        if result.returncode != 0:
            hint = " Run `apt-get update` once first (as root) so that apt knows the packages." if "Unable to locate" in result.stderr or "E:" in result.stderr else ""
            raise PhotosUnavailable(f"`apt-get download` failed: {result.stderr.strip()[-800:]}.{hint} {_INSTEAD}")
    for package in wanted:
        target = photos_dir / package
        if package in missing:
            debs = sorted(debs_dir.glob(f"{package}_*.deb"))
            if not debs:
                raise PhotosUnavailable(f"no .deb for {package} in {debs_dir} after apt-get download. {_INSTEAD}")
            staging = photos_dir / f".{package}.unpacking"
            shutil.rmtree(staging, ignore_errors=True)
            result = _run(["dpkg", "-x", str(debs[-1]), str(staging)], photos_dir)
            if result.returncode != 0:
                raise PhotosUnavailable(f"`dpkg -x {debs[-1]}` failed: {result.stderr.strip()[-800:]}. {_INSTEAD}")
            version = _run(["dpkg-deb", "--field", str(debs[-1]), "Version"], photos_dir).stdout.strip()
            (staging / ".unpacked").write_text(json.dumps({"deb": debs[-1].name, "version": version}))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        info = json.loads((target / ".unpacked").read_text())
        packages[package] = {"root": target, "version": info["version"], "deb": info["deb"]}
    return packages


def _largest_wallpaper(folder: Path) -> Path:
    sizes = []
    for path in (folder / "contents" / "images").iterdir():
        match = re.fullmatch(r"(\d+)x(\d+)\.(jpg|jpeg|png)", path.name)
        if match:
            sizes.append((int(match[1]) * int(match[2]), path.name, path))
    if not sizes:
        raise PhotosUnavailable(f"{folder}: no <W>x<H> images in contents/images; the package layout changed")
    return max(sizes)[2]


def _plasma_credits(folder: Path) -> tuple[str | None, str]:
    try:
        plugin = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))["KPlugin"]
    except (OSError, ValueError, KeyError):
        return None, _PLASMA_FALLBACK_LICENSE
    authors = ", ".join(a["Name"] for a in plugin.get("Authors", []) if "Name" in a) or None
    return authors, plugin.get("License") or _PLASMA_FALLBACK_LICENSE


def photo_images(cache_dir=None, log=print) -> list[SourceImage]:
    """The catalogued photographs as SourceImages (fetching the packages if needed)."""
    packages = fetch_photo_packages(cache_dir, log)
    rows = [(*row, PRE_SCALE, None) for row in PHOTOS] + [(*row, "val") for row in VALIDATION_PHOTOS]
    images = []
    for package, inner, author, license_, pre_scale, split in rows:
        info = packages[package]
        path = info["root"] / inner
        if inner.endswith("/"):
            author, license_ = _plasma_credits(path)
            name = f"{package}__{path.name}"
            path = _largest_wallpaper(path)
            inner = inner + "contents/images/" + path.name
        else:
            name = f"{package}__{Path(inner).stem}"
        if not path.is_file():
            raise PhotosUnavailable(f"{path}: listed photo missing from {package} {info['version']}; the package changed")
        with Image.open(path) as opened:
            if max(opened.size) < MIN_LONG_SIDE:
                log(f"[photos] leaving out {path}: {opened.size[0]}x{opened.size[1]} is under {MIN_LONG_SIDE} px")
                continue
        images.append(SourceImage(
            name=name, loader="file", ref=str(path),
            origin={"debian_package": package, "version": info["version"], "path": "/" + inner,
                    "copyright_file": f"/usr/share/doc/{package}/copyright"},
            author=author, license=license_, pre_scale=pre_scale, split=split))
    return images + _test_images(packages)


def _test_images(packages: dict) -> list[SourceImage]:
    """The frozen test split's photos (test_photos.py), each checked against its frozen sha256."""
    frozen = load_frozen()
    images = []
    for package, inner, author, license_ in TEST_PHOTOS:
        info = packages[package]
        path = info["root"] / inner
        if not path.is_file():
            raise PhotosUnavailable(f"{path}: listed test photo missing from {package} {info['version']}; the package changed")
        name = photo_name(package, inner)
        check_source(name, path, frozen)
        with Image.open(path) as opened:
            width, height = opened.size
        images.append(SourceImage(
            name=name, loader="file", ref=str(path),
            origin={"debian_package": package, "version": info["version"], "path": "/" + inner,
                    "copyright_file": f"/usr/share/doc/{package}/copyright"},
            author=author, license=license_, pre_scale=split_pre_scale(width, height), split="test"))
    return images


def photos_plan(cache_dir=None, log=print) -> SourcePlan:
    """The photographs split three ways, disjointly (see records.assign_splits)."""
    return SourcePlan(source="photos", splits=assign_splits(photo_images(cache_dir, log)), real_lr=False,
                      val_crops=VAL_CROPS, val_crop=VAL_CROP,
                      notes={"selection": "hand-picked list in dictsr_core/data/sources/photos.py",
                             "catalogue": CATALOGUE, "min_long_side": MIN_LONG_SIDE, "pre_scale": PRE_SCALE,
                             "split": "by a hash of the photo name, 20% validation, the rest alternating HR / LR; "
                                      "VALIDATION_PHOTOS pinned to validation; TEST_PHOTOS (test_photos.py) "
                                      "the test split, frozen in data/test-split.json"})
