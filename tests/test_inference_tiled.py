import copy

import numpy as np
import pytest
import torch
from PIL import Image

from dictsr_core.inference.tiled import receptive_margin, super_resolve


@pytest.fixture(scope="module")
def model(tiny_inference):
    return tiny_inference


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(50, 70), (37, 41), (96, 64)])
def test_tiled_equals_untiled(model, shape):
    image = photo(*shape)
    whole = super_resolve(model, image, tile=0)
    tiled = super_resolve(model, image, tile=16)
    assert whole.shape == (4 * shape[0], 4 * shape[1], 3)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_batched_tiles_equal_single_tiles(model):
    image = photo(70, 90, seed=5)
    single = super_resolve(model, image, tile=16, batch_tiles=1)
    batched = super_resolve(model, image, tile=16, batch_tiles=8)
    assert np.abs(single.astype(int) - batched.astype(int)).max() <= 1


def test_tile_plan_covers_every_pixel_once():
    from dictsr_core.inference.tiled import tile_plan

    cover = np.zeros((37, 50), int)
    for (t0, t1, l0, l1), (top, bottom, left, right) in tile_plan(37, 50, tile=16, margin=8):
        assert t0 <= top and bottom <= t1 and l0 <= left and right <= l1
        cover[top:bottom, left:right] += 1
    assert (cover == 1).all()


def test_too_small_margin_breaks_agreement(model):
    """The default margin is needed: with none, tile seams differ (so the test above can fail)."""
    image = photo(64, 64, seed=3)
    whole = super_resolve(model, image, tile=0)
    seams = super_resolve(model, image, tile=16, margin=0)
    assert np.abs(whole.astype(int) - seams.astype(int)).max() > 1
    assert receptive_margin(model) % model.code_patch == 0


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "RGB", "CMYK"])
def test_any_pil_mode_gives_exactly_4x_rgb(model, mode):
    rgb = Image.fromarray(photo(21, 30))
    if mode == "I;16":
        image = Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257))
        assert image.mode.startswith("I;16")
    else:
        image = rgb.convert(mode)
    out = super_resolve(model, image)
    assert out.shape == (84, 120, 3) and out.dtype == np.uint8


def test_sixteen_bit_scales_like_eight_bit(model):
    gray = np.asarray(Image.fromarray(photo(24, 24)).convert("L"))
    a = super_resolve(model, Image.fromarray(gray))
    b = super_resolve(model, Image.fromarray(gray.astype(np.uint16) * 257))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_tiny_image_is_a_clear_error(model):
    with pytest.raises(ValueError, match="1x1"):
        super_resolve(model, np.zeros((1, 1, 3), np.uint8))


def test_cuda_graphs_need_cuda(model):
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device, not cpu"):
        super_resolve(model, image, device="cpu", cuda_graphs=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_tiles_equal_eager_tiles(model):
    gpu = copy.deepcopy(model).to("cuda")  # the fixture stays on the CPU for the other tests
    image = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    eager = super_resolve(gpu, image, tile=16, batch_tiles=2)
    graphed = super_resolve(gpu, image, tile=16, batch_tiles=2, cuda_graphs=True)
    again = super_resolve(gpu, image, tile=16, batch_tiles=2, cuda_graphs=True)  # replays the captured graphs
    assert np.abs(graphed.astype(int) - eager.astype(int)).max() <= 1
    assert np.array_equal(graphed, again)


@pytest.mark.slow
@pytest.mark.parametrize("compile", [False, True])
def test_fast_inference_gives_the_same_image(model, compile):
    from dictsr_core.inference.fast import FastInference

    torch._dynamo.reset()
    fast = FastInference(copy.deepcopy(model), compile=compile)
    image = photo(30, 44, seed=3)
    reference = super_resolve(model, image, tile=16, batch_tiles=2)
    out = super_resolve(fast, image, tile=16, batch_tiles=2)
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1
    assert fast.model.enc_lr[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_fast_inference_falls_back_to_eager_when_compiling_fails(model, monkeypatch, capsys):
    from dictsr_core.inference.fast import FastInference

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: broken)
    fast = FastInference(copy.deepcopy(model), compile=True)
    image = photo(16, 16)
    out = super_resolve(fast, image)
    assert "torch.compile failed (RuntimeError: no compiler here); running eager" in capsys.readouterr().out
    assert fast.compiled is None
    assert np.abs(out.astype(int) - super_resolve(model, image).astype(int)).max() <= 1
