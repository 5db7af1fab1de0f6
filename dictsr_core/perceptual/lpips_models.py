"""LPIPS v0.1 models whose trunks are our offline-converted torchvision backbones (never random).

`lpips.LPIPS(net=...)` as shipped downloads the trunk from the internet; here the package builds a
randomly initialised trunk (`pnet_rand=True`) plus its own calibrated linear layers, and the trunk is
then overwritten, strictly, with the verified weights from `dictsr_core.perceptual.weights`.
"""

from __future__ import annotations

import warnings

import lpips
import torch

from dictsr_core.perceptual.weights import WeightsVerificationError, load_backbone_state, resolve_cache_dir

LPIPS_TRUNKS = {"alex": "alexnet", "vgg": "vgg16"}

_BUILT: dict[tuple[str, str, str], lpips.LPIPS] = {}


def _load_trunk(trunk: torch.nn.Module, features_state: dict, source: str) -> None:
    """Map `features.{idx}.*` onto lpips' `slice{s}.{idx}.*` (children keep their torchvision index)."""
    slice_of_index = {
        index: slice_name
        for slice_name, block in trunk.named_children()
        if slice_name.startswith("slice")
        for index in block._modules
    }
    mapped = {}
    for key, tensor in features_state.items():
        index, _, param = key.partition(".")
        if index not in slice_of_index:
            raise WeightsVerificationError(f"{source}: {key} has no place in the lpips trunk {sorted(slice_of_index)}")
        mapped[f"{slice_of_index[index]}.{index}.{param}"] = tensor
    try:
        trunk.load_state_dict(mapped, strict=True)  # every trunk parameter must come from the file
    except RuntimeError as exc:
        raise WeightsVerificationError(f"{source}: does not fit the lpips trunk: {exc}") from exc


def build_lpips(net: str = "alex", cache_dir=None, device=None) -> lpips.LPIPS:
    """LPIPS v0.1 (`net` 'alex' or 'vgg'), eval mode, frozen; inputs NCHW in [-1, 1].

    Cached per (net, device, cache dir) within the process: callers share it and must not modify it.
    Differentiable with respect to its inputs, so it also serves as the perceptual loss.
    Raises `MissingWeightsError` (run `dictsr weights`) when the backbone is not in the cache.
    """
    if net not in LPIPS_TRUNKS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(LPIPS_TRUNKS)}")
    device = torch.device(device if device is not None else "cpu")
    key = (net, str(device), str(resolve_cache_dir(cache_dir)))
    if key not in _BUILT:
        features_state = load_backbone_state(LPIPS_TRUNKS[net], cache_dir)
        # its random initialisation (replaced by the weights below) must not draw from the global RNG: a training
        # run's draws would then depend on whether LPIPS was already built in this process
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecation notes about lpips' `pretrained=False`
            model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        _load_trunk(model.net, features_state, f"{LPIPS_TRUNKS[net]} backbone")
        model.eval().requires_grad_(False)
        _BUILT[key] = model.to(device)
    return _BUILT[key]
