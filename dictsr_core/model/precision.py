"""Where a model step must stay in fp32 under autocast (lookups, the colour-carrying low-pass base)."""

from __future__ import annotations

import contextlib

import torch


def autocast_off(device: torch.device):
    """Autocast disabled on `device` (a no-op context where autocast does not apply, e.g. "meta" for cost counting)."""
    if device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)
