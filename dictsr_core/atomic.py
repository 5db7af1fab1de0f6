"""Atomic file writes: a reader never sees a half-written checkpoint, JSON or text file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path


def _umask_mode() -> int:
    """0o666 less the process umask: what a plain open() would have given (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    """Rename the finished temp file to `path`; with overwrite=False never replace an existing file
    (a hard link fails atomically when `path` exists; where links are unsupported, a check then a rename)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; it was left as it is") from None
    except OSError:  # no hard links on this file system
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists; it was left as it is") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write_bytes(path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write `data` to `path` through a temp file in the same folder, then rename; overwrite=False
    raises FileExistsError instead of replacing a file that is already there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _umask_mode())
        _publish(tmp, path, overwrite)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value):
    """`value` with every non-finite float replaced by None, so that it serialises as standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def atomic_write_json(path, obj) -> Path:
    """Standard JSON (inf and NaN, e.g. the PSNR of identical images, become null)."""
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def atomic_torch_save(path, obj) -> Path:
    """torch.save through a temp file in the same folder, then rename."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
