"""Fault tests (issue 13, "Reliability"): dictsr never destroys what it did not make, never overwrites
inputs or references, reports bad files by name and goes on, and resumes across torn files."""

import json

import numpy as np
import pytest
from PIL import Image

from dictsr_core.cli import main as cli_main
from dictsr_core.data.prepare import OUTPUT_FOLDERS, PrepareError, prepare_dataset

QUIET = {"log": lambda *_: None}


def _image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# 1. prepare replaces only a folder that dictsr provably made


def test_prepare_keeps_a_folder_with_a_foreign_manifest(tmp_path, capsys):
    project = tmp_path / "P"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text('{"name":"app"}\n')
    (project / "src" / "important.py").write_text("keep\n")
    code = cli_main(["prepare", "--source", "sample", "--out", str(project), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(project) in err and "not a dataset made by `dictsr prepare`" in err
    assert (project / "src" / "important.py").read_text() == "keep\n"
    assert (project / "manifest.json").read_text() == '{"name":"app"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P"]  # no staging leftovers


def _legacy_dataset(root):
    """A dataset as an older dictsr wrote it: dictsr's manifest schema, no format key, only the four splits."""
    for folder in OUTPUT_FOLDERS:
        (root / folder).mkdir(parents=True)
    Image.fromarray(_image((8, 8, 3))).save(root / "train_hr" / "old.png")
    manifest = {"made_by": "dictsr prepare", "source": "sample", "degradation": None, "seed": 0, "scale": 4,
                "counts": {folder: 0 for folder in OUTPUT_FOLDERS}, "skipped": [], "images": []}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_prepare_keeps_a_dictsr_manifest_folder_holding_anything_else(tmp_path):
    data = _legacy_dataset(tmp_path / "data")
    (data / "notes.txt").write_text("mine\n")
    with pytest.raises(PrepareError, match="notes.txt"):
        prepare_dataset(data, "sample", workers=1, **QUIET)
    assert (data / "notes.txt").read_text() == "mine\n" and (data / "train_hr" / "old.png").is_file()


def test_prepare_replaces_an_old_dictsr_dataset_and_writes_a_format_key(tmp_path):
    data = _legacy_dataset(tmp_path / "data")
    manifest = prepare_dataset(data, "sample", workers=1, **QUIET)
    assert not (data / "train_hr" / "old.png").exists()
    assert manifest["format"] == "dictsr-dataset-v1"
    assert json.loads((data / "manifest.json").read_text())["format"] == "dictsr-dataset-v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# 2. sr and evaluate --save-sr never overwrite an input or a reference; earlier outputs only with --overwrite


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny-preset checkpoint (dictionaries initialised from random images): fast to make."""
    import torch

    from dictsr_core.checkpoint import save_checkpoint
    from dictsr_core.config import get_config
    from dictsr_core.model import DictSR

    torch.manual_seed(0)
    cfg = get_config("tiny")
    net = DictSR(cfg.model)
    hr = torch.rand(2, 3, 64, 64)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, torch.nn.functional.avg_pool2d(hr, 4)))
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, model_state=net.state_dict(), config=cfg, step=0)
    return path


def _sr(checkpoint, *args):
    return cli_main(["sr", "--checkpoint", str(checkpoint), *map(str, args), "--device", "cpu"])


def test_sr_into_an_inputs_own_folder_keeps_the_input(tiny_checkpoint, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(_image((12, 16, 3))).save(photo)
    before = photo.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert _sr(tiny_checkpoint, photo, "--out", tmp_path, *extra) == 2
        err = capsys.readouterr().err
        assert str(tmp_path) in err and "photo.png" in err and "--out" in err, err
        assert photo.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["photo.png"]


def test_sr_refuses_two_inputs_with_one_stem(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.fromarray(_image((12, 16, 3))).save(tmp_path / "in" / "a.png")
    Image.fromarray(_image((12, 16, 3), 1)).save(tmp_path / "in" / "a.jpg")
    out = tmp_path / "o"
    assert _sr(tiny_checkpoint, tmp_path / "in" / "a.png", tmp_path / "in" / "a.jpg", "--out", out) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "a.jpg" in err and str(out / "a.png") in err, err
    assert not out.exists() or not any(out.iterdir())


def test_sr_replaces_earlier_outputs_only_with_overwrite(tiny_checkpoint, tmp_path, capsys):
    photo = tmp_path / "in" / "a.png"
    photo.parent.mkdir()
    Image.fromarray(_image((12, 16, 3))).save(photo)
    out = tmp_path / "o"
    assert _sr(tiny_checkpoint, photo, "--out", out) == 0
    (out / "a.png").write_bytes(b"earlier")
    assert _sr(tiny_checkpoint, photo, "--out", out) == 2
    err = capsys.readouterr().err
    assert str(out / "a.png") in err and "--overwrite" in err, err
    assert (out / "a.png").read_bytes() == b"earlier"
    assert _sr(tiny_checkpoint, photo, "--out", out, "--overwrite") == 0
    assert Image.open(out / "a.png").size == (64, 48)


@pytest.fixture()
def small_pairs(tmp_path):
    """Two 12x12 LR / 48x48 HR pairs in tmp_path/lr and tmp_path/hr."""
    (tmp_path / "lr").mkdir()
    (tmp_path / "hr").mkdir()
    for seed, name in enumerate(("a", "b")):
        Image.fromarray(_image((12, 12, 3), seed)).save(tmp_path / "lr" / f"{name}.png")
        Image.fromarray(_image((48, 48, 3), 10 + seed)).save(tmp_path / "hr" / f"{name}.png")
    return tmp_path


def _folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("target", ["hr", "lr"])
def test_evaluate_save_sr_never_writes_into_the_reference_or_input_folder(small_pairs, capsys, target):
    before = {name: _folder_bytes(small_pairs / name) for name in ("lr", "hr")}
    for extra in ([], ["--overwrite"]):
        code = cli_main(["evaluate", "--method", "bicubic", "--lr", str(small_pairs / "lr"), "--hr", str(small_pairs / "hr"),
                         "--save-sr", str(small_pairs / target), "--device", "cpu", *extra])
        err = capsys.readouterr().err
        assert code == 2 and str(small_pairs / target) in err and "--save-sr" in err, err
        assert {name: _folder_bytes(small_pairs / name) for name in ("lr", "hr")} == before


def test_evaluate_save_sr_replaces_earlier_outputs_only_with_overwrite(small_pairs, capsys):
    argv = ["evaluate", "--method", "bicubic", "--lr", str(small_pairs / "lr"), "--hr", str(small_pairs / "hr"),
            "--save-sr", str(small_pairs / "sr"), "--device", "cpu"]
    (small_pairs / "sr").mkdir()
    (small_pairs / "sr" / "b.png").write_bytes(b"earlier")
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert str(small_pairs / "sr" / "b.png") in err and "--overwrite" in err, err
    assert _folder_bytes(small_pairs / "sr") == {"b.png": b"earlier"}
    assert cli_main(argv + ["--overwrite"]) == 0
    assert sorted(_folder_bytes(small_pairs / "sr")) == ["a.png", "b.png"]
    assert Image.open(small_pairs / "sr" / "b.png").size == (48, 48)
