"""The method issue's remedies for a content index the degradation moves (ablation rows Q1-Q9): each does what its
row says on dictionaries with known answers, and a run with all of them trains, resumes and loads."""

import numpy as np
import pytest
import torch

from dictsr_core.config import ABLATIONS, ConfigError, get_config, with_ablation
from dictsr_core.data.degradations import jpeg_roundtrip
from dictsr_core.data.noise_bank import jpeg_batch, noise_jpeg_quality
from dictsr_core.model.dictionaries import CoupledDictionaries


def dictionaries(content, offsets=None, **options) -> CoupledDictionaries:
    """2-d lookup space with identity projections, so embeddings are the features themselves."""
    content = torch.as_tensor(content, dtype=torch.float32)
    n = content.shape[0]
    k = 1 if offsets is None else offsets.shape[1]
    d = CoupledDictionaries(entries=n, offsets=k, dim=2, hr_channels=2, lr_channels=2, **options)
    with torch.no_grad():
        for conv in (d.lr_in, d.lr_out, d.hr_in, d.hr_out):
            conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            conv.bias.zero_()
        d.d_lr.copy_(content)
        d.d_hr.copy_(content)
        if d.d_deg is not None:
            d.d_deg.copy_(torch.zeros(n, k, 2) if offsets is None else torch.as_tensor(offsets, dtype=torch.float32))
        d.initialized.fill_(True)
        d._reset_ema()
    return d


def features(*points) -> torch.Tensor:
    """[1, 2, 1, len(points)]: one row of code cells with these embeddings."""
    return torch.tensor(points, dtype=torch.float32).t().reshape(1, 2, 1, len(points))


def test_cosine_lookup_chooses_by_angle_and_keeps_the_entries_on_the_unit_sphere():
    content = [[1.0, 0.0], [3.0, 3.0]]
    small = features([0.2, 0.15])  # nearest to entry 0 in distance, to entry 1 in angle (37 deg vs 8 deg)
    assert dictionaries(content).content_indices(small).item() == 0
    cosine = dictionaries(content, cosine_lookup=True)
    assert cosine.content_indices(small).item() == 1
    assert torch.allclose(cosine.content_entries.norm(dim=1), torch.ones(2))  # what the lookups measure against
    with torch.no_grad():
        cosine.d_lr.mul_(5.0)  # an optimiser step moved them off it
    cosine.tick()
    assert torch.allclose(cosine.d_lr.norm(dim=1), torch.ones(2))
    z = cosine.lr_embedding(features([0.2, 0.15]))
    assert torch.allclose(z.norm(dim=1), torch.ones(1, 1, 1))


def test_the_ema_codebook_moves_an_entry_to_the_mean_of_the_clean_embeddings_it_wins_and_takes_no_gradient():
    d = dictionaries([[0.0, 0.0], [10.0, 10.0]], codebook_ema=0.5).train()
    clean = features([1.0, 0.0], [1.0, 0.0], [1.0, 0.0])  # three cells win entry 0
    out = d.lookup_lr(clean, degraded=False)
    # count 1 -> 0.5 + 0.5 * 3 = 2, sum d0 -> 0.5 * d0 + 0.5 * 3 z = (1.5, 0): the entry is (d0 + 3 z) / 4 = (0.75, 0)
    assert torch.allclose(d.d_lr[0], torch.tensor([0.75, 0.0]), atol=1e-4)
    assert torch.allclose(d.d_lr[1], torch.tensor([10.0, 10.0]), atol=1e-3)  # unused: shrinks only by the smoothing
    out.loss.backward()
    assert d.d_lr.grad is None or not d.d_lr.grad.any()
    before = d.d_lr.detach().clone()
    d.lookup_lr(features([5.0, 5.0]), degraded=True)  # branch 3 (degraded LR) never moves the EMA codebook
    assert torch.equal(d.d_lr.detach(), before)


@pytest.mark.parametrize("moves, content_gets_gradient", [(True, True), (False, False)])
def test_stop_gradient_on_d_lr_in_branch_3_leaves_the_shift_to_d_deg(moves, content_gets_gradient):
    d = dictionaries([[0.0, 0.0], [4.0, 4.0]], offsets=torch.zeros(2, 2, 2), degraded_moves_content=moves).train()
    out = d.lookup_lr(features([0.5, 0.3], [3.0, 4.5]), degraded=True)
    out.loss.backward()
    assert d.d_deg.grad is not None and d.d_deg.grad.any()
    assert (d.d_lr.grad is not None and bool(d.d_lr.grad.any())) == content_gets_gradient


def test_the_joint_lookup_in_training_reaches_the_clean_entry_through_its_offset():
    # entry 1's offset points at the degraded embedding: the greedy lookup (nearest entry first) picks entry 0
    offsets = torch.tensor([[[0.0, 0.0]], [[-2.5, 0.0]]])
    degraded = features([1.4, 0.0])
    greedy = dictionaries([[0.0, 0.0], [4.0, 0.0]], offsets=offsets).train()
    joint = dictionaries([[0.0, 0.0], [4.0, 0.0]], offsets=offsets, joint_lookup_train=True).train()
    assert greedy.lookup_lr(degraded, degraded=True).indices.item() == 0
    out = joint.lookup_lr(degraded, degraded=True)
    assert (out.indices.item(), out.offsets.item()) == (1, 0)
    with pytest.raises(ConfigError, match="model.joint_lookup_train"):
        get_config("tiny", "A1", {"model.joint_lookup_train": True})


def _smooth_photos(count, side, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    return [np.clip(np.stack([80 + 90 * x, 60 + 120 * y, 140 - 60 * x * y], -1) + 40 * (x + k / 7 > 0.6)[..., None]
                    + rng.normal(0, 6, (side, side, 3)), 0, 255).astype(np.uint8) for k in range(count)]


def test_the_noise_bank_finds_the_lr_photos_jpeg_and_compresses_the_noisy_copies_with_it():
    hr = _smooth_photos(3, 384, seed=0)
    lr = _smooth_photos(3, 96, seed=1)
    patches = np.random.default_rng(2).normal(0, 4, (16, 8, 8, 3)).round().astype(np.int16)
    assert noise_jpeg_quality(hr, lr, patches)[0] is None
    quality, trace = noise_jpeg_quality(hr, [jpeg_roundtrip(image, 30) for image in lr], patches)
    assert quality in (20, 30, 40) and trace["real"] > trace["none"]
    batch = torch.from_numpy(np.stack(lr)).permute(0, 3, 1, 2).float() / 255
    coded = jpeg_batch(batch, 30)
    assert coded.shape == batch.shape and coded.dtype == batch.dtype
    reference = torch.from_numpy(np.stack([jpeg_roundtrip(image, 30) for image in lr])).permute(0, 3, 1, 2) / 255
    assert torch.allclose(coded, reference.float())  # each image as the probe and the synthetic data code it
    assert (coded - batch).abs().mean() > 1 / 255


def test_every_remedy_row_changes_the_config_it_names():
    base = get_config("cpu")
    rows = {f"Q{i}" for i in range(1, 10)}
    assert rows <= set(ABLATIONS)
    changed = {row: with_ablation(base, row) for row in sorted(rows)}
    assert changed["Q1"].model.cosine_lookup and changed["Q2"].model.codebook_ema == 0.99
    assert changed["Q3"].model.init == "kmeans" and not changed["Q4"].model.degraded_moves_content
    assert changed["Q5"].model.joint_lookup_train and changed["Q5"].model.joint_lookup
    assert changed["Q6"].train.noise_jpeg and changed["Q7"].model.code_patch == 2 * base.model.code_patch
    assert changed["Q8"].model.beta == 1.0 and changed["Q9"].train.restart_every == 0
    for row, cfg in changed.items():
        assert cfg != base, row
        cfg.validated()


def test_a_run_with_every_remedy_trains_resumes_and_super_resolves(tiny_data, tmp_path):
    from dictsr_core.inference.tiled import super_resolve
    from dictsr_core.training.checkpoint import load_checkpoint, load_inference_model
    from dictsr_core.training.trainer import train

    cfg = get_config("tiny", None, {"model.cosine_lookup": True, "model.codebook_ema": 0.9,
                                    "model.degraded_moves_content": False, "model.joint_lookup_train": True,
                                    "model.joint_lookup": True, "model.init": "kmeans", "model.beta": 1.0,
                                    "train.consistency_weight": 1.0, "train.noise_jpeg": True,
                                    "train.restart_every": 5, "train.usage_window": 3})
    half = train(cfg, tiny_data, tmp_path / "run", stop_after=10, progress=False)
    assert half["step"] == 10
    done = train(cfg, tiny_data, tmp_path / "run", resume=True, progress=False)
    assert done["step"] == cfg.train.total_steps
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    assert torch.isfinite(state["dictionaries.ema_sum"]).all() and (state["dictionaries.ema_count"] > 0).all()
    model = load_inference_model(tmp_path / "run" / "checkpoints" / "last.pt", device="cpu")[0]
    sr = super_resolve(model, np.full((8, 8, 3), 128, np.uint8), device=torch.device("cpu"))
    assert sr.shape == (32, 32, 3)


def test_a_training_batch_compresses_only_its_noisy_copies_at_the_quality_given():
    from dictsr_core.training.step import batch_to_device

    rng = np.random.default_rng(0)
    batch = {"hr": torch.from_numpy(np.stack(_smooth_photos(2, 64, seed=3))).permute(0, 3, 1, 2),
             "lr": torch.from_numpy(np.stack(_smooth_photos(2, 16, seed=4))).permute(0, 3, 1, 2),
             "noise": torch.from_numpy(rng.normal(0, 4, (2, 3, 16, 16)).round().astype(np.int16))}
    cpu = torch.device("cpu")
    hr, hr_down, lr, plain = batch_to_device(batch, cpu, torch.contiguous_format, True)
    hr2, hr_down2, lr2, coded = batch_to_device(batch, cpu, torch.contiguous_format, True, jpeg_quality=30)
    assert torch.equal(hr, hr2) and torch.equal(hr_down, hr_down2) and torch.equal(lr, lr2)
    assert torch.equal(coded, jpeg_batch(plain, 30)) and not torch.equal(coded, plain)


def test_the_paper_hr_branch_rows_give_the_paper_run_the_recipes_settings_and_change_nothing_on_the_recipe():
    from dictsr_core.workbook.profiles import PAPER_REMEDY_ABLATIONS, REMEDY_ABLATIONS

    paper = get_config("paper-cpu")
    assert paper.model.hr_grad == "ste" and paper.train.dictionary_lr_scale == 1.0
    q10, q11 = get_config("paper-cpu", ablation="Q10"), get_config("paper-cpu", ablation="Q11")
    assert q10.model.hr_grad == "entries" and q10.train == paper.train
    assert q11.train.dictionary_lr_scale == 10.0 and q11.model == paper.model
    recipe = get_config("cpu")
    assert (recipe.model.hr_grad, recipe.train.dictionary_lr_scale) == ("entries", 10.0)  # why the recipe lacks them
    assert {"Q10", "Q11"} <= set(PAPER_REMEDY_ABLATIONS) and not {"Q10", "Q11"} & set(REMEDY_ABLATIONS)


def test_the_combined_remedy_row_is_exactly_q1_and_q4_and_both_remedy_profiles_train_it():
    from dataclasses import replace

    from dictsr_core.workbook.profiles import PAPER_REMEDY_ABLATIONS, REMEDY_ABLATIONS

    for preset in ("cpu", "paper-cpu"):
        q1, q4, q12 = (get_config(preset, ablation=q) for q in ("Q1", "Q4", "Q12"))
        assert q12.model == replace(q1.model, degraded_moves_content=False) == replace(q4.model, cosine_lookup=True)
        assert q12.train == q1.train == q4.train and q12.model != get_config(preset).model
    assert "Q12" in REMEDY_ABLATIONS and "Q12" in PAPER_REMEDY_ABLATIONS
