"""The `test` split of `--source photos`: 24 camera photos from Debian packages no earlier choice touched.

Validation is for choices, test is for reporting. These photos come from packages that were never part of the
training or validation catalogue, were catalogued by a rule written before any model was scored on them, and are
frozen with the sha256 of every source file and every prepared test file in ``data/test-split.json`` (committed on
2026-12-07, before any scoring). `prepare` refuses a source file whose bytes differ from the frozen list and records
in the manifest whether its prepared test files match the frozen ones.

The rule (how the list was made): every Debian bookworm package whose image files (``apt-file``, names or folders
suggesting photos, backgrounds, samples or puzzles) held camera photographs of >= 640 px on the short side and that
the catalogue did not use yet: lifeograph, gdk-pixbuf-tests, palapeli-data, kodi-data, psychtoolbox-3-common,
scribus-template, python-kivy-examples, darknet, puzzle-jigsaw. Every camera photo in them is listed; left out are
renders, logos, gradients, screenshots, astronomical images (scribus ``moon.jpg``, kodi ``halfmoon`` / ``moon``),
photos composited with drawn light effects (kodi ``music.jpg``), graphic collages (psychtoolbox ``composite.jpg``)
and copies of a listed photo (psychtoolbox's other ``konijntjes`` / ``stim1`` files, blurred or grey variants).

Each photo is downscaled by 2 with MATLAB bicubic (by 4 from 12 megapixels up), as the catalogue's photos are, but
never below 512 px on its short side, so that its four 256 px crops (one per quadrant) never overlap.
"""

from __future__ import annotations

import json
from pathlib import Path

from dictsr_core.perceptual.weights import sha256_file

TEST_PACKAGES = (
    "lifeograph",
    "gdk-pixbuf-tests",
    "palapeli-data",
    "kodi-data",
    "psychtoolbox-3-common",
    "scribus-template",
    "python-kivy-examples",
    "darknet",
    "puzzle-jigsaw",
)
TEST_MIN_SHORT_SIDE = 512  # after pre-scaling: four disjoint 256 px crops
TEST_CROPS = 4
FROZEN_FILE = Path(__file__).resolve().parents[3] / "data" / "test-split.json"

_LIFEOGRAPH = "usr/share/net.sourceforge.Lifeograph/backgrounds/"
_PALAPELI = "usr/share/palapeli/collection/"
_PSYCH = "usr/share/psychtoolbox-3/"
_JIGSAW = "usr/share/puzzle-jigsaw/"
_LIFEOGRAPH_CREDIT = ("Ahmet Öztürk (lifeograph)", "GPL-3+ (Debian copyright, Files: *)")
_PEXELS = ("Pexels contributors", "CC0-1.0 (Debian copyright, Files: samples/*)")

# (package, path inside the package, author, licence); authors and licences from each package's
# /usr/share/doc/<package>/copyright (palapeli: each puzzle's .desktop file; kodi: its home-images LICENSE grant)
TEST_PHOTOS = (
    *(("lifeograph", _LIFEOGRAPH + name, *_LIFEOGRAPH_CREDIT)
      for name in ("cloister.jpg", "fog.jpg", "horizon.jpg", "pier.jpg", "sands.jpg", "snow.jpg", "street.jpg",
                   "trams.jpg")),
    ("gdk-pixbuf-tests", "usr/libexec/installed-tests/gdk-pixbuf/issue70.jpg", "gdk-pixbuf contributors",
     "LGPL-2+ (Debian copyright, Files: tests/*)"),
    ("palapeli-data", _PALAPELI + "castle-maintenon.jpg", "Eric Pouhier", "GFDL"),
    ("palapeli-data", _PALAPELI + "cincinnati-bridge.jpg", "Derek Jensen", "public domain"),
    ("palapeli-data", _PALAPELI + "citrus-fruits.jpg", "US Department of Agriculture", "public domain"),
    ("palapeli-data", _PALAPELI + "european-honey-bee.jpg", "John Severns", "public domain"),
    ("palapeli-data", _PALAPELI + "panther-chameleon-female.jpg", "B. Navez and others", "GFDL"),
    ("kodi-data", "usr/share/kodi/addons/skin.estuary/extras/home-images/movie.jpg", "unknown (Kodi skin.estuary)",
     "CC0-1.0 (home-images/LICENSE)"),
    ("psychtoolbox-3-common", _PSYCH + "PsychDemos/konijntjes1024x768.jpg", "Psychtoolbox authors",
     "Expat (Debian copyright, Files: *)"),
    ("psychtoolbox-3-common", _PSYCH + "PsychHardware/EyelinkToolbox/EyelinkDemos/SR-ResearchDemo/town.jpg",
     "SR Research (Psychtoolbox Eyelink demos)", "Expat (Debian copyright, Files: *)"),
    ("scribus-template", "usr/share/scribus/templates/br2/nature.jpg", "Riku Leino", "public domain"),
    ("scribus-template", "usr/share/scribus/templates/br2/sunset.jpg", "Riku Leino", "public domain"),
    ("python-kivy-examples", "usr/share/kivy-examples/demo/pictures/images/Wall.jpg", "Kivy Team and contributors",
     "Expat (Debian copyright, Files: *)"),
    ("darknet", "usr/share/darknet/data/kite.jpg", "Joseph Redmon (darknet)", "GPL-3.0+ or MIT or WTFPL"),
    ("puzzle-jigsaw", _JIGSAW + "samples/cat-animal-cat-portrait-mackerel.jpg", *_PEXELS),
    ("puzzle-jigsaw", _JIGSAW + "samples/pexels-photo-302304.jpeg", *_PEXELS),
    ("puzzle-jigsaw", _JIGSAW + "images/table.png", "DanSoft", "GPL-3+ (Debian copyright, Files: *)"),
)


class FrozenSplitChanged(RuntimeError):
    """A test photo's bytes differ from the frozen list: the test split would no longer be the one reported."""


def split_pre_scale(width: int, height: int) -> float:
    """Half size (a quarter from 12 MP up), but never under TEST_MIN_SHORT_SIDE on the short side."""
    base = 0.25 if width * height >= 12_000_000 else 0.5
    return max(base, TEST_MIN_SHORT_SIDE / min(width, height))


def photo_name(package: str, inner: str) -> str:
    return f"{package}__{Path(inner).stem}"


def load_frozen(path=None) -> dict | None:
    """The frozen test split (data/test-split.json), or None where this checkout has none."""
    path = Path(path or FROZEN_FILE)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def check_source(name: str, path: Path, frozen: dict | None) -> None:
    """Refuse a test photo whose bytes are not the frozen ones (a package update would change the test split)."""
    if not frozen:
        return
    expected = {photo["name"]: photo["sha256"] for photo in frozen["photos"]}
    if name not in expected:
        raise FrozenSplitChanged(f"{path}: test photo {name} is not in the frozen test split {FROZEN_FILE.name}")
    actual = sha256_file(path)
    if actual != expected[name]:
        raise FrozenSplitChanged(f"{path}: sha256 {actual[:16]}... differs from the frozen {expected[name][:16]}... "
                               f"({FROZEN_FILE.name}); the package changed, so the test split would not be the one "
                               "reported. Use the frozen package version or make a new split with a new date.")


def verify_prepared(manifest: dict, data_dir: Path, frozen: dict | None) -> dict:
    """Compare a prepared dataset's test files with the frozen ones: {frozen_as, verified, differing}."""
    key = f"{manifest.get('source')}-{(manifest.get('degradation') or {}).get('name')}-seed{manifest.get('seed')}"
    files = ((frozen or {}).get("files") or {}).get(key)
    if files is None:
        return {"frozen_as": None, "verified": False, "differing": [], "why": f"no frozen files for {key}"}
    written = {record["file"] for record in manifest["images"] if record["split"] in ("test_lr", "test_hr")}
    differing = sorted(set(files) ^ written)
    differing += sorted(name for name in set(files) & written if sha256_file(data_dir / name) != files[name])
    return {"frozen_as": key, "verified": not differing, "differing": differing[:20]}


def freeze(data_dirs, photos_dir, frozen_on: str = "", path=None) -> dict:
    """Write data/test-split.json from prepared photos datasets and the unpacked packages under `photos_dir`
    (<cache>/photos): each test photo's source sha256 and every prepared test file's sha256 per dataset. Done once,
    before any model is scored on the split."""
    from dictsr_core.atomic import atomic_write_json

    photos_dir = Path(photos_dir)
    photos = []
    for package, inner, author, license_ in TEST_PHOTOS:
        source = photos_dir / package / inner
        version = json.loads((photos_dir / package / ".unpacked").read_text())["version"]
        photos.append({"name": photo_name(package, inner), "package": package, "version": version, "path": "/" + inner,
                       "author": author, "license": license_, "sha256": sha256_file(source)})
    files = {}
    for data_dir in map(Path, data_dirs):
        manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
        key = f"{manifest['source']}-{manifest['degradation']['name']}-seed{manifest['seed']}"
        files[key] = {record["file"]: sha256_file(data_dir / record["file"]) for record in manifest["images"]
                      if record["split"] in ("test_lr", "test_hr")}
    frozen = {"frozen_on": frozen_on, "rule": __doc__.strip(), "crops_per_photo": TEST_CROPS,
              "photos": photos, "files": files}
    atomic_write_json(Path(path or FROZEN_FILE), frozen)
    return frozen
