"""Dictionary analysis (Fig. 4): usage, lookup-space embeddings, one shared 2-D map, decoded D_hr atoms, figures.

Everything runs with method="pca": UMAP's numba compilation is exercised once by the workbook run.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.transform import resize

from dictsr_core.analysis.dictionary_analysis import (
                                                      decode_hr_atoms, dictionary_map, embed_2d, entry_usage, lr_patch_embeddings,
                                                      )
from dictsr_core.analysis.figures import degradation_offsets_figure, dictionary_umap_figure, hr_atom_atlas_figure
from dictsr_core.inference.index_maps import content_index_map
from dictsr_core.inference.tiled import pad_to_grid


def _photo(image, h, w):
    return (resize(image, (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def lr_images():
    """Two LR images, one with odd sides so the code grid needs padding (ceil(h/p) x ceil(w/p) cells)."""
    return [_photo(skdata.chelsea(), 24, 32), _photo(skdata.rocket(), 19, 27)]


@pytest.fixture(scope="module")
def flat_inference():
    """Ablation A1 (hierarchical=False): no D_deg, otherwise built like tiny_inference."""
    from dictsr_core.config import get_config
    from dictsr_core.model import DictSR

    torch.manual_seed(0)
    net = DictSR(replace(get_config("tiny").model, hierarchical=False))
    hr = torch.rand(2, 3, 64, 64)
    net.dictionaries.initialize(*net.coupled_embeddings(hr, torch.nn.functional.avg_pool2d(hr, 4)))
    return net.inference().eval()


def _cells(images, p):
    return sum(-(-im.shape[0] // p) * -(-im.shape[1] // p) for im in images)


def _direct_indices(model, image):
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
    with torch.no_grad():
        return model.indices(pad_to_grid(x, model.code_patch)).reshape(-1).numpy()


def test_usage_counts_every_code_cell_once(tiny_inference, lr_images):
    usage = entry_usage(tiny_inference, lr_images)
    assert usage.shape == (tiny_inference.dictionaries.entries,)
    assert usage.sum() == _cells(lr_images, tiny_inference.code_patch)
    expected = np.bincount(np.concatenate([_direct_indices(tiny_inference, im) for im in lr_images]),
                           minlength=len(usage))
    np.testing.assert_array_equal(usage, expected)
    # tiling (tile smaller than the image) counts the same cells
    np.testing.assert_array_equal(entry_usage(tiny_inference, lr_images, tile=8), usage)


def test_patch_embeddings_are_the_lookup_rows_and_their_entries(tiny_inference, lr_images):
    model = tiny_inference
    z, entries = lr_patch_embeddings(model, lr_images, max_points=10_000)
    cells = _cells(lr_images, model.code_patch)
    assert z.shape == (cells, model.dictionaries.dim) and z.dtype == np.float32
    assert entries.shape == (cells,)
    expected = np.concatenate([_direct_indices(model, im) for im in lr_images])
    np.testing.assert_array_equal(entries, expected)
    flat_maps = np.concatenate([content_index_map(model, im).reshape(-1).numpy() for im in lr_images])
    np.testing.assert_array_equal(entries, flat_maps)
    # each row's entry is its nearest D_lr entry
    d_lr = model.dictionaries.d_lr.detach().numpy()
    nearest = ((z[:, None, :] - d_lr[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(entries, nearest)


def test_patch_embeddings_subsample_is_seeded_and_a_subset(tiny_inference, lr_images):
    z_all, e_all = lr_patch_embeddings(tiny_inference, lr_images, max_points=10_000)
    z, e = lr_patch_embeddings(tiny_inference, lr_images, max_points=50, seed=3)
    z2, _ = lr_patch_embeddings(tiny_inference, lr_images, max_points=50, seed=3)
    z3, _ = lr_patch_embeddings(tiny_inference, lr_images, max_points=50, seed=4)
    assert z.shape == (50, z_all.shape[1]) and e.shape == (50,)
    np.testing.assert_array_equal(z, z2)
    assert not np.array_equal(z, z3)
    match = (np.abs(z[:, None, :] - z_all[None]).max(-1) == 0)  # every kept row is one of the full set's rows
    assert match.any(1).all()
    np.testing.assert_array_equal(e, e_all[match.argmax(1)])


def test_pca_of_a_plane_in_4d_keeps_pairwise_distances():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(4, 2)))  # orthonormal 2-D plane in R^4
    points = rng.normal(size=(40, 2)) * [3.0, 1.0] @ basis.T + rng.normal(size=4)
    xy = embed_2d(points, method="pca")
    assert xy.shape == (40, 2)
    distances = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distances(xy), distances(points), atol=1e-4)
    flat = rng.normal(size=(5, 2))
    np.testing.assert_allclose(embed_2d(flat, method="pca"), flat, atol=1e-6)  # d == 2: as is


@pytest.mark.parametrize("kwargs, words", [
    (dict(points=np.zeros((10, 4)), method="tsne"), "method"),
    (dict(points=np.zeros((2, 4)), method="pca"), "at least 3 points"),
    (dict(points=np.array([[0.0, 1, 2], [1, np.nan, 0], [2, 2, 2], [3, 1, 0]]), method="pca"), "NaN"),
])
def test_embed_2d_rejects_bad_input_by_name(kwargs, words):
    with pytest.raises(ValueError, match=words):
        embed_2d(**kwargs)


def test_dictionary_map_shapes_and_shared_embedding(tiny_inference, lr_images):
    model = tiny_inference
    dicts = model.dictionaries
    dmap = dictionary_map(model, lr_images, max_points=60, offset_entries=3, method="pca")
    n, k, d = dicts.entries, dicts.num_offsets, dicts.dim
    assert dmap.method == "pca" and dmap.hierarchical
    assert dmap.entry_xy.shape == (n, 2) and dmap.usage.shape == (n,)
    assert dmap.patch_xy.shape == (60, 2) and dmap.patch_entries.shape == (60,)
    assert dmap.offset_entries.shape == (3,) and dmap.offset_xy.shape == (3, k, 2) and dmap.offset_norms.shape == (3, k)
    assert dmap.usage.sum() == _cells(lr_images, model.code_patch)
    # the most-used entries carry the offsets, and their norms are ||D_deg(j, k)||
    assert (dmap.usage[dmap.offset_entries] >= np.sort(dmap.usage)[-3]).all()
    d_deg = dicts.d_deg.detach().numpy()
    np.testing.assert_allclose(dmap.offset_norms, np.linalg.norm(d_deg[dmap.offset_entries], axis=-1), rtol=1e-5)
    # one PCA over entries + cells + offsets: distances between entries and offsets are those of that single fit
    d_lr = dicts.d_lr.detach().numpy()
    z, _ = lr_patch_embeddings(model, lr_images, max_points=60)
    stacked = np.concatenate([d_lr, z, (d_lr[dmap.offset_entries][:, None] + d_deg[dmap.offset_entries]).reshape(-1, d)])
    np.testing.assert_allclose(np.concatenate([dmap.entry_xy, dmap.patch_xy, dmap.offset_xy.reshape(-1, 2)]),
                               embed_2d(stacked, method="pca"), atol=1e-5)
    assert np.isfinite(dmap.entry_spacing).all() and (dmap.entry_spacing > 0).all()


def test_dictionary_map_without_degradation_dictionary_has_no_offsets(flat_inference, lr_images):
    dmap = dictionary_map(flat_inference, lr_images, max_points=40, method="pca")
    assert not dmap.hierarchical
    assert dmap.offset_entries.shape == (0,) and dmap.offset_xy.shape[0] == 0 and dmap.offset_xy.shape[-1] == 2
    assert dmap.entry_xy.shape == (flat_inference.dictionaries.entries, 2) and dmap.patch_xy.shape == (40, 2)


def test_decoded_atoms_are_the_centre_of_a_constant_grid(tiny_inference):
    model = tiny_inference
    assert model.code_patch == 2
    atoms = decode_hr_atoms(model, entries=[5, 17, 63], batch=2)  # batch < n: two chunks
    assert atoms.shape == (3, 8, 8, 3) and atoms.dtype == np.uint8
    for atom, j in zip(atoms, [5, 17, 63]):
        with torch.no_grad():
            image = model.decode(torch.full((1, 3, 3), j, dtype=torch.long))[0]
        crop = image[:, 8:16, 8:16].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(atom, crop)
    assert decode_hr_atoms(model).shape == (model.dictionaries.entries, 8, 8, 3)
    with pytest.raises(ValueError, match="entries"):
        decode_hr_atoms(model, entries=[64])
    with pytest.raises(ValueError, match="context"):
        decode_hr_atoms(model, entries=[0], context=2)


def _png_std(figure, path):
    figure.savefig(path, dpi=60)
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64).std()


def test_dictionary_figures_are_labelled_and_not_blank(tiny_inference, flat_inference, lr_images, tmp_path):
    dmap = dictionary_map(tiny_inference, lr_images, max_points=200, offset_entries=4, method="pca")

    umap_fig = dictionary_umap_figure(dmap)
    main = umap_fig.axes[0]
    assert (main.get_xlabel(), main.get_ylabel()) == ("PC 1", "PC 2")
    assert any("uses on validation" in ax.get_ylabel() for ax in umap_fig.axes[1:])  # the colorbar
    assert main.get_legend() is not None and umap_fig.get_suptitle()
    assert _png_std(umap_fig, tmp_path / "umap.png") > 10

    offsets_fig = degradation_offsets_figure(dmap)
    panels = [ax for ax in offsets_fig.axes if ax.get_visible() and ax.get_title().startswith("entry")]
    assert len(panels) == 4
    j = int(dmap.offset_entries[0])
    assert panels[0].get_title().startswith(f"entry {j}: used {int(dmap.usage[j])}x")
    assert any("D_deg" in ax.get_ylabel() for ax in offsets_fig.axes)  # the colorbar
    assert _png_std(offsets_fig, tmp_path / "offsets.png") > 10

    flat_fig = degradation_offsets_figure(dictionary_map(flat_inference, lr_images, max_points=40, method="pca"))
    assert any("no degradation dictionary (A1)" in t.get_text() for ax in flat_fig.axes for t in ax.texts)
    assert _png_std(flat_fig, tmp_path / "flat.png") > 5

    atoms = decode_hr_atoms(tiny_inference)
    ids = np.arange(len(atoms))
    atlas = hr_atom_atlas_figure(atoms, ids, usage=dmap.usage, columns=8, max_atoms=40)
    title = atlas.axes[0].get_title()
    assert "40 shown of 64" in title and "most-used first" in title
    assert atlas.axes[0].images[0].get_array().shape == (5 * 9 - 1, 8 * 9 - 1, 3)  # 1-px gaps
    first = atlas.axes[0].images[0].get_array()[:8, :8]
    np.testing.assert_array_equal(first, atoms[np.argmax(dmap.usage)])  # most-used atom in the top-left tile
    assert _png_std(atlas, tmp_path / "atlas.png") > 10
    assert "in entry order" in hr_atom_atlas_figure(atoms, ids).axes[0].get_title()
