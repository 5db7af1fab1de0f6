"""The fast paths of inference: channels_last and torch.compile (FastInference), CUDA graphs per input shape,
and bf16 autocast where the device has it natively. super_resolve (tiled.py) runs through them when asked.
"""

from __future__ import annotations

import weakref

import torch

from dictsr_core.inference.cuda_graphs import CudaGraphModule

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_bf16_supported() -> bool:
    """oneDNN has native bf16 kernels here (AVX512-BF16 or AMX); elsewhere bf16 on the CPU is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(precision: str, device) -> bool:
    """--precision -> bf16 autocast on/off. auto: bf16 on CUDA, fp32 on the CPU (scores stay exact there;
    bf16 on an AVX512-BF16/AMX CPU is about 1.8x faster and agrees with fp32 to 47-50 dB PSNR)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "auto":
        return device.type == "cuda"
    if precision == "bf16" and device.type == "cpu":
        if not cpu_bf16_supported():
            print("[sr] this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated and slower than fp32")
    return precision == "bf16"


MAX_GRAPHS = 8  # captured input shapes per model (each holds its own activation memory)
_graphs: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def graphed(model, x: torch.Tensor, amp: bool):
    """The CUDA graph replaying model(x) for x's shape (captured on first use), or None past MAX_GRAPHS shapes."""
    cache = _graphs.setdefault(model, {})
    key = (tuple(x.shape), amp)
    if key not in cache and len(cache) < MAX_GRAPHS:
        cache[key] = CudaGraphModule(model, x, autocast_bf16=amp)
    return cache.get(key)


class FastInference(torch.nn.Module):
    """An inference module in channels_last (the fast layout of cuDNN and oneDNN), optionally compiled.

    A compile failure at the first call (no compiler, unsupported op) prints why and runs eagerly from
    then on. super_resolve feeds it channels_last inputs; attributes it needs pass through.
    """

    def __init__(self, model: torch.nn.Module, compile: bool = False, channels_last: bool = True):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.channels_last = channels_last
        self.compiled = torch.compile(self.model) if compile else None
        self.cfg, self.code_patch = model.cfg, model.code_patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as error:  # noqa: BLE001 - compiling is an optimisation; eager always works
                print(f"[sr] torch.compile failed ({type(error).__name__}: {error}); running eager")
                self.compiled = None
        return self.model(x)
