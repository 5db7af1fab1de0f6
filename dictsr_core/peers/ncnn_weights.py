"""Read an ncnn RRDBNet (``.param`` + ``.bin``) into a PyTorch state dict, so the published weights run through
the project's own inference path (tiling, EXIF, 16-bit, CUDA).

ncnn's ``.bin`` holds, for each layer with weights in ``.param`` order, the weight blob (a 4-byte tag: 0 for
float32, 0x01306B47 for float16, then the values) followed by the bias as raw float32. Real-ESRGAN's and RealSR's
ncnn exports are RRDBNet graphs whose 351 convolutions come in the order of the ESRGAN state dict (first conv,
23 x 3 x 5 dense-block convs, trunk conv, two upsampling convs, HR conv, last conv), so the k-th convolution of the
file fills the k-th (weight, bias) pair. Every shape is checked; a file that is not such a graph is refused.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

FP32_TAG = 0
FP16_TAG = 0x01306B47


class NcnnFormatError(ValueError):
    """The .param / .bin pair is not an RRDBNet export this reader understands; the message names the file."""


def parse_param(path) -> list[dict]:
    """The Convolution layers of a .param file, in order: {name, out, kernel, bias, weight_size}."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise NcnnFormatError(f"{path}: not an ncnn .param file (magic {lines[0][:20]!r})")
    convs = []
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        if kind in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "InnerProduct") and kind != "Convolution":
            raise NcnnFormatError(f"{path}: layer {name} is a {kind}; only plain convolutions are read")
        if kind != "Convolution":
            continue
        params = dict(item.split("=", 1) for item in fields[4 + n_in + n_out:] if "=" in item)
        convs.append({"name": name, "out": int(params.get("0", 0)), "kernel": int(params.get("1", 1)),
                      "bias": int(params.get("5", 0)) == 1, "weight_size": int(params.get("6", 0))})
    return convs


def read_bin(param_path, bin_path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight OIHW float32, bias) for each Convolution of the .param, read from the .bin."""
    bin_path = Path(bin_path)
    data = bin_path.read_bytes()
    offset = 0
    layers = []
    for conv in parse_param(param_path):
        if offset + 4 > len(data):
            raise NcnnFormatError(f"{bin_path}: ends before the weights of {conv['name']}")
        (tag,) = struct.unpack_from("<I", data, offset)
        offset += 4
        count = conv["weight_size"]
        if tag == FP16_TAG:
            weight = np.frombuffer(data, dtype="<f2", count=count, offset=offset).astype(np.float32)
            offset += 2 * count
            offset += (-offset) % 4  # fp16 blobs are padded to 4 bytes
        elif tag == FP32_TAG:
            weight = np.frombuffer(data, dtype="<f4", count=count, offset=offset).copy()
            offset += 4 * count
        else:
            raise NcnnFormatError(f"{bin_path}: {conv['name']} has weight tag {tag:#x} (quantized?); only fp32/fp16 are read")
        in_channels = count // (conv["out"] * conv["kernel"] ** 2)
        if in_channels * conv["out"] * conv["kernel"] ** 2 != count:
            raise NcnnFormatError(f"{bin_path}: {conv['name']} holds {count} weights, not a multiple of out x k x k")
        weight = weight.reshape(conv["out"], in_channels, conv["kernel"], conv["kernel"])
        bias = None
        if conv["bias"]:
            bias = np.frombuffer(data, dtype="<f4", count=conv["out"], offset=offset).copy()
            offset += 4 * conv["out"]
        layers.append((weight, bias))
    if offset != len(data):
        raise NcnnFormatError(f"{bin_path}: {len(data) - offset} bytes left after the last convolution")
    return layers


def rrdbnet_state_dict(param_path, bin_path, template: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The ncnn convolutions as `template`'s state dict (its (weight, bias) pairs in order), every shape checked."""
    layers = read_bin(param_path, bin_path)
    target = template.state_dict()
    names = [key[: -len(".weight")] for key in target if key.endswith(".weight")]
    if len(names) != len(layers):
        raise NcnnFormatError(f"{bin_path}: {len(layers)} convolutions, the network has {len(names)}")
    state = {}
    for name, (weight, bias) in zip(names, layers):
        if tuple(target[f"{name}.weight"].shape) != weight.shape:
            raise NcnnFormatError(f"{bin_path}: convolution for {name} is {weight.shape}, expected "
                                  f"{tuple(target[name + '.weight'].shape)}")
        state[f"{name}.weight"] = torch.from_numpy(weight)
        if f"{name}.bias" in target:
            if bias is None:
                raise NcnnFormatError(f"{bin_path}: convolution for {name} has no bias")
            state[f"{name}.bias"] = torch.from_numpy(bias)
    return state
