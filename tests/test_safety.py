"""Fault tests (issue 13, "Reliability"): dictsr never destroys what it did not make, never overwrites
inputs or references, reports bad files by name and goes on, and resumes across torn files."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dictsr_core.cli import main as cli_main
from dictsr_core.data.prepare import OUTPUT_FOLDERS, PrepareError, prepare_dataset

QUIET = {"log": lambda *_: None}


def _image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth(shape, seed=0):
    """A smooth colour ramp: compresses to a few kB even at 256x256."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.stack([yy % 256, xx % 256, np.full_like(yy, 40 * seed % 256)], axis=-1).astype(np.uint8)


def _png_header(path, width, height):
    """A PNG that declares width x height but holds no pixels: a huge image without allocating one."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


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

    from dictsr_core.config import get_config
    from dictsr_core.model import DictSR
    from dictsr_core.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = get_config("tiny")
    net = DictSR(cfg.model)
    hr = torch.rand(2, 3, 64, 64)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, torch.nn.functional.avg_pool2d(hr, 4)))
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, model_state=net.state_dict(), config=cfg, step=0)
    return path


def _sr(checkpoint, *args):
    args = [str(a) for a in args]
    return cli_main(["sr", "--checkpoint", str(checkpoint), *args] + ([] if "--device" in args else ["--device", "cpu"]))


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


# 3. images over the pixel limit: a named error per file, and dictsr reads whatever it writes


def test_dictsr_reads_the_output_of_the_largest_input_sr_accepts(tmp_path):
    from dictsr_core.data.io import MAX_PIXELS, MAX_SR_INPUT_PIXELS, ImageError, read_rgb

    assert 4000 * 3000 <= MAX_SR_INPUT_PIXELS and 16 * MAX_SR_INPUT_PIXELS <= MAX_PIXELS
    # dictsr's output of a 4000x3000 photo passes the size check (then fails only for having no pixels)
    with pytest.raises(ImageError, match="truncated") as caught:
        read_rgb(_png_header(tmp_path / "sr_of_4000x3000.png", 16000, 12000))
    assert "sr_of_4000x3000.png" in str(caught.value)
    with pytest.raises(ImageError, match="pixel") as caught:
        read_rgb(_png_header(tmp_path / "bomb.png", 20000, 20000))
    assert "bomb.png" in str(caught.value) and "20000x20000" in str(caught.value)


def test_sr_reports_a_bomb_sized_input_and_writes_the_others(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a", "c"):
        Image.fromarray(_image((12, 16, 3))).save(tmp_path / "in" / f"{name}.png")
    bomb = _png_header(tmp_path / "in" / "b.png", 30000, 30000)
    big = _png_header(tmp_path / "in" / "d.png", 5000, 4000)  # readable, but its 4x output would not be
    out = tmp_path / "o"
    code = _sr(tiny_checkpoint, tmp_path / "in" / "a.png", bomb, big, tmp_path / "in" / "c.png", "--out", out)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "b.png" in err and "30000x30000" in err and "d.png" in err and "5000x4000" in err, err
    assert "2 of 4 input(s) failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


def test_prepare_skip_bad_skips_a_bomb_sized_image(tmp_path):
    (tmp_path / "mine").mkdir()
    for i in range(7):
        Image.fromarray(_smooth((256, 256, 3), i)).save(tmp_path / "mine" / f"p{i}.png")
    _png_header(tmp_path / "mine" / "p7.png", 20000, 20000)
    messages = []
    manifest = prepare_dataset(tmp_path / "out", "folder", root=tmp_path / "mine", skip_bad=True, workers=1,
                               log=messages.append)
    assert len(manifest["skipped"]) == 1 and "p7.png" in manifest["skipped"][0] and "pixel" in manifest["skipped"][0]
    assert sum(manifest["counts"].values()) == 8  # 7 photos: 2 + 2 train, 2 validation pairs (or as split)


# 4. a torn last line in metrics.jsonl (disk full, power loss) does not stop --resume


def test_resume_drops_a_torn_metrics_tail_and_says_so(tiny_data, tmp_path, capsys):
    from dictsr_core.config import get_config
    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.training.trainer import train

    cfg = get_config("tiny")
    run = tmp_path / "run"
    train(cfg, tiny_data, run, progress=False, stop_after=7)
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 8, "lr": 0.0002, "to')  # the write that never finished
    capsys.readouterr()
    summary = train(cfg, tiny_data, run, progress=False, resume=True)
    out = capsys.readouterr().out
    assert summary["step"] == 20 and load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 20
    assert "metrics.jsonl" in out and "torn" in out, out
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [5, 7, 10, 15, 20]


# 5. images too small for SSIM's window, the Y crop or the network: a named error, not a traceback


def _pair_folders(root, lr_size, hr_size, names=("a",)):
    (root / "lr").mkdir(parents=True)
    (root / "hr").mkdir()
    for seed, name in enumerate(names):
        Image.fromarray(_image((lr_size, lr_size, 3), seed)).save(root / "lr" / f"{name}.png")
        Image.fromarray(_image((hr_size, hr_size, 3), 10 + seed)).save(root / "hr" / f"{name}.png")
    return root


@pytest.mark.parametrize("size", [10, 16])  # under SSIM's 11 px window; under 19 px with the 4-px Y crop
def test_metrics_names_an_image_too_small_to_score(tmp_path, capsys, size):
    root = _pair_folders(tmp_path, size, size)
    code = cli_main(["metrics", "--pred", str(root / "lr"), "--ref", str(root / "hr"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "a.png" in err and f"{size}x{size}" in err and "19x19" in err, err


def test_evaluate_names_an_hr_image_too_small_to_score(tmp_path, capsys):
    root = _pair_folders(tmp_path, 4, 16)
    code = cli_main(["evaluate", "--method", "bicubic", "--lr", str(root / "lr"), "--hr", str(root / "hr"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and str(root / "hr" / "a.png") in err and "19x19" in err, err


def test_evaluate_names_an_lr_image_too_small_for_the_network(tiny_checkpoint, tmp_path, capsys):
    root = _pair_folders(tmp_path, 6, 24)
    code = cli_main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--lr", str(root / "lr"), "--hr", str(root / "hr"),
                     "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and str(root / "lr" / "a.png") in err and "8x8" in err, err


# 6. prepare with fewer than 3 photos: a named error


def test_prepare_with_too_few_photos_names_the_folder(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    for i in range(2):
        Image.fromarray(_smooth((256, 256, 3), i)).save(tmp_path / "mine" / f"p{i}.png")
    code = cli_main(["prepare", "--source", "folder", "--root", str(tmp_path / "mine"), "--out", str(tmp_path / "out"),
                     "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "mine") in err and "at least 3" in err and "got 2" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


# 7. an unknown or missing device: a named error that says what is available


@pytest.mark.parametrize("device", ["tpu", "cuda:99", "cpu:x"])
def test_train_names_a_device_that_is_not_there(tiny_data, tmp_path, capsys, device):
    code = cli_main(["train", "--preset", "tiny", "--data", str(tiny_data), "--out", str(tmp_path / "run"),
                     "--device", device])
    err = capsys.readouterr().err
    assert code == 2 and f"'{device}'" in err and "available: cpu" in err, err
    assert not (tmp_path / "run").exists()


def test_sr_names_a_device_that_is_not_there(tiny_checkpoint, tmp_path, capsys):
    Image.fromarray(_image((12, 16, 3))).save(tmp_path / "a.png")
    assert _sr(tiny_checkpoint, tmp_path / "a.png", "--out", tmp_path / "o", "--device", "cuda:99") == 2
    assert "'cuda:99'" in capsys.readouterr().err


# 8. a read-only --out: a named error before any work, not a traceback


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder nothing can be written into: mode 0555, or (root ignores modes) a read-only file system."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / ".probe"
        probe.touch()
        probe.unlink()
    except PermissionError:
        yield folder
        folder.chmod(0o755)
        return
    folder.chmod(0o755)
    for candidate in (Path("/sys/kernel"), Path("/proc/sys")):
        try:
            probe = candidate / ".dictsr-probe"
            probe.touch()
            probe.unlink()
        except OSError:
            yield candidate
            return
    pytest.skip("no folder here refuses writes (running as root without a read-only file system)")


@pytest.mark.parametrize("sub", ["", "run"])  # the read-only folder itself, or a new folder inside it
def test_train_into_a_read_only_folder_is_a_named_error(tiny_data, read_only_dir, capsys, sub):
    out = read_only_dir / sub if sub else read_only_dir
    code = cli_main(["train", "--preset", "tiny", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and f"--out {out}" in err and "cannot write" in err, err


@pytest.mark.parametrize("sub", ["", "sr"])
def test_sr_into_a_read_only_folder_is_a_named_error(tiny_checkpoint, tmp_path, read_only_dir, capsys, sub):
    Image.fromarray(_image((12, 16, 3))).save(tmp_path / "a.png")
    out = read_only_dir / sub if sub else read_only_dir
    assert _sr(tiny_checkpoint, tmp_path / "a.png", "--out", out) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "cannot write" in err, err


# 9. --resume with a different --method: a named config difference


def test_resume_with_another_method_names_it(tiny_data, tmp_path, capsys):
    from dictsr_core.config import get_config
    from dictsr_core.training.trainer import train

    run = tmp_path / "run"
    train(get_config("tiny"), tiny_data, run, progress=False, stop_after=2)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    code = cli_main(["train", "--preset", "tiny", "--method", "paired-bicubic", "--data", str(tiny_data), "--out", str(run),
                     "--resume", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "--method dictsr" in err and "paired-bicubic" in err and "last.pt" in err, err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


# 10. metrics scores every pair it can, lists the others, writes the partial report and exits non-zero


def test_metrics_scores_the_rest_and_lists_the_failures(tmp_path, capsys):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    for seed, name in enumerate("abcde"):
        Image.fromarray(_image((32, 32, 3), seed)).save(ref / f"{name}.png")
        Image.fromarray(_image((32, 32, 3), 10 + seed)).save(pred / f"{name}.png")
    (pred / "b.png").write_bytes((pred / "b.png").read_bytes()[:100])  # truncated
    Image.fromarray(_image((32, 28, 3))).save(pred / "c.png")  # size mismatch
    _png_header(pred / "e.png", 20000, 20000)  # over the pixel limit
    code = cli_main(["metrics", "--pred", str(pred), "--ref", str(ref), "--device", "cpu",
                     "--json", str(tmp_path / "m.json"), "--csv", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err
    assert code == 1, err
    for name in ("b.png", "c.png", "e.png"):
        assert str(pred / name) in err, err
    assert "3 of 5 image pair(s) could not be scored" in err
    report = json.loads((tmp_path / "m.json").read_text())
    assert [row["name"] for row in report["images"]] == ["a", "d"] and report["summary"]["count"] == 2
    assert [row["name"] for row in report["failed"]] == ["b", "c", "e"]
    assert "truncated" in report["failed"][0]["error"] and "differ in size" in report["failed"][1]["error"]
    assert (tmp_path / "m.csv").read_text().count("\n") == 4  # header, a, d, mean


# 11. no leftovers: a train that fails on its data leaves no run folder; a killed save's temp file goes on the next start


def test_train_that_fails_on_its_data_leaves_no_run_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()  # no train_hr / train_lr
    for out, existed in ((tmp_path / "new" / "run", False), (tmp_path / "empty", True)):
        if existed:
            out.mkdir()
        code = cli_main(["train", "--preset", "tiny", "--data", str(tmp_path / "data"), "--out", str(out), "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and "train_hr" in err, err
        if existed:
            assert out.is_dir() and list(out.iterdir()) == []  # the folder was there before: kept, and left empty
        else:
            assert not (tmp_path / "new").exists()


def test_a_killed_saves_temp_file_is_removed_on_the_next_start(tiny_data, tmp_path, capsys):
    from dictsr_core.config import get_config
    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.training.trainer import train

    run = tmp_path / "run"
    train(get_config("tiny"), tiny_data, run, progress=False, stop_after=2)
    leftover = run / "checkpoints" / ".last.pt.k1ll3d.tmp"  # what atomic_torch_save leaves when SIGKILLed mid-write
    leftover.write_bytes(b"PK\x03\x04 half a checkpoint")
    mine = run / "checkpoints" / "notes.tmp"  # not a name dictsr writes: not dictsr's to remove
    mine.write_text("keep")
    capsys.readouterr()
    summary = train(get_config("tiny"), tiny_data, run, progress=False, resume=True)
    assert summary["step"] == 20 and load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 20
    assert not leftover.exists() and mine.read_text() == "keep"
    assert ".last.pt.k1ll3d.tmp" in capsys.readouterr().out


# 12. --tile and --batch-tiles are validated, naming the allowed range


@pytest.mark.parametrize("option, value, allowed", [("--tile", "-5", "0 (the whole image) or at least 8"),
                                                    ("--tile", "1", "0 (the whole image) or at least 8"),
                                                    ("--tile", "x", "0 (the whole image) or at least 8"),
                                                    ("--batch-tiles", "0", "at least 1")])
def test_sr_refuses_a_tile_outside_its_range(tiny_checkpoint, tmp_path, capsys, option, value, allowed):
    Image.fromarray(_image((12, 16, 3))).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as caught:
        _sr(tiny_checkpoint, tmp_path / "a.png", "--out", tmp_path / "o", option, value)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and option in err and allowed in err and value in err, err
    assert not (tmp_path / "o").exists()


def test_evaluate_refuses_a_tile_outside_its_range(small_pairs, capsys):
    with pytest.raises(SystemExit) as caught:
        cli_main(["evaluate", "--method", "bicubic", "--lr", str(small_pairs / "lr"), "--hr", str(small_pairs / "hr"),
                  "--tile", "2"])
    assert caught.value.code == 2 and "--tile" in capsys.readouterr().err


def test_super_resolve_refuses_a_tile_outside_its_range(tiny_inference):
    from dictsr_core.inference.tiled import super_resolve

    image = _image((12, 16, 3))
    for kwargs, message in (({"tile": 1}, "at least 8"), ({"tile": -5}, "at least 8"), ({"batch_tiles": 0}, "at least 1")):
        with pytest.raises(ValueError, match=message):
            super_resolve(tiny_inference, image, **kwargs)
    assert super_resolve(tiny_inference, image, tile=8).shape == (48, 64, 3)


# 13. a checksum of the checkpoint's tensors, verified on load


def _flip_a_byte_inside_the_largest_tensor(path):
    """Flip one byte in the middle of the largest tensor's storage, in place (a bit rot the zip format lets through)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[entry.header_offset + 26 : entry.header_offset + 30])
    start = entry.header_offset + 30 + name_length + extra_length
    data[start + entry.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_tensor_is_detected_and_the_file_named(tiny_checkpoint, tmp_path, capsys):
    import shutil

    from dictsr_core.training.checkpoint import CheckpointError, load_checkpoint

    assert load_checkpoint(tiny_checkpoint)["step"] == 0
    corrupt = tmp_path / "corrupt.pt"
    shutil.copyfile(tiny_checkpoint, corrupt)
    _flip_a_byte_inside_the_largest_tensor(corrupt)
    with pytest.raises(CheckpointError, match="checksum") as caught:
        load_checkpoint(corrupt)
    assert str(corrupt) in str(caught.value)
    Image.fromarray(_image((12, 16, 3))).save(tmp_path / "a.png")
    assert _sr(corrupt, tmp_path / "a.png", "--out", tmp_path / "o") == 2
    assert "corrupt.pt" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_checkpoint_without_a_checksum_still_loads(tiny_checkpoint, tmp_path):
    import torch

    from dictsr_core.training.checkpoint import load_checkpoint

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload.pop("checksum", None)  # as checkpoints before the checksum were written
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded["step"] == 0 and set(loaded["model"]) == set(payload["model"])
