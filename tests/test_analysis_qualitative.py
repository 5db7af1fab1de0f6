"""Fig. 3 (qualitative_figure) and its crop chooser: where the crops land, what each panel shows, a real PNG."""

import math

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle
from PIL import Image
from skimage import data as skdata
from skimage.transform import resize

from dictsr_core.analysis.figures import choose_crops, crop_psnr, method_color, method_label, qualitative_figure

METHODS = ["bicubic", "oracle", "dictsr"]


def _small(image, shape):
    return (resize(image, shape, anti_aliasing=True) * 255).round().astype(np.uint8)


def _row(name, image, shape, seed):
    """An HR image, its x4 LR, and three fake outputs that differ from HR in different ways."""
    hr = _small(image, shape)
    lr = _small(hr, (shape[0] // 4, shape[1] // 4))
    noisy = hr + np.random.default_rng(seed).normal(0, 12, hr.shape)
    return {"name": name, "LR": lr, "HR": hr, "bicubic": _small(lr, shape),
            "oracle": np.clip(hr.astype(int) + 3, 0, 255).astype(np.uint8),
            "dictsr": np.clip(noisy, 0, 255).round().astype(np.uint8)}


@pytest.fixture(scope="module")
def rows():
    return [_row("astronaut", skdata.astronaut(), (64, 64), 0), _row("coffee", skdata.coffee(), (48, 64), 1)]


@pytest.fixture(scope="module")
def hr():
    return _small(skdata.astronaut(), (64, 64))


def _planted(hr, squares, methods=("a", "b", "c")):
    """Outputs equal to HR except in each (method, top, left, side) square, where that method is off by
    exactly 128 per pixel (top bit flipped), so a square's score does not depend on the image content."""
    outputs = {m: hr.copy() for m in methods}
    for method, top, left, side in squares:
        outputs[method][top:top + side, left:left + side] ^= 128
    return outputs


def test_choose_crops_finds_the_square_where_one_method_is_wrong(hr):
    outputs = _planted(hr, [("c", 36, 20, 16)])
    assert choose_crops(outputs, hr, size=16, scale=4) == [(36, 20)]


def test_choose_crops_prefers_disagreement_to_a_region_every_method_gets_wrong(hr):
    # all three methods fail the same way on the top-left square; only "b" slightly differs near the bottom right
    outputs = _planted(hr, [(m, 0, 0, 16) for m in "abc"])
    outputs["b"][44:60, 44:60] = np.clip(hr[44:60, 44:60].astype(int) + 40, 0, 255)
    assert choose_crops(outputs, hr, size=16, scale=4) == [(44, 44)]


def test_choose_crops_corners_are_multiples_of_the_scale(rows):
    row = rows[1]
    outputs = {m: row[m] for m in METHODS}
    for scale in (3, 4, 8):
        corners = choose_crops(outputs, row["HR"], size=16, count=3, scale=scale)
        assert len(corners) == 3
        assert all(top % scale == 0 and left % scale == 0 for top, left in corners)
        assert all(top + 16 <= 48 and left + 16 <= 64 for top, left in corners)


def test_choose_crops_count_two_gives_both_planted_squares_without_overlap(hr):
    # without suppression the runner-up would be the first window shifted by one LR pixel
    outputs = _planted(hr, [("a", 4, 8, 16), ("c", 40, 44, 12)])
    first, second = choose_crops(outputs, hr, size=16, count=2, scale=4)
    assert first == (4, 8)
    assert 40 - 4 <= second[0] <= 40 and 44 - 4 <= second[1] <= 44  # covers the 12x12 square
    assert abs(first[0] - second[0]) >= 16 or abs(first[1] - second[1]) >= 16


def test_choose_crops_says_when_the_requested_crops_do_not_fit(hr):
    outputs = _planted(hr, [("a", 0, 0, 8)])
    with pytest.raises(ValueError, match="only 4 crops"):
        choose_crops(outputs, hr, size=32, count=5, scale=4)
    with pytest.raises(ValueError, match="count"):
        choose_crops(outputs, hr, size=16, count=0)


def test_choose_crops_rejects_mismatched_shapes_and_too_small_images(hr):
    outputs = {"bicubic": hr, "dictsr": hr[:60]}
    with pytest.raises(ValueError, match=r"'dictsr'.*\(60, 64, 3\).*\(64, 64, 3\)"):
        choose_crops(outputs, hr, size=16)
    with pytest.raises(ValueError, match=r"image too small for crop: 64x64 image, 80x80 crop"):
        choose_crops({"bicubic": hr}, hr, size=80)


def test_crop_psnr_matches_the_metrics_convention(rows):
    from dictsr_core.evaluation.metrics import psnr_rgb

    row = rows[0]
    assert crop_psnr(row["dictsr"], row["HR"]) == pytest.approx(psnr_rgb(row["dictsr"], row["HR"]), abs=1e-9)
    assert crop_psnr(row["HR"], row["HR"]) == math.inf


def _image_axes(figure):
    return [ax for ax in figure.axes if ax.images]


def test_figure_panels_titles_frames_and_one_shared_error_scale(rows):
    figure = qualitative_figure(rows, size=16, methods=METHODS)
    blocks, columns = 2, len(METHODS) + 2
    image_axes = _image_axes(figure)
    assert len(image_axes) == blocks * columns + blocks + blocks * len(METHODS)  # zooms + overviews + error maps
    colorbars = [ax for ax in figure.axes if ax.get_ylabel() == "|error| (0-255)"]
    assert len(colorbars) == 1 and not colorbars[0].images

    zooms = [ax for ax in image_axes if ax.get_title() and not ax.patches]
    assert len(zooms) == blocks * columns
    first_lines = [ax.get_title().split("\n")[0] for ax in zooms[:columns]]
    assert first_lines == [method_label(c) for c in ["LR", *METHODS, "HR"]]
    assert first_lines[3] == "DictSR"
    for ax, column in zip(zooms[:columns], ["LR", *METHODS, "HR"]):
        assert ax.spines["top"].get_edgecolor() == to_rgba(method_color(column))

    errors = [ax.images[0] for ax in image_axes if ax.images[0].get_array().ndim == 2]
    assert len(errors) == blocks * len(METHODS)
    assert len({(im.norm.vmin, im.norm.vmax) for im in errors}) == 1
    assert errors[0].norm.vmax == pytest.approx(max(float(im.get_array().max()) for im in errors))


def test_figure_uses_the_given_crops_and_reports_their_psnr(rows):
    row = rows[0]
    figure = qualitative_figure([row], crops=[[(8, 24), (40, 0)]], size=16, methods=METHODS, error_maps=False)
    image_axes = _image_axes(figure)
    assert len(image_axes) == 2 * (len(METHODS) + 3)
    assert not [ax for ax in figure.axes if not ax.images]  # no colorbar without error maps
    overviews = [ax for ax in image_axes if ax.patches]
    marked = [next(p for p in ax.patches if isinstance(p, Rectangle)).get_xy() for ax in overviews]
    assert marked == [(24 - 0.5, 8 - 0.5), (0 - 0.5, 40 - 0.5)]
    expected = crop_psnr(row["dictsr"][8:24, 24:40], row["HR"][8:24, 24:40])
    dictsr_titles = [ax.get_title() for ax in image_axes if ax.get_title().startswith("DictSR")]
    assert dictsr_titles[0] == f"DictSR\n{expected:.2f} dB"
    lr_zoom = next(ax for ax in image_axes if ax.get_title().startswith("LR"))
    assert np.array_equal(lr_zoom.images[0].get_array(), np.repeat(np.repeat(row["LR"][2:6, 6:10], 4, 0), 4, 1))


def test_figure_rejects_crops_off_the_lr_grid_and_missing_methods(rows):
    with pytest.raises(ValueError, match="off the x4 LR grid"):
        qualitative_figure(rows[:1], crops=[[(2, 0)]], size=16)
    with pytest.raises(ValueError, match="'coffee' has no output for \\['oracle'\\]"):
        qualitative_figure([rows[0], {k: v for k, v in rows[1].items() if k != "oracle"}], size=16)


def test_figure_saves_a_non_blank_png(rows, tmp_path):
    figure = qualitative_figure(rows, size=16)
    path = tmp_path / "qualitative.png"
    figure.savefig(path, dpi=50)
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert pixels.std() > 20  # real image content, not an empty canvas
