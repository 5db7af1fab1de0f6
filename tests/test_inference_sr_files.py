"""`dictsr sr` around the network: folders as inputs, --suffix / --ext / --outscale, alpha kept (Real-ESRGAN's
inference_realesrgan.py options), and its argument errors named."""

import numpy as np
import pytest
from PIL import Image

from dictsr_core.cli import main
from dictsr_core.data.io import read_rgba, write_rgb
from dictsr_core.inference.sr_files import expand_inputs, finish_output, output_name


def _photo(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_output_names_follow_suffix_and_ext():
    assert output_name("a/cat.jpg") == "cat.png"
    assert output_name("a/cat.jpg", "out", "jpg") == "cat_out.jpg"
    assert output_name("a/cat.JPEG", ext="auto") == "cat.jpg" and output_name("a/cat.tiff", ext="auto") == "cat.tif"
    assert output_name("a/cat.bmp", ext="auto") == "cat.png"  # a format sr does not write: PNG
    assert output_name("a/cat.png", ext="webp") == "cat.webp"


def test_finish_output_resizes_to_outscale_and_appends_the_alpha():
    sr = _photo(40, 60)
    assert finish_output(sr, None, (10, 15)) is sr  # 4x already: untouched
    half = finish_output(sr, None, (10, 15), outscale=2)
    assert half.shape == (20, 30, 3)
    alpha = np.zeros((10, 15), np.uint8)
    alpha[:, 8:] = 255
    rgba = finish_output(sr, alpha, (10, 15), outscale=3.5)
    assert rgba.shape == (35, 52, 4)  # round(10 * 3.5), round(15 * 3.5)
    assert rgba[:, :20, 3].max() < 40 and rgba[:, 36:, 3].min() > 215  # transparent left, opaque right


def test_a_folder_input_is_its_images_and_an_empty_one_is_named(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        write_rgb(folder / name, _photo(8, 8))
    (folder / "notes.txt").write_text("not an image")
    assert expand_inputs([str(folder), "x.png"]) == [str(folder / "a.jpg"), str(folder / "b.png"), "x.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty: a folder without images"):
        expand_inputs([str(empty)])


def test_sr_on_a_folder_keeps_rgba_and_writes_names_and_sizes_as_asked(tiny_run, tmp_path, capsys):
    checkpoint = str(tiny_run / "checkpoints" / "last.pt")
    folder = tmp_path / "photos"
    folder.mkdir()
    colour = _photo(12, 16, seed=1)
    alpha = np.where(np.arange(16)[None, :] < 8, 0, 255).repeat(12, 0).astype(np.uint8)
    Image.fromarray(np.dstack([colour, alpha]), "RGBA").save(folder / "logo.png")
    write_rgb(folder / "photo.jpg", _photo(12, 16, seed=2))
    out = tmp_path / "sr"
    assert main(["sr", str(folder), "--checkpoint", checkpoint, "--out", str(out), "--device", "cpu",
                 "--suffix", "x4", "--ext", "jpg"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["logo_x4.png", "photo_x4.jpg"]  # RGBA: PNG, not JPEG
    logo = Image.open(out / "logo_x4.png")
    assert logo.mode == "RGBA" and logo.size == (64, 48)
    kept = np.asarray(logo)[..., 3]
    assert kept[:, :28].max() < 40 and kept[:, 36:].min() > 215  # the transparency where it was
    assert "alpha kept" in capsys.readouterr().out
    colour_in, alpha_in = read_rgba(folder / "logo.png")
    assert np.array_equal(colour_in, colour) and np.array_equal(alpha_in, alpha)  # colour as stored, not on white
    half = tmp_path / "half"
    assert main(["sr", str(folder / "photo.jpg"), "--checkpoint", checkpoint, "--out", str(half), "--device", "cpu",
                 "--outscale", "2", "--ext", "auto"]) == 0
    assert Image.open(half / "photo.jpg").size == (32, 24)


@pytest.mark.parametrize("argv, message", [(["--outscale", "0"], "--outscale 0.0: a positive number"),
                                           (["--outscale", "nan"], "--outscale nan: a positive number"),
                                           (["--suffix", "a/b"], "--suffix 'a/b': a file name part")])
def test_sr_names_a_bad_option(tiny_run, tmp_path, capsys, argv, message):
    image = tmp_path / "p.png"
    write_rgb(image, _photo(8, 8))
    assert main(["sr", str(image), "--checkpoint", str(tiny_run / "checkpoints" / "last.pt"),
                 "--out", str(tmp_path / "o"), "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
