"""Run a peer's published ncnn files as they ship (the `ncnn` package, CPU, Vulkan off): the reference the converted
PyTorch network is tested against, and the row `dictsr bench` times against what users of Real-ESRGAN run."""

from __future__ import annotations

import numpy as np


class NcnnUnavailable(RuntimeError):
    """The optional `ncnn` package is missing; the message says how to install it."""


def ncnn_net(param, binary, threads: int = 1, fp32: bool = True):
    """An ncnn.Net loaded from .param/.bin; `fp32` turns off its fp16/bf16 storage and arithmetic (exact reference)."""
    try:
        import ncnn
    except ImportError:
        raise NcnnUnavailable("the `ncnn` package is not installed: pip install -e '.[peers]' (or pip install ncnn)") from None
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = int(threads)
    if fp32:
        for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed"):
            if hasattr(net.opt, flag):
                setattr(net.opt, flag, False)
    if net.load_param(str(param)) != 0 or net.load_model(str(binary)) != 0:
        raise ValueError(f"ncnn could not load {param} / {binary}")
    return net


def ncnn_super_resolve(net, lr: np.ndarray) -> np.ndarray:
    """4x SR of an HxWx3 uint8 image through an ncnn RRDBNet (blob `data` in, `output` out), as uint8."""
    import ncnn

    chw = np.ascontiguousarray(lr.astype(np.float32).transpose(2, 0, 1) / 255.0)
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))  # `chw` stays referenced until extraction: ncnn.Mat does not copy it
    status, out = extractor.extract("output")
    if status != 0:
        raise ValueError(f"ncnn extraction failed (status {status})")
    sr = np.array(out)
    return np.clip(np.round(sr * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
