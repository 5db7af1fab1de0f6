"""Executing one notebook with papermill: a kernel for this Python, a stamp per executed copy (parameters, a hash
of the source notebook, the files it must leave behind, seconds), and reuse of a copy whose stamp matches.

Executed copies are written to a .partial.ipynb first and renamed when the notebook finished; a failed
notebook is kept as <stage>.failed.ipynb with the error in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from dictsr_core.atomic import atomic_write_json
from dictsr_core.workbook.profiles import WorkbookError

KERNEL_NAME = "dictsr-workbook"


def ensure_kernel() -> str:
    """A kernelspec for this very Python in sys.prefix, so papermill and JupyterLab run the workbook's environment."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if spec.argv and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (DictSR workbook)", prefix=sys.prefix)
    return KERNEL_NAME


def source_notebook(root: Path, notebook: str) -> Path:
    path = Path(root) / "notebooks" / f"{notebook}.ipynb"
    if not path.is_file():
        raise WorkbookError(f"{path}: no such notebook (run from the project folder, or set DICTSR_ROOT)")
    return path


def stamp_path(output: Path) -> Path:
    return output.with_name(output.stem + ".stamp.json")


def file_identity(path: Path) -> list[int] | None:
    """[size, mtime in ns] of a file, None where it is missing: checkpoints are replaced whole (atomic writes), so a
    run trained or derived again is a new identity even at the same step."""
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def _stamp(source: Path, parameters: dict, outputs: list[Path], configs: dict | None = None,
           inputs: list[Path] | None = None) -> dict:
    cleaned = {k: v for k, v in parameters.items() if k != "force"}
    stamp = {"notebook": source.name, "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
             "parameters": cleaned, "outputs": [str(p) for p in outputs]}
    if configs:
        stamp["configs"] = configs
    if inputs:
        stamp["inputs"] = {str(p): file_identity(p) for p in inputs}
    return stamp


def reusable(source: Path, output: Path, parameters: dict, outputs: list[Path], configs: dict | None = None,
             inputs: list[Path] | None = None) -> bool:
    """The executed copy, its stamp (same notebook source, parameters, training configs and inputs) and every
    expected file exist. `configs` ({run folder: Config.to_dict()}, the runs the stage trains) is what the
    parameters only name: a preset changed in config.py leaves them alone, and its runs must be trained again.
    `inputs` (the checkpoints a stage reads but does not make) likewise: the run names stay when a run is trained
    again, and its scores must be made again."""
    stamp_file = stamp_path(output)
    if not output.is_file() or not stamp_file.is_file():
        return False
    try:
        stored = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return False
    wanted = _stamp(source, parameters, outputs, configs, inputs)
    same = all(stored.get(key) == wanted.get(key)
               for key in ("source_sha256", "parameters", "outputs", "configs", "inputs"))
    return same and all(Path(p).exists() for p in outputs)


def _local_transport(folder: str) -> dict:
    """Papermill's kernel over IPC sockets in `folder` rather than TCP on localhost: nothing listens on a port,
    and ipykernel's "running over TCP without encryption" warning (printed once per stage) has no cause.
    Windows has no IPC transport; there the default TCP stays."""
    if os.name == "nt":
        return {}
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):
            return os.path.join(folder, "kernel")

    return {"kernel_manager_class": IPCKernelManager}


def execute_notebook(notebook: str, output, parameters: dict, *, root, outputs=(), force: bool = False,
                     log_output: bool = False, timeout: int | None = None, configs: dict | None = None,
                     inputs=(), configs_after=None) -> dict:
    """Run ROOT/notebooks/<notebook>.ipynb with papermill into `output` unless a matching stamp says it is done.

    `timeout`: seconds one cell may run; past it the stage fails (nbclient can miss the end of a cell and
    then wait forever, jupyter/nbclient#312: better a named failure than a silent hang).

    `configs`: the training configs of the runs it trains; `inputs`: the files it reads (checkpoints); both part
    of its stamp (see `reusable`). `configs_after()`, where given, gives the configs stamped once it ran (a run
    re-sized in flight trains another config than the one planned: workbook/budget.calibrate).

    Returns {"executed": bool, "seconds": float, "output": path}; raises WorkbookError naming the failed copy.
    """
    import papermill

    source = source_notebook(root, notebook)
    output = Path(output)
    outputs = [Path(p) for p in outputs]
    inputs = [Path(p) for p in inputs]
    if not force and reusable(source, output, parameters, outputs, configs, inputs):
        print(f"[workbook] {output.stem}: reusing {output} (same parameters; --force reruns)", flush=True)
        return {"executed": False, "seconds": 0.0, "output": str(output)}
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.stem + ".partial.ipynb")
    failed = output.with_name(output.stem + ".failed.ipynb")
    failed.unlink(missing_ok=True)
    print(f"[workbook] {output.stem}: executing {source.name} ...", flush=True)
    start = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="dictsr-kernel-") as sockets:
            papermill.execute_notebook(str(source), str(partial), parameters=parameters, kernel_name=ensure_kernel(),
                                       cwd=str(source.parent), progress_bar=False, log_output=log_output,
                                       execution_timeout=timeout, **_local_transport(sockets))
    except Exception as error:  # noqa: BLE001 - papermill raises its own and kernel errors; all mean "stage failed"
        if partial.exists():
            os.replace(partial, failed)
        reason = str(error).strip().splitlines()
        raise WorkbookError(f"notebook {notebook} (stage {output.stem}) failed; executed copy with the error: {failed}\n"
                            + "\n".join(reason[-12:])) from None
    missing = [str(p) for p in outputs if not Path(p).exists()]
    if missing:
        os.replace(partial, failed)
        raise WorkbookError(f"notebook {notebook} (stage {output.stem}) finished but did not write: {', '.join(missing)}")
    os.replace(partial, output)
    seconds = time.time() - start
    configs = configs_after() if configs_after is not None else configs
    atomic_write_json(stamp_path(output), {**_stamp(source, parameters, outputs, configs, inputs), "seconds": seconds,
                                            "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"[workbook] {output.stem}: done in {seconds:.1f} s -> {output}", flush=True)
    return {"executed": True, "seconds": seconds, "output": str(output)}
