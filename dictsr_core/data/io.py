"""Reading and writing RGB images: every PIL mode in, uint8 RGB out, and errors that name the file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dictsr_core.atomic import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")

# Pixel limits, chosen so that dictsr always reads what it writes. `sr` takes inputs of up to
# MAX_SR_INPUT_PIXELS (4096 x 4096; a 4000 x 3000 photo is 12 MP) and writes 4x outputs, 16 times the
# pixels; every reader accepts up to MAX_PIXELS = 16 * MAX_SR_INPUT_PIXELS (16384 x 16384, 0.8 GB as
# uint8 RGB). Pillow's own default (a warning at 89 MP, an error at 179 MP) would refuse the 16000 x 12000
# output of a 4000 x 3000 photo, so it is raised to ours; past a limit a file is an ImageError that names it.
MAX_SR_INPUT_PIXELS = 4096 * 4096
MAX_PIXELS = 16 * MAX_SR_INPUT_PIXELS
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow then warns past MAX_PIXELS (read_rgb refuses first) and errors past 2x


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode (1, L, LA, P, RGBA, I;16, I, F, CMYK, ...) as an HxWx3 uint8 array.

    Alpha is composited over white (as viewers show it); 16-bit and float images are
    scaled from their full range rather than clipped.
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def check_pixels(path, width: int, height: int, max_pixels: int = MAX_PIXELS, what: str = "dictsr reads") -> None:
    """ImageError naming the file when width x height is over `max_pixels`."""
    if width * height > max_pixels:
        raise ImageError(path, f"image is {width}x{height} ({width * height / 1e6:.1f} million pixels), over the "
                               f"{max_pixels / 1e6:.1f} million pixels {what}; crop or downscale it")


def _header_size(path) -> tuple[int, int] | None:
    """(width, height) from the file's header alone, past Pillow's size check (nothing is decoded)."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - only for the error message
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def read_rgb(path, min_size: int = 1, max_pixels: int = MAX_PIXELS, what: str = "dictsr reads") -> np.ndarray:
    """Decode an image file fully into HxWx3 uint8; raise ImageError naming the file otherwise.

    The EXIF orientation tag is applied, so a photo comes out the way viewers show it. An image over
    `max_pixels` is refused from its header, before any pixel is decoded (see MAX_PIXELS).
    """
    return _read(path, min_size, max_pixels, what, pil_to_rgb)


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def file_has_alpha(path) -> bool:
    """Whether the image file has an alpha channel, from its header; False where it cannot be opened (reading it
    later names the problem)."""
    try:
        with Image.open(path) as image:
            return has_alpha(image)
    except Exception:  # noqa: BLE001 - the read reports it
        return False


def pil_to_rgba(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(HxWx3 uint8 colour, HxW uint8 alpha or None): an image with an alpha channel keeps its colour as stored,
    not composited over white, so that `sr` can upscale colour and alpha apart and keep the transparency."""
    if not has_alpha(image):
        return pil_to_rgb(image), None
    rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])


def read_rgba(path, min_size: int = 1, max_pixels: int = MAX_PIXELS,
              what: str = "dictsr reads") -> tuple[np.ndarray, np.ndarray | None]:
    """read_rgb's checks and errors; returns (colour, alpha) where the file has an alpha channel (pil_to_rgba),
    else (read_rgb's array, None)."""
    return _read(path, min_size, max_pixels, what, pil_to_rgba)


def _read(path, min_size: int, max_pixels: int, what: str, convert):
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies just below
            opened = Image.open(path)
        with opened as image:
            check_pixels(path, image.width, image.height, max_pixels, what)
            image.load()  # force a full decode so truncation is found here, not later
            converted = convert(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as error:  # over 2x Pillow's limit: refused at open; name the size anyway
        size = _header_size(path)
        if size is None:
            raise ImageError(path, f"image is too large to decode safely ({error})") from None
        check_pixels(path, *size, max_pixels=min(max_pixels, MAX_PIXELS), what=what)
        raise ImageError(path, f"image is too large to decode safely ({error})") from None
    except MemoryError:
        raise ImageError(path, "not enough memory to decode this image") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(path, f"cannot decode image ({error}); the file may be truncated or corrupt") from None
    height, width = (converted[0] if isinstance(converted, tuple) else converted).shape[:2]
    if min(height, width) < min_size:
        raise ImageError(path, f"image is {width}x{height}, smaller than the required {min_size}x{min_size}")
    return converted


ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")  # the formats write_rgb can give an alpha channel


def write_rgb(path, array: np.ndarray, *, overwrite: bool = True, **save_kwargs) -> Path:
    """Write an HxWx3 (or HxWx4, with alpha) uint8 image atomically (temp file in the same folder, then rename);
    overwrite=False raises FileExistsError rather than replace an existing file. Alpha into a format without it
    (JPEG) is a ValueError naming the file, never dropped silently."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"{path}: expected an HxWx3 or HxWx4 uint8 array, got {array.dtype} {array.shape}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}")
    if array.shape[2] == 4 and fmt not in ALPHA_FORMATS:
        raise ValueError(f"{path}: {fmt} has no alpha channel; write it as .png, .webp or .tif")
    image = Image.fromarray(array, mode="RGB" if array.shape[2] == 3 else "RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)
    return path


def list_images(folder) -> list[Path]:
    """Image files of a folder (not recursive), sorted by name; an error if the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class PairingError(ValueError):
    """Two folders whose images do not pair up one to one; the message names the files."""


def images_by_stem(folder) -> dict[str, Path]:
    """{file stem: path} of a folder's images; two files with one stem (a.png, a.jpg) are an error."""
    by_stem: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in by_stem:
            raise PairingError(f"{by_stem[path.stem]} and {path} have the same name; keep one of them")
        by_stem[path.stem] = path
    return by_stem


def pair_by_stem(dir_a, dir_b) -> list[tuple[str, Path, Path]]:
    """(stem, path in dir_a, path in dir_b) for every image, sorted; an image without a partner is a PairingError."""
    a, b = images_by_stem(dir_a), images_by_stem(dir_b)
    if not a and not b:
        raise FileNotFoundError(f"{dir_a} and {dir_b}: no images found")
    unmatched = [str(a[s]) for s in sorted(a.keys() - b.keys())] + [str(b[s]) for s in sorted(b.keys() - a.keys())]
    if unmatched:
        raise PairingError("images without a partner of the same name in the other folder: " + ", ".join(unmatched))
    return [(stem, a[stem], b[stem]) for stem in sorted(a)]


class OutputError(ValueError):
    """An output that would overwrite an input, a reference, another output or an earlier result."""


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_output_folder(out_dir, protected: dict, option: str = "--out") -> Path:
    """Refuse an output folder that is one of the `protected` folders ({folder: what it holds}).

    Outputs never go into an input's or a reference's folder, --overwrite or not."""
    out_dir = Path(out_dir)
    for folder, what in protected.items():
        if _same_folder(out_dir, Path(folder)):
            raise OutputError(f"{option} {out_dir} is the folder of {what}; dictsr never writes beside its inputs "
                              f"or references (it could replace them): choose another folder")
    return out_dir


def plan_outputs(items, out_dir, *, inputs=(), overwrite: bool = False, option: str = "--out") -> list[Path]:
    """The output path of each (source, file name) in `items`, all under `out_dir`, checked before any work:
    two sources may not share an output name, no output may be one of `inputs`, and an output file that
    already exists is an error unless `overwrite` (earlier outputs only: inputs are never replaced)."""
    out_dir = Path(out_dir)
    input_paths = {Path(p).resolve() for p in inputs}
    targets, owners, existing = [], {}, []
    for source, name in items:
        target = out_dir / name
        if target.name in owners:
            raise OutputError(f"{owners[target.name]} and {source} would both be written as {target}; "
                              "rename one of them or run them separately")
        owners[target.name] = source
        if target.resolve() in input_paths:
            raise OutputError(f"{target} is an input; dictsr never overwrites its inputs: choose another {option}")
        if target.exists() or target.is_symlink():
            existing.append(str(target))
        targets.append(target)
    if existing and not overwrite:
        raise OutputError(f"{len(existing)} output file(s) exist already: " + ", ".join(existing[:5])
                          + (" ..." if len(existing) > 5 else "") + f"; pass --overwrite to replace them or choose another {option}")
    return targets
