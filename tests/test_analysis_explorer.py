"""The dictionary explorer (notebook 07_explore) on a tiny model: indices, offsets, renderings, checkpoints, widget."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dictsr_core.analysis.explorer import encode_image, explorer_widget, inspect_location, load_training_model, location_figure
from dictsr_core.config import get_config
from dictsr_core.inference.tiled import pad_to_grid, super_resolve
from dictsr_core.model import DictSR, PlainSR
from dictsr_core.model.dictsr import to_signed, to_unit
from dictsr_core.training.checkpoint import CheckpointError, save_checkpoint


def tiny_model(ablation=None, seed=0):
    torch.manual_seed(seed)
    net = DictSR(get_config("tiny", ablation=ablation).model)
    hr = torch.rand(2, 3, 64, 64)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, torch.nn.functional.avg_pool2d(hr, 4)))
    d = net.dictionaries
    if d.d_deg is not None:  # offsets large enough that every k renders differently
        with torch.no_grad():
            d.d_deg.copy_(torch.randn_like(d.d_deg) * d.d_lr.std())
    return net.eval()


@pytest.fixture(scope="module")
def net():
    return tiny_model()


@pytest.fixture(scope="module")
def image():
    """23 x 30: an odd height, so that the last code row is half padding."""
    from skimage import data as skdata
    from skimage.transform import resize

    return (resize(skdata.chelsea(), (23, 30), anti_aliasing=True) * 255).round().astype(np.uint8)


def as_batch(image, p):
    return pad_to_grid(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, p)


def to_uint8(x):
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def close(a, b):
    """uint8 images equal up to a rounding flip (window vs whole-image convolutions)."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.02, (diff.max(), diff.mean())


SPOTS = [(0, 0), (11, 17), (22, 29), (5, 28)]


@pytest.mark.parametrize("y, x", SPOTS)
def test_entry_is_the_inference_index_and_offset_the_branch3_offset(net, image, y, x):
    p = net.cfg.code_patch
    batch = as_batch(image, p)
    with torch.no_grad():
        inference_j = net.inference().indices(batch)[0]
        branch3 = net.dictionaries.lookup_lr(net.enc_lr(to_signed(batch)), degraded=True)
    loc = inspect_location(net, image, y, x)
    assert loc.cell == (y // p, x // p)
    assert loc.entry == int(inference_j[loc.cell])
    assert loc.offset == int(branch3.offsets[0][loc.cell])
    assert loc.usage == int((inference_j == loc.entry).sum())
    d = net.dictionaries
    z = torch.from_numpy(loc.z)
    d_lr, d_deg = d.d_lr.detach(), d.d_deg.detach()
    assert loc.content_distance == pytest.approx(float((z - d_lr[loc.entry]).norm()), rel=1e-5)
    by_offset = [float((z - d_lr[loc.entry] - d_deg[loc.entry, k]).norm()) for k in range(d.num_offsets)]
    assert loc.offset_distance == pytest.approx(min(by_offset), rel=1e-5)


def test_renderings_one_per_offset_and_own_vector_reproduces_the_lr_decoder(net, image):
    p, K = net.cfg.code_patch, net.cfg.offsets
    loc = inspect_location(net, image, 12, 15)
    assert len(loc.renderings) == K and len(loc.offset_norms) == K
    top, bottom, left, right = loc.box
    shape = (bottom - top, right - left, 3)
    assert all(r.shape == shape and r.dtype == np.uint8 for r in loc.renderings + [loc.clean_rendering, loc.reconstruction])
    assert loc.context.shape == shape and np.array_equal(loc.context, image[top:bottom, left:right])
    # offsets with different vectors render differently (and differently from the clean content)
    d_deg = net.dictionaries.d_deg[loc.entry]
    for a in range(K):
        for b in range(a + 1, K):
            if not torch.equal(d_deg[a], d_deg[b]):
                assert not np.array_equal(loc.renderings[a], loc.renderings[b]), (a, b)
        assert not np.array_equal(loc.renderings[a], loc.clean_rendering)
    # two-stage lookup: the cell's own branch-3 vector is D_lr(j) + D_deg(j, k), so rendering k is the
    # D_lr decoder's output on the unmodified map of the whole image (cropped to the context)
    with torch.no_grad():
        branch3 = net.dictionaries.lookup_lr(net.enc_lr(to_signed(as_batch(image, p))), degraded=True)
        whole = to_uint8(to_unit(net.dec_lr(branch3.features)))[top:bottom, left:right]
    close(loc.renderings[loc.offset], whole)
    close(loc.reconstruction, whole)
    assert not np.array_equal(loc.clean_rendering, whole)


def test_sr_context_is_the_inference_output(net, image):
    loc = inspect_location(net, image, 20, 3)
    top, bottom, left, right = loc.box
    sr = super_resolve(net.inference(), image, tile=None)
    close(loc.sr_context, sr[4 * top : 4 * bottom, 4 * left : 4 * right])


def test_neighbours_sorted_exclude_the_entry_and_atoms_are_hr_patches(net, image):
    loc = inspect_location(net, image, 7, 9, neighbours=6)
    assert len(loc.neighbours) == 6 and loc.entry not in loc.neighbours
    assert loc.neighbour_distances == sorted(loc.neighbour_distances)
    d_lr = net.dictionaries.d_lr.detach()
    gaps = (d_lr - d_lr[loc.entry]).norm(dim=1)
    gaps[loc.entry] = float("inf")
    assert loc.neighbour_distances[0] == pytest.approx(float(gaps.min()), rel=1e-5)
    assert loc.neighbour_distances == pytest.approx(gaps[loc.neighbours].tolist(), rel=1e-5)
    s = net.cfg.hr_patch
    assert loc.hr_atom.shape == (s, s, 3) and len(loc.neighbour_atoms) == 6
    assert all(a.shape == (s, s, 3) and a.dtype == np.uint8 for a in loc.neighbour_atoms)
    assert loc.lr_patch.shape == (net.cfg.code_patch,) * 2 + (3,)
    assert inspect_location(net, image, 7, 9, neighbours=0).neighbours == []


def test_bad_coordinates_and_tiny_images_are_refused(net, image):
    for y, x, name in [(-1, 0, "y=-1"), (23, 0, "y=23"), (0, 30, "x=30"), (0, -2, "x=-2")]:
        with pytest.raises(ValueError, match=name):
            inspect_location(net, image, y, x)
    with pytest.raises(ValueError, match="smaller than one"):
        inspect_location(net, image[:1, :5], 0, 0)


def test_without_degradation_dictionary(image):
    net = tiny_model("A1")
    loc = inspect_location(net, image, 4, 4)
    assert loc.offset is None and loc.offset_distance is None and loc.renderings == [] and loc.offset_norms == []
    close(loc.clean_rendering, loc.reconstruction)  # branch 3 without D_deg quantises to D_lr(j) alone
    assert png_is_not_blank(location_figure(loc))


def test_load_training_model_round_trip_and_refuses_baselines(net, tmp_path):
    cfg = get_config("tiny")
    path = save_checkpoint(tmp_path / "dictsr.pt", model_state=net.state_dict(), config=cfg, step=0)
    loaded = load_training_model(path)
    assert isinstance(loaded, DictSR) and not loaded.training
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    baseline_cfg = get_config("tiny", method="paired-bicubic")
    baseline = save_checkpoint(tmp_path / "paired.pt", model_state=PlainSR(baseline_cfg.model).state_dict(),
                               config=baseline_cfg, step=0)
    with pytest.raises(CheckpointError, match="paired.pt"):
        load_training_model(baseline)

    other = DictSR(get_config("tiny", ablation="B2").model)  # twice the entries: shapes do not match
    wrong = save_checkpoint(tmp_path / "wrong.pt", model_state=other.state_dict(), config=cfg, step=0)
    with pytest.raises(CheckpointError, match="wrong.pt"):
        load_training_model(wrong)


def png_is_not_blank(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=60)
    pixels = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"), dtype=float)
    return pixels.std() > 10 and (pixels < 128).mean() > 0.01


def test_location_figure_saves_a_non_blank_png(net, image):
    figure = location_figure(inspect_location(net, image, 10, 10))
    assert png_is_not_blank(figure)
    titles = [ax.get_title() for sub in figure.subfigs for ax in sub.axes]
    assert any("(chosen)" in t for t in titles) and any(t.startswith("#") for t in titles)


@pytest.mark.slow
def test_widget_renders_on_creation_and_follows_the_sliders(net, image):
    pytest.importorskip("ipywidgets")
    small = image[:9, :12].copy()
    widget = explorer_widget(net, {"cat": image, "small": small})
    first = widget.last_location
    assert first is not None and widget.last_figure is not None
    assert (first.y, first.x) == (23 // 2, 30 // 2)
    assert "entry" in widget.info.value and f"entry {first.entry}" in widget.info.value

    codes = encode_image(net, image)
    moved = next((y, x) for y in range(0, 23, 2) for x in range(0, 30, 2)
                 if int(codes.entries[y // 2, x // 2]) != first.entry)
    widget.y_slider.value, widget.x_slider.value = moved
    assert (widget.last_location.y, widget.last_location.x) == moved
    assert widget.last_location.entry == int(codes.entries[moved[0] // 2, moved[1] // 2]) != first.entry
    assert f"entry {widget.last_location.entry}" in widget.info.value

    widget.neighbour_slider.value = 3
    assert len(widget.last_location.neighbours) == 3

    widget.image_choice.value = "small"  # slider ranges follow the image; the location is clamped into it
    assert (widget.y_slider.max, widget.x_slider.max) == (8, 11)
    loc = widget.last_location
    assert loc.y <= 8 and loc.x <= 11 and loc.context.shape[0] <= 9
