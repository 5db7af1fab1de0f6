"""Reading images: every mode comes out HxWx3 uint8, unusable files are named in the error."""

import numpy as np
import pytest
from PIL import Image

from dictsr_core.data.io import ImageError, list_images, read_rgb, write_rgb


def test_grayscale_rgba_palette_and_16bit_become_rgb(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    rgba = np.zeros((32, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: composited over white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((32, 64, 3), 90, np.uint8)).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as deep:
        assert deep.mode.startswith("I")  # really a 16-bit file
    for name in ("gray", "rgba", "palette", "deep"):
        array = read_rgb(tmp_path / f"{name}.png")
        assert array.shape == (32, 64, 3) and array.dtype == np.uint8, name
    np.testing.assert_array_equal(read_rgb(tmp_path / "gray.png")[..., 1], gray)
    assert np.all(read_rgb(tmp_path / "rgba.png") == 255)
    np.testing.assert_array_equal(read_rgb(tmp_path / "deep.png")[..., 0], gray)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_rgb(tmp_path / "rotated.jpg").shape == (20, 10, 3)


@pytest.mark.parametrize("kind", ["empty", "truncated", "text"])
def test_unusable_files_raise_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image at all")
    else:
        write_rgb(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageError) as caught:
        read_rgb(path)
    assert str(path) in str(caught.value)


def test_min_size_error_names_file(tmp_path):
    write_rgb(tmp_path / "small.png", np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ImageError, match="small.png.*9x8"):
        read_rgb(tmp_path / "small.png", min_size=16)


def test_list_images_skips_other_files_and_sorts(tmp_path):
    write_rgb(tmp_path / "b.png", np.zeros((4, 4, 3), np.uint8))
    write_rgb(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png"]
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")
