"""JupyterLab in a real headless browser: `dictsr lab` over the smoke workbook run, driven by Selenium.

The browser is Debian's `chromium` with `chromium-driver` (`make test`, i.e. scripts/setup.sh --browser, installs
both with apt when it runs as root); Selenium is given both paths, so Selenium Manager never downloads anything. Without them the tests skip and
say how to install them.

What the lab serves: `dictsr lab` (the real command, as a subprocess) with DICTSR_ROOT set to a temp folder, so
that folder is the server's root_dir and its `notebooks/` the default URL. It holds copies, so JupyterLab's
checkpoints never touch the smoke run's files:

- `07_explore.ipynb`: the source notebook with the smoke run's parameters injected by papermill's
  `parameterize_notebook` (profile, data_dir, run_root: those of the `smoke` fixture) and `interactive=True`. The
  executed copy in <run-root>/notebooks/ cannot serve here: `dictsr workbook` runs it with interactive=False
  (no widget, see stages.explorer). figure_dir is a folder of the lab's own, so the explorer's saved first view
  does not overwrite the smoke run's figure. The test runs all its cells in the browser (Run > Run All Cells).
- `05_dictionaries.ipynb`: the executed copy the smoke run wrote (its injected parameters point at that run and
  its outputs are the figures); it is opened and its figures checked, not rerun.

The lab gets its own JupyterLab settings and workspaces folders (JUPYTERLAB_SETTINGS_DIR,
JUPYTERLAB_WORKSPACES_DIR): no news toasts, no autosave, no tabs restored from another run, and windowing mode
`none` so that every cell and output is in the page.

Screenshots (PNG) go to $DICTSR_SCREENSHOT_DIR when set, else to a temp folder: lab_explore_before.png,
lab_explore_after.png, lab_dictionaries.png; a failing step adds <step>_failure.png, the browser console
(<step>_console.log) and the end of the server's log (<step>_lab.log).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TOKEN = "dictsr-browser-test-token"
INSTALL = ("install them as root with `apt-get install -y --no-install-recommends chromium chromium-driver` (Debian/Ubuntu; "
           "`make setup-test` (scripts/setup.sh --browser) does that when it runs as root where apt-get exists)")


def _missing() -> str:
    """Why this machine cannot run the browser tests ('' when it can)."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if absent:
        return f"Debian's chromium / chromium-driver are not installed ({', '.join(absent)} missing): {INSTALL}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `pip install -e '.[test]'` (or `bash scripts/setup.sh`)"
    return ""


# evaluated before any fixture: a machine without a browser skips without paying for the smoke workbook
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.skipif(bool(_missing()), reason=_missing() or "-")]


# --- the JupyterLab server -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base: str, path: str, method: str = "GET"):
    request = urllib.request.Request(base + path, method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
        return json.loads(body) if body else None


def _write_settings(folder: Path) -> None:
    settings = {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    }
    for plugin, values in settings.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _write_notebooks(smoke, folder: Path) -> None:
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from dictsr_core.workbook.execute import ensure_kernel
    from dictsr_core.workbook.plan import common_parameters

    ctx = smoke["ctx"]
    notebooks = folder / "notebooks"
    notebooks.mkdir(parents=True)
    kernel = ensure_kernel()  # the kernel `dictsr workbook` runs the notebooks with (`dictsr lab` registers it too)
    explore = load_notebook_node(str(ROOT / "notebooks" / "07_explore.ipynb"))  # as papermill reads it (cells get tags)
    parameters = {**common_parameters(ctx), "figure_dir": str(folder / "figures"), "run": "dictsr", "interactive": True}
    explore = parameterize_notebook(explore, parameters, kernel_name=kernel, language="python")
    explore.metadata["kernelspec"] = {"name": kernel, "display_name": "Python (DictSR workbook)", "language": "python"}
    nbformat.write(explore, notebooks / "07_explore.ipynb")
    shutil.copyfile(ctx.notebook_dir / "05_dictionaries.ipynb", notebooks / "05_dictionaries.ipynb")


def _stop(process: subprocess.Popen, base: str) -> None:
    """Shut the kernels down through the API (they are the server's children), then end the server by its PID:
    SIGTERM, and SIGKILL when it has not exited after 20 s."""
    if process.poll() is None:
        with contextlib.suppress(Exception):
            for kernel in _api(base, "/api/kernels"):
                _api(base, f"/api/kernels/{kernel['id']}", method="DELETE")
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(smoke, tmp_path_factory, request):
    """`dictsr lab` on a free port of 127.0.0.1 with a fixed token, serving copies of 07 and 05 (see the module
    docstring); stopped by PID in a finalizer, whatever the tests did."""
    folder = tmp_path_factory.mktemp("lab")
    _write_notebooks(smoke, folder)
    _write_settings(folder / "settings")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN, "DICTSR_ROOT": str(folder),
           "JUPYTERLAB_SETTINGS_DIR": str(folder / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces")}
    log_path = folder / "lab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "dictsr_core", "lab", "--port", str(port)], env=env, cwd=folder,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    request.addfinalizer(lambda: _stop(process, base))
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"`dictsr lab` exited with {process.returncode} before answering:\n{log_path.read_text()[-3000:]}")
        try:
            _api(base, "/api/status")
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                pytest.fail(f"`dictsr lab` did not answer on {base}/api/status within 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
    return {"base": base, "folder": folder, "log": log_path, "process": process, "smoke": smoke}


# --- the browser ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ["DICTSR_SCREENSHOT_DIR"]) if os.environ.get("DICTSR_SCREENSHOT_DIR") else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path_factory, request):
    """A fresh headless chromium per test (quitting it skips JupyterLab's "leave with unsaved changes?" prompt)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    request.addfinalizer(driver.quit)
    driver.set_window_size(1400, 1000)
    return driver


@contextlib.contextmanager
def _evidence(driver, lab, shots: Path, step: str):
    """On failure: a screenshot of the page, the browser console and the end of the server log, named after the step."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(shots / f"{step}_failure.png"))
        with contextlib.suppress(Exception):
            lines = [f"{entry.get('level')} {entry.get('source')} {entry.get('message')}" for entry in driver.get_log("browser")]
            (shots / f"{step}_console.log").write_text("\n".join(lines) + "\n")
        with contextlib.suppress(Exception):
            (shots / f"{step}_lab.log").write_text(lab["log"].read_text()[-20000:])
        raise


def _wait(driver, condition, what: str, timeout: float = 60, poll: float = 0.25, detail=None):
    """WebDriverWait(condition) whose timeout names what was awaited (and `detail()`: the page's state then);
    returns the condition's truthy value."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=poll, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        state = ""
        if detail is not None:
            with contextlib.suppress(Exception):
                state = f"; then: {detail()}"
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{state}") from None


def _prompts(driver) -> str:
    """The open notebook's input prompts and kernel status, e.g. `[1]: [2]: [*]: [ ]: | busy`."""
    return driver.execute_script(
        "const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');"
        "if (!p) return 'no notebook open';"
        "const s = p.querySelector('.jp-Notebook-ExecutionIndicator');"
        "return [...p.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim()).join(' ')"
        " + ' | kernel ' + (s ? s.dataset.status : 'unknown');")


def _session_kernel(lab, path: str):
    """The id of the kernel of the server's only session for `path` once it is idle with a browser connected, else None."""
    sessions = [s for s in _api(lab["base"], "/api/sessions") if s.get("path") == path]
    if len(sessions) != 1 or not sessions[0].get("kernel"):
        return None
    kernel = sessions[0]["kernel"]
    return kernel["id"] if kernel.get("execution_state") == "idle" and kernel.get("connections", 0) >= 1 else None


def _open(driver, lab, notebook: str):
    """Open notebooks/<notebook>.ipynb (`reset`: not the tabs of the workspace another test left) and wait until it
    is the current tab with its cells in the page and its kernel ready: one session for it on the server, its kernel
    idle and connected, the same kernel for 2 s, and the notebook's kernel indicator idle. (JupyterLab shows `idle`
    before the kernel connects, and at times starts a second kernel and drops the first: cells run in that window
    are lost.)"""
    path = f"notebooks/{notebook}.ipynb"
    driver.get(f"{lab['base']}/lab/tree/{path}?reset&token={TOKEN}")
    _wait(driver, lambda d: d.execute_script(
        "const tab = document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel');"
        "const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');"
        "return tab && tab.textContent.trim() === arguments[0] && p && p.querySelectorAll('.jp-Cell').length > 0;",
        f"{notebook}.ipynb"), f"{notebook}.ipynb to open in JupyterLab as the current tab", timeout=120)
    seen = {"kernel": None, "since": time.monotonic()}

    def ready(d):
        kernel = _session_kernel(lab, path)
        if kernel != seen["kernel"]:
            seen.update(kernel=kernel, since=time.monotonic())
        return kernel and time.monotonic() - seen["since"] > 2 and _prompts(d).endswith("| kernel idle")

    _wait(driver, ready, f"the kernel of {notebook}.ipynb to be started, connected and idle", timeout=120,
          detail=lambda: f"{_prompts(driver)}; sessions {_api(lab['base'], '/api/sessions')}")
    return driver.execute_script("return document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');")


def _menu(driver, menu: str, label: str) -> None:
    """Click a main menu entry as a user does: the menu bar's title, then the item with that label."""
    from selenium.webdriver.common.by import By

    title = _wait(driver, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                                          if e.text.strip() == menu), None), f"the {menu!r} menu in the menu bar", timeout=30)
    title.click()
    item = _wait(driver, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-item:not(.lm-mod-disabled)")
                                         if e.is_displayed() and e.text.split("\n")[0].strip() == label), None),
                 f"the enabled item {label!r} of the {menu!r} menu", timeout=30)
    item.click()


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _data_png(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,"), f"the explorer's picture is not an inline PNG: {src[:80]!r}"
    return base64.b64decode(src.split(",", 1)[1])


# the open notebook's error outputs (tracebacks), its kernel status and the explorer widget: its VBox (dropdown,
# sliders, info, Output widget with the picture), the picture when loaded, the x slider's handle and readout
_STATE = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return {errors: [], idle: false, box: null, src: null};
const errors = [...panel.querySelectorAll('.jp-OutputArea-output')].map(e => e.textContent)
  .filter(t => t.includes('Traceback') || /\\b\\w+Error: /.test(t));
const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
const state = {errors: errors, idle: !!status && status.dataset.status === 'idle', box: null, src: null,
               running: [...panel.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'))};
const box = [...panel.querySelectorAll('.widget-vbox')]
  .find(b => b.querySelector('.widget-dropdown') && b.querySelector('.widget-slider'));
if (!box) return state;
const img = box.querySelector('img');
const slider = [...box.querySelectorAll('.widget-slider')]
  .find(s => (s.querySelector('.widget-label') || {textContent: ''}).textContent.trim().startsWith('x'));
const handle = slider ? slider.querySelector('.noUi-handle') : null;
return Object.assign(state, {box: box, img: img, handle: handle,
  src: img && img.complete && img.naturalWidth > 0 ? img.src : null,
  readout: slider ? slider.querySelector('.widget-readout').textContent.trim() : null,
  max: handle ? Number(handle.getAttribute('aria-valuemax')) : null});
"""


def _state(driver, notebook: str = "07_explore") -> dict:
    """The page's state (see _STATE); a traceback in the notebook's outputs fails at once rather than at a timeout."""
    state = driver.execute_script(_STATE)
    assert not state["errors"], f"{notebook} shows an error in JupyterLab: {state['errors'][0][-2000:]}"
    return state


def test_explorer_slider_redraws_the_picture_in_jupyterlab(lab, browser, shots):
    """07_explore in JupyterLab: Run > Run All Cells builds the widget; moving its x slider with the keyboard (focus
    on the handle, arrow keys) redraws the picture for the new location."""
    from selenium.webdriver.common.keys import Keys

    with _evidence(browser, lab, shots, "explore"):
        _open(browser, lab, "07_explore")
        _menu(browser, "Run", "Run All Cells")
        before = _wait(browser, lambda d: (s := _state(d)) and s["src"] and s["idle"] and not s["running"] and s,
                       "07_explore's cells to finish and the explorer widget to render its picture", timeout=240,
                       detail=lambda: _prompts(browser))
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", before["box"])
        before = _state(browser)
        browser.save_screenshot(str(shots / "lab_explore_before.png"))
        start, steps = int(before["readout"]), 3
        key, target = (Keys.ARROW_RIGHT, start + steps) if start + steps <= before["max"] else (Keys.ARROW_LEFT, start - steps)
        for _ in range(steps):
            before["handle"].send_keys(key)
        _wait(browser, lambda d: _state(d)["readout"] == str(target), f"the x slider's readout to show {target} (from {start})",
              timeout=30)
        _wait(browser, lambda d: _state(d)["src"] not in (None, before["src"]),
              "the explorer to redraw its picture after the x slider moved", timeout=120)
        # the kernel redraws once per key press: wait for it to be idle with the picture unchanged for 1.5 s
        last = {"src": None, "since": time.monotonic()}

        def settled(d):
            state = _state(d)
            if state["src"] != last["src"]:
                last.update(src=state["src"], since=time.monotonic())
            return state["idle"] and state["src"] and time.monotonic() - last["since"] > 1.5 and state

        after = _wait(browser, settled, "the explorer's picture to settle (kernel idle, picture unchanged for 1.5 s)", timeout=120)
        browser.save_screenshot(str(shots / "lab_explore_after.png"))

        old, new = _pixels(_data_png(before["src"])), _pixels(_data_png(after["src"]))
        assert old.shape == new.shape and min(old.shape[:2]) > 150, (old.shape, new.shape)
        changed = np.abs(old - new).max(axis=2) > 8
        assert changed.mean() > 0.001, f"moving x from {start} to {target} changed only {changed.mean():.5f} of the picture's pixels"
        assert after["readout"] == str(target)
        assert _pixels(after["img"].screenshot_as_png).std() > 15, "the explorer's picture is blank on screen"


def test_dictionaries_notebook_shows_its_figures_in_jupyterlab(lab, browser, shots):
    """05_dictionaries (the smoke run's executed copy) in JupyterLab: every figure it produced is on the page and not blank."""
    import nbformat

    book = nbformat.read(lab["folder"] / "notebooks" / "05_dictionaries.ipynb", as_version=4)
    expected = sum("image/png" in output.get("data", {}) for cell in book.cells if cell.cell_type == "code" for output in cell.outputs)
    assert expected >= 4, f"the smoke run's 05_dictionaries has {expected} PNG outputs; expected the 4 figures at least"
    with _evidence(browser, lab, shots, "dictionaries"):
        panel = _open(browser, lab, "05_dictionaries")
        images = _wait(browser, lambda d: (found := d.execute_script(
            "return [...arguments[0].querySelectorAll('.jp-OutputArea-output img')];", panel)) and len(found) >= expected and found,
            f"05_dictionaries' {expected} output images in the page", timeout=60)
        for index, image in enumerate(images):
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
            size = _wait(browser, lambda d: (s := d.execute_script(
                "const i = arguments[0], r = i.getBoundingClientRect();"
                "return i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight, r.width, r.height] : null;", image)) and s,
                f"output image {index + 1} of 05_dictionaries to load", timeout=30)
            assert min(size) > 100, f"output image {index + 1} of 05_dictionaries is {size} (natural w, h; shown w, h)"
            assert _pixels(image.screenshot_as_png).std() > 15, f"output image {index + 1} of 05_dictionaries is blank on screen"
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", images[0])
        browser.save_screenshot(str(shots / "lab_dictionaries.png"))
