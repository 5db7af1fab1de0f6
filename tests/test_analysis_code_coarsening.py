import json

import numpy as np
import pytest
import torch

from dictsr_core.analysis.code_coarsening import coarsening_curve, coarsening_markdown
from dictsr_core.model.dictionaries import coarse_code
from dictsr_core.evaluation.index_consistency import clean_lr
from dictsr_core.evaluation.metrics import psnr_rgb
from dictsr_core.inference.tiled import image_tensor


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def test_two_separated_blobs_make_two_clusters_with_a_member_for_each():
    gen = torch.Generator().manual_seed(0)
    blob_a = torch.randn(6, 4, generator=gen) * 0.01
    blob_b = torch.randn(5, 4, generator=gen) * 0.01 + 10.0
    entries = torch.cat([blob_a, blob_b])
    code = coarse_code(entries, torch.arange(11).repeat(3), 2)
    assert len(set(code.group[:6].tolist())) == 1 and len(set(code.group[6:].tolist())) == 1
    assert code.group[0] != code.group[6]
    for cluster, member in enumerate(code.representative.tolist()):  # each stands for its own cluster
        assert code.group[member] == cluster
    same = coarse_code(entries, torch.arange(11), 11)
    assert torch.equal(same.group, torch.arange(11)) and torch.equal(same.representative, torch.arange(11))
    with pytest.raises(ValueError, match="at least 1 cluster"):
        coarse_code(entries, torch.arange(11), 0)
    with pytest.raises(ValueError, match="1 chosen cells cannot make 2 clusters"):
        coarse_code(entries, torch.arange(1), 2)


def test_the_curve_ends_are_the_model_itself_and_one_atom_everywhere(tiny_inference):
    hr_a, hr_b = photo(64, 64, seed=1), photo(64, 64, seed=2)
    noisy = np.clip(clean_lr(hr_b).astype(int) + np.random.default_rng(5).integers(-30, 30, (16, 16, 3)), 0, 255)
    pairs = [{"name": "a", "lr": clean_lr(hr_a), "hr": hr_a}, {"name": "b", "lr": noisy.astype(np.uint8), "hr": hr_b}]
    n = tiny_inference.dictionaries.entries
    curve = coarsening_curve(tiny_inference, pairs, sizes=(10_000, 1), lpips=False)
    assert curve["entries"] == n and [row["clusters"] for row in curve["rows"]] == [n, 1]
    model_row, one = curve["rows"]
    # M = N is the model: its own agreement (pair a is its clean LR: 1) and its own SR
    own = []
    for item in pairs:
        x = image_tensor(item["lr"])
        agree = float((tiny_inference.indices(x) == tiny_inference.indices(image_tensor(clean_lr(item["hr"])))).float().mean())
        sr = tiny_inference(x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        own.append((agree, psnr_rgb(sr, item["hr"])))
    assert own[0][0] == 1.0 and own[1][0] < 1.0
    assert model_row["index_agreement"] == pytest.approx(np.mean([a for a, _ in own]))
    assert model_row["psnr_rgb"] == pytest.approx(np.mean([p for _, p in own]))
    assert one["index_agreement"] == 1.0 and one["psnr_rgb"] != model_row["psnr_rgb"]
    assert model_row["lpips_alex"] is None
    table = coarsening_markdown(curve, "tiny")
    assert f"| {n} (the model) |" in table and "| 1 | 1.00 |" in table
    with pytest.raises(ValueError, match="at least one validation pair"):
        coarsening_curve(tiny_inference, [], lpips=False)
    # clusters fit on other images: the model row is still the model, and one cluster still agrees everywhere
    other = coarsening_curve(tiny_inference, pairs, sizes=(10_000, 2, 1), lpips=False, fit_images=[clean_lr(photo(64, 96, 7))])
    assert other["fit"] == "images" and other["fit_cells"] == 8 * 12 and curve["fit"] == "validation"
    assert other["rows"][0] == model_row and other["rows"][2]["index_agreement"] == 1.0


def test_training_lr_images_are_the_clean_lr_of_train_hr_and_the_train_lr_images(tiny_data, tmp_path):
    from dictsr_core.data.datasets import training_lr_images
    from dictsr_core.data.io import read_rgb

    images = training_lr_images(tiny_data)
    hr = [read_rgb(p) for p in sorted((tiny_data / "train_hr").glob("*.png"))]
    lr = [read_rgb(p) for p in sorted((tiny_data / "train_lr").glob("*.png"))]
    assert len(images) == len(hr) + len(lr)
    assert np.array_equal(images[0], clean_lr(hr[0])) and np.array_equal(images[-1], lr[-1])
    with pytest.raises(ValueError, match="no training images"):
        training_lr_images(tmp_path)


@pytest.mark.slow
def test_coarsen_command_writes_json_and_readme_block(tmp_path, capsys):
    from dictsr_core.cli import main
    from dictsr_core.data.prepare import prepare_dataset

    data = tmp_path / "sample-aim"
    prepare_dataset(data, source="sample", degradation="aim", seed=0)
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--data", str(data), "--out", str(run), "--device", "cpu"]) == 0
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    out = tmp_path / "curve.json"
    argv = ["coarsen", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(data), "--sizes", "4", "1",
            "--json", str(out), "--readme", str(readme), "--device", "cpu"]
    assert main(argv) == 0
    curve = json.loads(out.read_text())
    assert [row["clusters"] for row in curve["rows"]] == [4, 1] and curve["images"] == 2
    assert curve["fit"] == "images" and curve["fit_cells"] > 0  # the training images by default
    assert curve["rows"][1]["index_agreement"] == 1.0 and 0 < curve["rows"][0]["lpips_alex"] < 1
    text = readme.read_text()
    assert text.count("<!-- dictsr coarsen sample-aim run: start -->") == 1 and "| 4 | " in text
    assert main(argv) == 0 and readme.read_text() == text  # replaced in place, same numbers
    capsys.readouterr()
    paired = tmp_path / "paired"
    assert main(["train", "--preset", "tiny", "--method", "paired-bicubic", "--data", str(data), "--out", str(paired),
                 "--device", "cpu"]) == 0
    assert main(["coarsen", "--checkpoint", str(paired / "checkpoints" / "last.pt"), "--data", str(data)]) == 2
    assert "no dictionary to coarsen" in capsys.readouterr().err


def test_the_clusters_weigh_each_entry_by_the_cells_that_chose_it_and_none_starts_empty():
    entries = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    # {0, 1} and {10, 11}: the representative is the entry nearest the cell-weighted centroid
    heavy_one = coarse_code(entries, torch.tensor([0] + [1] * 100 + [2] * 100 + [3]), 2)
    heavy_zero = coarse_code(entries, torch.tensor([0] * 100 + [1] + [2] + [3] * 100), 2)
    assert sorted(heavy_one.representative.tolist()) == [1, 2]
    assert sorted(heavy_zero.representative.tolist()) == [0, 3]
    # one entry chosen by nearly every cell: the other clusters still start on other entries, so none is empty
    gen = torch.Generator().manual_seed(0)
    many = torch.randn(30, 4, generator=gen)
    chosen = torch.cat([torch.zeros(10_000, dtype=torch.long), torch.arange(30)])
    code = coarse_code(many, chosen, 8)
    assert len(set(code.group.tolist())) == 8 and len(set(code.representative.tolist())) == 8


def test_a_cluster_is_represented_by_an_entry_some_cell_chose_never_by_an_unused_one():
    # entries 0 and 2 are chosen equally, entry 1 (never chosen: its D_hr row never trained) sits on their centroid
    entries = torch.tensor([[0.0], [1.0], [2.0], [50.0]])
    code = coarse_code(entries, torch.tensor([0] * 10 + [2] * 10 + [3] * 10), 2)
    assert 1 not in code.representative.tolist()
    assert sorted(code.representative.tolist()) in ([0, 3], [2, 3])
    assert code.group[1] == code.group[0] == code.group[2]  # the unused entry still belongs to its cluster
