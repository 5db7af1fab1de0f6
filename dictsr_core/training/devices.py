"""Which device a run uses: the devices this machine has, a checked --device, or CUDA when available."""

from __future__ import annotations

import os

import torch

from dictsr_core.config import ConfigError


def available_devices() -> list[str]:
    """The devices this machine has: cpu, then cuda:i (and mps / xpu:i where present)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += [f"xpu:{i}" for i in range(xpu.device_count())]
    return names


def check_device(device) -> torch.device:
    """torch.device(device) when this machine has it; a ConfigError naming it and what is available otherwise."""
    available = available_devices()

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"device {str(device)!r}: {why}; available: {', '.join(available)}")

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise refuse("not a device name") from None
    if dev.type == "cpu":
        return dev
    kinds = {name.split(":")[0] for name in available}
    if dev.type not in kinds:
        raise refuse(f"this machine has no {dev.type} device")
    if dev.index is not None and f"{dev.type}:{dev.index}" not in available:
        raise refuse(f"this machine has no {dev.type} device {dev.index}")
    return dev


def pick_device(device: str | None = None) -> torch.device:
    """--device (checked: a ConfigError naming it and the available devices), or for None / "auto" (every command's
    default) CUDA when available, else the CPU."""
    if device and device != "auto":
        return check_device(device)
    if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
