"""`--download NAME`: fetch AIM-RWSR, NTIRE-RWSR or DIV2K from their public hosts into the cache.

URLs: DIV2K from the ETH Zurich CVL site; AIM-RWSR and NTIRE-RWSR from the archives that
DeFlow's ``datasets/*.sh`` scripts download (ETH Zurich, Andreas Lugmayr). Each archive is
streamed to a ``.part`` file, renamed when complete, and unzipped into a staging folder
that is renamed into place, so an interrupted download never looks finished. Without
network the first request fails within the timeout with a message saying what to do.
"""

from __future__ import annotations

import shutil
import socket
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

_AIM = "https://data.vision.ee.ethz.ch/alugmayr/real-world-sr/AIM19/"
_NTIRE19 = "https://data.vision.ee.ethz.ch/alugmayr/NTIRE2019/public/"
_NTIRE20 = "https://data.vision.ee.ethz.ch/alugmayr/real-world-sr/NTIRE20/"
_DIV2K = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"

# name -> [(url, folder the archive's images must end up in)]
DATASET_URLS = {
    "aim-rwsr": [(_AIM + f"{n}.zip", n) for n in ("train-noisy-images", "train-clean-images", "valid-input-noisy", "valid-gt-clean")],
    "ntire-rwsr": [(_NTIRE19 + f"{n}.zip", n) for n in ("Corrupted-tr-x", "Corrupted-tr-y", "Corrupted-va-x")]
    + [(_NTIRE20 + "track1-valid-gt.zip", "track1-valid-gt")],
    "div2k": [(_DIV2K + f"{n}.zip", n) for n in ("DIV2K_train_HR", "DIV2K_valid_HR")],
}


class DownloadError(RuntimeError):
    """A dataset archive could not be fetched or unpacked; the message names the URL and the way out."""


def _manual_hint(name: str, root: Path) -> str:
    urls = " ".join(url for url, _ in DATASET_URLS[name])
    return (f"Download the archives by hand on a machine with internet ({urls}), unzip them so that "
            f"{', '.join(folder for _, folder in DATASET_URLS[name])} are folders under one directory, and run "
            f"`dictsr prepare --source folder --root DIRECTORY` (or copy them into {root}).")


def _fetch(url: str, target: Path, timeout: float, log) -> None:
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0)
            log(f"[download] {url} ({total / 1e6:.0f} MB)" if total else f"[download] {url}")
            shutil.copyfileobj(response, handle, length=1 << 20)
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError):
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)


def _unzip(archive: Path, destination: Path) -> None:
    """Unzip so that the images end up in ``destination`` whether or not the archive has a top folder."""
    staging = destination.with_name(f".{destination.name}.unzipping")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)
    except zipfile.BadZipFile as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"{archive}: not a valid zip archive ({error}); delete it and download again") from None
    inner = staging / destination.name
    source = inner if inner.is_dir() and len(list(staging.iterdir())) == 1 else staging
    shutil.rmtree(destination, ignore_errors=True)
    source.rename(destination)
    shutil.rmtree(staging, ignore_errors=True)


def download_dataset(name: str, cache_dir, timeout: float = 15.0, log=print) -> Path:
    """Fetch and unzip dataset ``name`` under <cache>/datasets/<name>; return that folder (a --root)."""
    if name not in DATASET_URLS:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {sorted(DATASET_URLS)}")
    root = Path(cache_dir) / "datasets" / name
    archives = root / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    for url, folder in DATASET_URLS[name]:
        destination = root / folder
        if destination.is_dir():
            continue
        archive = archives / url.rsplit("/", 1)[1]
        if not archive.is_file():
            try:
                _fetch(url, archive, timeout, log)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise DownloadError(f"could not download {url} ({reason}); this machine may be offline or the host "
                                    f"unreachable. {_manual_hint(name, root)}") from None
        _unzip(archive, destination)
    return root
