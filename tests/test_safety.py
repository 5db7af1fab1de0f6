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
