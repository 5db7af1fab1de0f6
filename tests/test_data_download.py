"""`--download`: an unreachable host fails fast, with a message that says what to do; archives unzip into place."""

import time
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from dictsr_core.cli import main as cli_main
from dictsr_core.data.io import write_rgb
from dictsr_core.data.sources import download as download_module
from dictsr_core.data.sources.download import DATASET_URLS, DownloadError, download_dataset


def test_unreachable_host_fails_fast_with_instructions(tmp_path, monkeypatch):
    # Port 9 on localhost: connection refused at once, no network involved.
    monkeypatch.setitem(DATASET_URLS, "div2k", [("http://127.0.0.1:9/DIV2K_train_HR.zip", "DIV2K_train_HR")])
    start = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download_dataset("div2k", tmp_path, timeout=5)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert "http://127.0.0.1:9/DIV2K_train_HR.zip" in message and "--source folder --root" in message
    assert not list((tmp_path / "datasets" / "div2k" / "archives").iterdir())  # no partial file left


def test_cli_download_offline_exits_2(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code = cli_main(["prepare", "--download", "aim-rwsr", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "train-noisy-images.zip" in err and "Name or service not known" in err
    assert not (tmp_path / "out").exists()


def test_downloaded_archives_unzip_into_a_usable_root(tmp_path, monkeypatch):
    # Serve zips from disk through file:// URLs: one with a top folder, one flat (as NTIRE's are).
    sources = tmp_path / "server"
    sources.mkdir()
    image = tmp_path / "img.png"
    for i, (folder, shape, top) in enumerate([("DIV2K_train_HR", (256, 256, 3), True), ("DIV2K_valid_HR", (64, 64, 3), False)]):
        entries = []
        for j in range(3 if i == 0 else 1):
            write_rgb(image, np.random.default_rng(i * 10 + j).integers(0, 256, shape, dtype=np.uint8))
            entries.append((f"{folder}/{j:04d}.png" if top else f"{j:04d}.png", image.read_bytes()))
        with zipfile.ZipFile(sources / f"{folder}.zip", "w") as archive:
            for name, data in entries:
                archive.writestr(name, data)
    monkeypatch.setitem(DATASET_URLS, "div2k", [((sources / f"{f}.zip").as_uri(), f) for f in ("DIV2K_train_HR", "DIV2K_valid_HR")])
    root = download_dataset("div2k", tmp_path / "cache", log=lambda *_: None)
    assert sorted(p.name for p in (root / "DIV2K_train_HR").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert [p.name for p in (root / "DIV2K_valid_HR").iterdir()] == ["0000.png"]
    code = cli_main(["prepare", "--download", "div2k", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert code == 0 and (tmp_path / "out" / "val_lr" / "0000.png").is_file()


def test_known_dataset_urls_point_at_the_public_hosts():
    assert set(DATASET_URLS) == {"aim-rwsr", "ntire-rwsr", "div2k"}
    for urls in DATASET_URLS.values():
        assert all("data.vision.ee.ethz.ch" in url for url, _ in urls)
    assert download_module._AIM.endswith("/AIM19/")
