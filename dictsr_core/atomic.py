"""Atomic file writes: a reader never sees a half-written checkpoint, JSON or text file (nor a half-rewritten
README block)."""

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


class NotWritableError(OSError):
    """An output folder that cannot be created or written; the message names the option and the folder."""


def ensure_writable_dir(folder, option: str = "--out") -> Path:
    """Create `folder` (with its parents) and prove a file can be written in it, before any work is done.

    On failure, folders this call created are removed again and a NotWritableError names `option` and the folder."""
    folder = Path(folder)
    created = []
    try:
        missing = [parent for parent in [folder, *folder.parents] if not parent.exists()]
        for parent in reversed(missing):
            try:
                parent.mkdir()
            except FileExistsError:  # made meanwhile by someone else: not ours to remove
                continue
            created.append(parent)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".dictsr-write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        for parent in reversed(created):
            try:
                parent.rmdir()
            except OSError:
                pass
        reason = error.strerror or str(error)
        raise NotWritableError(f"{option} {folder}: cannot write there ({reason}); choose another folder") from None
    return folder


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


def replace_readme_block(readme, key: str, markdown: str, heading: str) -> Path:
    """Replace the text between `<!-- KEY: start -->` and `<!-- KEY: end -->` (or append heading + block)."""
    readme = Path(readme)
    start, end = f"<!-- {key}: start -->", f"<!-- {key}: end -->"
    text = readme.read_text() if readme.exists() else ""
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    atomic_write_text(readme, text)
    return readme
