"""UnpairedPatches and PairedImages: shapes, determinism by (seed, index), errors naming files."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dictsr_core.data.datasets import PairedImages, UnpairedPatches
from dictsr_core.data.io import ImageError, write_rgb


def _random_image(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture()
def unpaired(tmp_path):
    for i, shape in enumerate([(300, 280, 3), (256, 400, 3)]):
        write_rgb(tmp_path / "hr" / f"h{i}.png", _random_image(shape, i))
    for i, shape in enumerate([(70, 90, 3), (64, 64, 3), (100, 80, 3)]):
        write_rgb(tmp_path / "lr" / f"l{i}.png", _random_image(shape, 10 + i))
    return tmp_path


def test_items_have_the_right_shapes_and_dtype(unpaired):
    dataset = UnpairedPatches(unpaired / "hr", unpaired / "lr", length=50)
    item = dataset[3]
    assert item["hr"].shape == (3, 256, 256) and item["hr"].dtype == torch.uint8
    assert item["lr"].shape == (3, 64, 64) and item["lr"].dtype == torch.uint8
    assert len(dataset) == 50
    with pytest.raises(IndexError):
        dataset[50]


def test_patches_are_real_crops_of_the_sources(unpaired):
    dataset = UnpairedPatches(unpaired / "hr", unpaired / "lr", hr_patch=32, lr_patch=16, augment=False)
    lr = dataset[7]["lr"].permute(1, 2, 0).numpy()
    found = False
    for image in dataset.lr_images:
        windows = np.lib.stride_tricks.sliding_window_view(image, (16, 16, 3))[..., 0, :, :, :]
        found |= bool(np.any(np.all(windows == lr, axis=(-3, -2, -1))))
    assert found


def test_item_is_a_pure_function_of_seed_and_index(unpaired):
    a = UnpairedPatches(unpaired / "hr", unpaired / "lr", seed=3, length=48)
    b = UnpairedPatches(unpaired / "hr", unpaired / "lr", seed=3, length=48)
    for index in (0, 17, 47):
        assert torch.equal(a[index]["hr"], b[index]["hr"]) and torch.equal(a[index]["lr"], b[index]["lr"])
    c = UnpairedPatches(unpaired / "hr", unpaired / "lr", seed=4, length=48)
    assert not torch.equal(a[5]["hr"], c[5]["hr"])
    # Same batches with 0 or 2 workers and when resuming from the middle.
    serial = [batch["hr"] for batch in DataLoader(a, batch_size=8, num_workers=0)]
    parallel = [batch["hr"] for batch in DataLoader(a, batch_size=8, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel)) and len(serial) == 6
    resumed = torch.stack([a[i]["hr"] for i in range(24, 32)])
    assert torch.equal(resumed, serial[3])


def test_augmentation_produces_all_eight_orientations(unpaired):
    # A tiny single-image set whose patch covers the whole image: only the orientation varies.
    folder = unpaired / "one"
    write_rgb(folder / "x.png", _random_image((8, 8, 3), 99))
    dataset = UnpairedPatches(folder, folder, hr_patch=8, lr_patch=8, length=400)
    seen = {dataset[i]["hr"].numpy().tobytes() for i in range(400)}
    assert len(seen) == 8


def test_small_image_is_an_error_naming_it_or_skipped(unpaired):
    write_rgb(unpaired / "hr" / "tiny.png", _random_image((100, 100, 3), 5))
    with pytest.raises(ImageError, match="tiny.png"):
        UnpairedPatches(unpaired / "hr", unpaired / "lr")
    with pytest.warns(UserWarning, match="tiny.png"):
        dataset = UnpairedPatches(unpaired / "hr", unpaired / "lr", skip_small=True)
    assert len(dataset.hr_images) == 2


def test_empty_folder_is_an_error_naming_it(tmp_path, unpaired):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        UnpairedPatches(tmp_path / "empty", unpaired / "lr")


def test_paired_images_match_by_stem_and_check_scale(tmp_path):
    for name in ("a", "b"):
        write_rgb(tmp_path / "lr" / f"{name}.png", _random_image((10, 12, 3), 1))
        write_rgb(tmp_path / "hr" / f"{name}.png", _random_image((40, 48, 3), 2))
    pairs = PairedImages(tmp_path / "lr", tmp_path / "hr")
    assert len(pairs) == 2 and pairs[1]["name"] == "b"
    assert pairs[0]["lr"].shape == (10, 12, 3) and pairs[0]["hr"].shape == (40, 48, 3)
    write_rgb(tmp_path / "hr" / "b.png", _random_image((41, 48, 3), 2))
    with pytest.raises(ValueError, match=r"lr/b\.png.*hr/b\.png.*1:4"):
        PairedImages(tmp_path / "lr", tmp_path / "hr")


def test_paired_images_report_unpartnered_files(tmp_path):
    write_rgb(tmp_path / "lr" / "a.png", _random_image((10, 10, 3), 1))
    write_rgb(tmp_path / "hr" / "a.png", _random_image((40, 40, 3), 1))
    write_rgb(tmp_path / "hr" / "orphan.png", _random_image((40, 40, 3), 1))
    with pytest.raises(ValueError, match="orphan.png"):
        PairedImages(tmp_path / "lr", tmp_path / "hr")
