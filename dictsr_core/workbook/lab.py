"""`dictsr lab`: JupyterLab on 127.0.0.1 over the project folder, with the workbook's kernel registered."""

from __future__ import annotations

import os
import sys

from dictsr_core.workbook.profiles import project_root


def lab_command(port: int = 8888, open_browser: bool = False, root=None) -> list[str]:
    """The jupyter-lab command line: local interface only; `--allow-root` when running as root (it refuses otherwise)."""
    root = root or project_root()
    command = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={int(port)}", f"--ServerApp.root_dir={root}",
               "--LabApp.default_url=/lab/tree/notebooks"]
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


def run_lab(port: int = 8888, open_browser: bool = False) -> int:
    """Replace this process by JupyterLab (so Ctrl-C and the PID are the server's). Set JUPYTER_TOKEN to fix the token."""
    from dictsr_core.workbook.execute import ensure_kernel

    ensure_kernel()
    command = lab_command(port, open_browser)
    print("starting: " + " ".join(command), flush=True)
    os.execv(command[0], command)
    return 0  # not reached
