"""What `dictsr sr` reads and writes around the network, as Real-ESRGAN's inference_realesrgan.py does: folders as
inputs, output names with --suffix and --ext, a final --outscale, and an alpha channel upscaled apart and kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dictsr_core.data.io import IMAGE_SUFFIXES, list_images

EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif"}
NETWORK_SCALE = 4


def expand_inputs(inputs) -> list[str]:
    """Files as given, folders as their images (not recursive, sorted by name); a folder without images is a
    FileNotFoundError naming it. Anything else stays as given: reading it names what is wrong with it, and the
    other inputs are still written."""
    out = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise FileNotFoundError(f"{name}: a folder without images ({', '.join(IMAGE_SUFFIXES)})")
            out += [str(p) for p in found]
        else:
            out.append(str(name))
    return out


def output_name(input_name: str, suffix: str = "", ext: str = "png") -> str:
    """`<stem>[_<suffix>].<ext>`; ext "auto" keeps the input's own format where it can be written, else PNG."""
    path = Path(input_name)
    if ext == "auto":
        own = path.suffix.lower()
        extension = {".jpeg": ".jpg", ".tiff": ".tif"}.get(own, own)
        extension = extension if extension in EXTENSIONS.values() else ".png"
    else:
        extension = EXTENSIONS[ext]
    return path.stem + (f"_{suffix}" if suffix else "") + extension


def with_alpha_extension(name: str) -> str:
    """The output name an image with an alpha channel gets: JPEG has none, so .jpg becomes .png."""
    path = Path(name)
    return str(path.with_suffix(".png")) if path.suffix == ".jpg" else name


def resize(array: np.ndarray, width: int, height: int, resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """A uint8 HxW or HxWxC array resized with PIL (Lanczos unless said otherwise)."""
    if array.shape[1] == width and array.shape[0] == height:
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def finish_output(sr: np.ndarray, alpha: np.ndarray | None, input_shape, outscale: float = NETWORK_SCALE) -> np.ndarray:
    """The network's 4x RGB output, resized to `outscale` x the input (Lanczos, as Real-ESRGAN's --outscale), with
    the input's alpha upscaled bicubically to the same size appended as a fourth channel where it has one."""
    height, width = input_shape[:2]
    target_w, target_h = max(1, round(width * outscale)), max(1, round(height * outscale))
    out = resize(sr, target_w, target_h)
    if alpha is None:
        return out
    return np.dstack([out, resize(alpha, target_w, target_h, Image.Resampling.BICUBIC)])
