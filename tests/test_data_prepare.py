"""`dictsr prepare`: the sample and folder sources, disjoint splits, reproducibility, atomicity, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dictsr_core.cli import main as cli_main
from dictsr_core.data import prepare as prepare_module
from dictsr_core.data.datasets import PairedImages, UnpairedPatches
from dictsr_core.data.io import read_rgb, write_rgb
from dictsr_core.data.prepare import BadInputError, PrepareError, prepare_dataset
from dictsr_core.data.sources.folder import LayoutError

QUIET = {"log": lambda *_: None}


def _image(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "data"
    manifest = prepare_dataset(out, "sample", "aim", seed=0, workers=1, **QUIET)
    return out, manifest


def test_sample_writes_four_folders_and_a_manifest(sample_set):
    out, manifest = sample_set
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["counts"] == {"train_hr": 4, "train_lr": 3, "val_lr": 2, "val_hr": 2}
    for record in manifest["images"]:
        assert (out / record["file"]).is_file()
        assert record["license"] and record["author"] and record["source"]["function"].startswith("skimage.data.")
    lr_records = [r for r in manifest["images"] if r["split"] in ("train_lr", "val_lr")]
    assert all(r["degradation"]["name"] == "aim" and r["seed"][0] == 0 for r in lr_records)


def test_sample_splits_are_disjoint_and_usable(sample_set):
    out, manifest = sample_set
    sources = {split: {r["source"]["function"] for r in manifest["images"] if r["split"] == split}
               for split in ("train_hr", "train_lr", "val_hr")}
    assert not (sources["train_hr"] & sources["train_lr"]) and not (sources["train_hr"] & sources["val_hr"])
    assert not (sources["train_lr"] & sources["val_hr"])
    patches = UnpairedPatches(out / "train_hr", out / "train_lr")  # every image >= its patch size
    assert patches[0]["hr"].shape == (3, 256, 256)
    pairs = PairedImages(out / "val_lr", out / "val_hr")
    assert len(pairs) == 2


def test_rerun_is_byte_identical_and_seed_changes_only_the_noise(sample_set, tmp_path):
    out, _ = sample_set
    again = tmp_path / "again"
    prepare_dataset(again, "sample", "aim", seed=0, workers=2, **QUIET)
    assert _files(again) == _files(out)
    other = tmp_path / "other"
    prepare_dataset(other, "sample", "aim", seed=1, workers=1, **QUIET)
    assert (other / "train_hr" / "astronaut.png").read_bytes() == (out / "train_hr" / "astronaut.png").read_bytes()
    assert (other / "train_lr" / "retina.png").read_bytes() != (out / "train_lr" / "retina.png").read_bytes()


def test_rerun_into_the_same_folder_replaces_it(tmp_path):
    out = tmp_path / "data"
    prepare_dataset(out, "sample", "ntire", seed=0, workers=1, **QUIET)
    (out / "train_hr" / "stale.png").write_bytes(b"old")
    manifest = prepare_dataset(out, "sample", "ntire", seed=0, workers=1, **QUIET)
    assert not (out / "train_hr" / "stale.png").exists()
    assert manifest["degradation"]["name"] == "ntire"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging leftovers


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    real_run_job = prepare_module.run_job
    calls = []

    def failing(job, staging):
        calls.append(job)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_run_job(job, staging)

    monkeypatch.setattr(prepare_module, "run_job", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_dataset(tmp_path / "data", "sample", "aim", workers=1, **QUIET)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_that_is_not_a_prepared_dataset(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(PrepareError, match="not a dataset"):
        prepare_dataset(tmp_path / "home", "sample", workers=1, **QUIET)
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def _real_tree(root, names, nested=False, val_hr_shape=(64, 72, 3)):
    hr, lr, val_lr, val_hr = names
    sub = (lambda n: root / n / n) if nested else (lambda n: root / n)
    for i in range(3):
        write_rgb(sub(hr) / f"{i:04d}.png", _image((256, 260, 3), i))
        write_rgb(sub(lr) / f"{i:04d}.png", _image((64, 80, 3), 10 + i))
    Image.fromarray(_image((70, 90, 3), 20)).save(sub(lr) / "0099.jpg", quality=90)
    for i in range(2):
        write_rgb(sub(val_lr) / f"{800 + i:04d}.png", _image((16, 18, 3), 30 + i))
        write_rgb(sub(val_hr) / f"{800 + i:04d}.png", _image(val_hr_shape, 40 + i))
    return root


AIM_NAMES = ("train-clean-images", "train-noisy-images", "valid-input-noisy", "valid-gt-clean")
NTIRE_NAMES = ("Corrupted-tr-y", "Corrupted-tr-x", "Corrupted-va-x", "track1-valid-gt")


@pytest.mark.parametrize("names, layout, nested", [(AIM_NAMES, "aim-rwsr", False), (NTIRE_NAMES, "ntire-rwsr", True)])
def test_real_layouts_are_used_as_distributed(tmp_path, names, layout, nested):
    root = _real_tree(tmp_path / "root", names, nested)
    manifest = prepare_dataset(tmp_path / "out", "folder", "aim", root=root, workers=1, **QUIET)
    assert manifest["source_notes"]["layout"] == layout and manifest["degradation"] is None
    assert manifest["counts"] == {"train_hr": 3, "train_lr": 4, "val_lr": 2, "val_hr": 2}
    source = (root / names[1] / names[1]) if nested else root / names[1]
    assert (tmp_path / "out" / "train_lr" / "0001.png").read_bytes() == (source / "0001.png").read_bytes()
    jpeg_source = read_rgb(source / "0099.jpg")
    np.testing.assert_array_equal(read_rgb(tmp_path / "out" / "train_lr" / "0099.png"), jpeg_source)
    assert all(r["steps"] == ["as distributed"] for r in manifest["images"])


def test_explicit_folders_need_all_four(tmp_path):
    root = _real_tree(tmp_path / "root", AIM_NAMES)
    dirs = dict(zip(("hr_dir", "lr_dir", "val_lr_dir", "val_hr_dir"), (root / n for n in AIM_NAMES)))
    manifest = prepare_dataset(tmp_path / "out", "folder", dirs=dirs, workers=1, **QUIET)
    assert manifest["source_notes"]["layout"] == "explicit"
    with pytest.raises(LayoutError, match="--val-hr-dir"):
        prepare_dataset(tmp_path / "out2", "folder", dirs={**dirs, "val_hr_dir": None}, workers=1, **QUIET)


def test_div2k_layout_is_split_disjointly_and_degraded(tmp_path):
    root = tmp_path / "div2k"
    for i in range(6):
        write_rgb(root / "DIV2K_train_HR" / f"{i + 1:04d}.png", _image((256, 264, 3), i))
    for i in range(2):
        write_rgb(root / "DIV2K_valid_HR" / f"{801 + i:04d}.png", _image((130, 141, 3), 50 + i))
    manifest = prepare_dataset(tmp_path / "out", "folder", "ntire", root=root, workers=1, **QUIET)
    hr = {r["source"]["file"] for r in manifest["images"] if r["split"] == "train_hr"}
    lr = {r["source"]["file"] for r in manifest["images"] if r["split"] == "train_lr"}
    assert len(hr) == 3 and len(lr) == 3 and not hr & lr
    assert read_rgb(tmp_path / "out" / "train_lr" / next(iter(lr)).rsplit("/", 1)[1]).shape == (64, 66, 3)
    assert read_rgb(tmp_path / "out" / "val_hr" / "0801.png").shape == (128, 140, 3)  # cropped to a multiple of 4
    assert read_rgb(tmp_path / "out" / "val_lr" / "0801.png").shape == (32, 35, 3)
    assert manifest["degradation"]["name"] == "ntire"


def test_a_plain_folder_of_photos_is_split_three_ways(tmp_path):
    for i in range(5):
        write_rgb(tmp_path / "mine" / f"p{i}.png", _image((256, 256, 3), i))
    manifest = prepare_dataset(tmp_path / "out", "folder", root=tmp_path / "mine", workers=1, **QUIET)
    assert manifest["counts"] == {"train_hr": 2, "train_lr": 2, "val_lr": 1, "val_hr": 1}


def test_unknown_root_lists_expected_folders(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(LayoutError, match="train-noisy-images"):
        prepare_dataset(tmp_path / "out", "folder", root=tmp_path / "nothing", **QUIET)


def _bad_tree(root):
    _real_tree(root, AIM_NAMES)
    lr = root / "train-noisy-images"
    (lr / "empty.png").write_bytes(b"")
    (lr / "notes.png").write_text("this is text")
    truncated = (root / "train-clean-images" / "0000.png").read_bytes()[:500]
    (root / "train-clean-images" / "cut.png").write_bytes(truncated)
    write_rgb(root / "train-clean-images" / "small.png", _image((100, 300, 3), 7))
    write_rgb(root / "valid-gt-clean" / "0801.png", _image((65, 72, 3), 8))  # not 4x its LR
    return ["empty.png", "notes.png", "cut.png", "small.png", "0801.png"]


def test_bad_files_stop_everything_and_are_all_listed(tmp_path, capsys):
    bad = _bad_tree(tmp_path / "root")
    code = cli_main(["prepare", "--source", "folder", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert code == 1
    err = capsys.readouterr().err
    for name in bad:
        assert name in err
    assert "--skip-bad" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_skip_bad_reports_and_continues(tmp_path):
    bad = _bad_tree(tmp_path / "root")
    messages = []
    manifest = prepare_dataset(tmp_path / "out", "folder", root=tmp_path / "root", skip_bad=True, workers=1, log=messages.append)
    assert manifest["counts"] == {"train_hr": 3, "train_lr": 4, "val_lr": 1, "val_hr": 1}
    assert len(manifest["skipped"]) == len(bad)
    for name in bad:
        assert any(name in m for m in messages)


def test_nothing_left_in_a_split_is_an_error(tmp_path):
    root = _real_tree(tmp_path / "root", AIM_NAMES)
    for path in (root / "train-clean-images").iterdir():
        write_rgb(path, _image((100, 100, 3), 1))
    with pytest.raises(PrepareError, match="train_hr"):
        prepare_dataset(tmp_path / "out", "folder", root=root, skip_bad=True, workers=1, **QUIET)
    with pytest.raises(BadInputError):
        prepare_dataset(tmp_path / "out", "folder", root=root, workers=1, **QUIET)


def test_cli_sample_and_usage_errors(tmp_path, capsys):
    assert cli_main(["prepare", "--source", "sample", "--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    assert (tmp_path / "s" / "manifest.json").is_file()
    assert cli_main(["prepare", "--source", "sample", "--root", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    assert "--source folder" in capsys.readouterr().err


def test_cropped_validation_gives_several_pairs_per_photo(tmp_path, monkeypatch):
    """A source with val_crops: each validation photo gives that many fixed crops, named <photo>__c<k>."""
    from dictsr_core.data.prepare import val_crop_box
    from dictsr_core.data.sources import folder as folder_source

    for i in range(5):
        write_rgb(tmp_path / "mine" / f"p{i}.png", _image((300, 360, 3), i))
    real_plan = folder_source.folder_plan

    def cropped_plan(**kwargs):
        plan = real_plan(**kwargs)
        plan.val_crops, plan.val_crop = 4, 128
        return plan

    monkeypatch.setattr(prepare_module, "folder_plan", cropped_plan)
    manifest = prepare_dataset(tmp_path / "out", "folder", root=tmp_path / "mine", workers=1, **QUIET)
    assert manifest["counts"]["val_hr"] == 4 and manifest["val_crops"] == {"per_photo": 4, "side": 128}
    val = [r for r in manifest["images"] if r["split"] == "val_hr"]
    photo = val[0]["photo"]
    assert sorted(Path(r["file"]).stem for r in val) == [f"{photo}__c{k}" for k in range(4)]
    source = read_rgb(tmp_path / "mine" / f"{photo}.png")
    for k in range(4):
        top, left = val_crop_box(300, 360, 128, k, 4)
        assert top % 4 == 0 and left % 4 == 0 and top + 128 <= 300 and left + 128 <= 360
        hr = read_rgb(tmp_path / "out" / "val_hr" / f"{photo}__c{k}.png")
        assert np.array_equal(hr, source[top : top + 128, left : left + 128])
        assert read_rgb(tmp_path / "out" / "val_lr" / f"{photo}__c{k}.png").shape == (32, 32, 3)
    # quadrant centres: four distinct boxes
    assert len({val_crop_box(300, 360, 128, k, 4) for k in range(4)}) == 4
