import os

import numpy as np
import pytest
import torch

from dictsr_core.cli import main
from dictsr_core.config import ConfigError
from dictsr_core.data.datasets import training_lr_images
from dictsr_core.inference.tiled import image_tensor, pad_to_grid
from dictsr_core.model.dictionaries import coarse_code
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.code_coarsening import derive_coarse_run


def test_the_derived_run_keeps_the_representative_entries_fit_on_the_training_images(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "coarse"
    assert derive_coarse_run(tiny_run, out, 4, tiny_data) is True
    source, derived = load_checkpoint(tiny_run / "checkpoints" / "last.pt"), load_checkpoint(out / "checkpoints" / "last.pt")
    assert derived["config"].model.entries == 4 and derived["config"].train == source["config"].train
    assert derived["step"] == source["step"] and "optimizer" not in derived
    assert derived["derived_from"]["coarsen"] == 4 and derived["derived_from"]["run"] == str(tiny_run)
    # the kept rows are the representatives of k-means over the entries the training images choose
    model = inference_model(source)
    with torch.no_grad():
        chosen = torch.cat([model.indices(pad_to_grid(image_tensor(im), model.code_patch)).reshape(-1)
                            for im in training_lr_images(tiny_data)])
    keep = coarse_code(model.dictionaries.d_lr, chosen, 4).representative
    for key in ("dictionaries.d_lr", "dictionaries.d_hr", "dictionaries.d_deg", "dictionaries.born"):
        assert torch.equal(derived["model"][key], source["model"][key][keep]), key
    assert torch.equal(derived["model"]["enc_lr.0.weight"], source["model"]["enc_lr.0.weight"])
    # an ordinary 4-entry DictSR: it loads, looks up only those entries, and super-resolves
    coarse = inference_model(derived)
    x = image_tensor(training_lr_images(tiny_data)[0][:16, :16])
    assert set(coarse.indices(x).unique().tolist()) <= set(range(4))
    assert coarse(x).shape == (1, 3, 64, 64) and torch.isfinite(coarse(x)).all()
    assert (out / "config.yaml").read_text().count("entries: 4") == 1
    assert (out / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    # up to date: nothing written again, unless forced
    assert derive_coarse_run(tiny_run, out, 4, tiny_data) is False
    # the same source named another way (relative here, absolute there): still up to date, its checksum names it
    assert derive_coarse_run(os.path.relpath(tiny_run), out, 4, tiny_data) is False
    assert derive_coarse_run(tiny_run, out, 4, tiny_data, force=True) is True
    # the source's checkpoint handed in (as the workbook does after reusing a run): the same derivation, not read again
    again = tmp_path / "again"
    assert derive_coarse_run(tiny_run, again, 4, tiny_data, payload=source) is True
    assert torch.equal(load_checkpoint(again / "checkpoints" / "last.pt")["model"]["dictionaries.d_lr"],
                       derived["model"]["dictionaries.d_lr"])


def test_bad_coarsening_requests_name_what_is_wrong(tiny_run, tiny_data, tmp_path, capsys):
    entries = load_checkpoint(tiny_run / "checkpoints" / "last.pt")["config"].model.entries
    with pytest.raises(ConfigError, match=f"1 to {entries - 1} entries"):
        derive_coarse_run(tiny_run, tmp_path / "x", entries, tiny_data)
    with pytest.raises(ConfigError, match="1 to"):
        derive_coarse_run(tiny_run, tmp_path / "x", 0, tiny_data)
    assert not (tmp_path / "x").exists()
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "y"), "--coarsen", "4"]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "y"), "--coarsen", "4", "--data",
                 str(tiny_data)]) == 0
    assert load_checkpoint(tmp_path / "y" / "checkpoints" / "last.pt")["config"].model.entries == 4
    paired = tmp_path / "paired"
    assert main(["train", "--preset", "tiny", "--method", "paired-bicubic", "--data", str(tiny_data), "--out",
                 str(paired), "--device", "cpu"]) == 0
    with pytest.raises(ConfigError, match="no code to coarsen"):
        derive_coarse_run(paired, tmp_path / "z", 4, tiny_data)


# ---- --coarsen auto: the code size chosen from the training images alone (training/coarse_size.py) ----------

def test_noise_field_tiles_whole_patches_and_crops_the_edge_tiles():
    from dictsr_core.data.noise_bank import noise_field

    patches = np.stack([np.full((4, 4, 3), value, np.int16) for value in (-3, 5, 7)])
    patches[1, 0, 0] = 40  # a marked corner shows where each drawn tile starts
    field = noise_field(10, 6, patches, np.random.default_rng(0))
    assert field.shape == (10, 6, 3) and field.dtype == np.int16
    for top in (0, 4, 8):
        for left in (0, 4):
            tile = field[top : top + 4, left : left + 4]
            assert any(np.array_equal(tile, p[: tile.shape[0], : tile.shape[1]]) for p in patches), (top, left)
    assert len({int(field[t, l, 0]) for t in (1, 5, 9) for l in (1, 5)}) > 1  # not one patch everywhere


def test_the_rule_keeps_the_largest_size_that_reaches_the_target():
    from dictsr_core.training.coarse_size import largest_size_reaching, size_ladder

    assert size_ladder(1024) == [512, 256, 128, 64, 32, 16, 8, 4, 2]
    assert size_ladder(8) == [4, 2] and size_ladder(2) == []
    curve = {1024: 0.05, 512: 0.2, 16: 0.49, 8: 0.5, 4: 0.7, 2: 0.45}
    assert largest_size_reaching(curve, 0.5) == 8
    assert largest_size_reaching(curve, 0.6) == 4
    assert largest_size_reaching(curve, 0.04) == 1024
    assert largest_size_reaching(curve, 0.71) is None


def test_a_code_reaches_the_agreement_target_by_the_mean_less_z_standard_errors():
    from dictsr_core.training.coarse_size import agreement_bound, agreement_summary, largest_size_reaching

    shares = [0.5, 0.6, 0.7]  # mean 0.6, standard deviation 0.1, standard error 0.1 / sqrt(3)
    assert agreement_bound(shares, z=2.0) == pytest.approx(0.6 - 2 * 0.1 / np.sqrt(3))
    assert agreement_bound(shares, z=0.0) == pytest.approx(0.6)
    assert agreement_bound([0.4], z=2.0) == pytest.approx(0.4)  # one photo: no spread to count
    assert agreement_bound([0.55] * 5) == pytest.approx(0.55)  # every photo alike
    # a size whose mean clears the target but whose photos spread too much does not reach it
    means, bounds = agreement_summary({8: [0.4, 0.5, 0.75], 4: [0.52, 0.54, 0.56]}, z=2.0)
    assert means[8] > means[4] > 0.5 and bounds[4] > 0.5 > bounds[8]
    assert largest_size_reaching(means, 0.5) == 8 and largest_size_reaching(bounds, 0.5) == 4
    with pytest.raises(ValueError, match="at least one"):
        agreement_bound([])
    with pytest.raises(ValueError, match="must not lie above the mean"):
        agreement_bound(shares, z=-1.0)


def test_training_agreement_is_one_for_identical_images_and_drops_with_noise(tiny_run, tiny_data):
    from dictsr_core.training.coarse_size import agreement_by_size, noisy_copies

    model = inference_model(load_checkpoint(tiny_run / "checkpoints" / "last.pt"))
    clean = training_lr_images(tiny_data)[:2]
    entries = model.dictionaries.d_lr.shape[0]
    codes = {entries: None, 4: torch.tensor([0, 5, 9, 13]), 1: torch.tensor([3])}
    assert agreement_by_size(model, clean, clean, codes) == {entries: 1.0, 4: 1.0, 1: 1.0}
    loud = noisy_copies(clean, np.random.default_rng(1).integers(-60, 61, size=(16, 8, 8, 3)).astype(np.int16))
    found = agreement_by_size(model, clean, loud, codes)
    assert found[1] == 1.0  # one entry: nothing to disagree on
    assert 0.0 <= found[entries] < 1.0
    each = agreement_by_size(model, clean, loud, codes, per_image=True)
    assert all(len(values) == 2 for values in each.values())
    assert {size: pytest.approx(np.mean(values)) for size, values in each.items()} == found
    with pytest.raises(ValueError, match="matching"):
        agreement_by_size(model, clean, loud[:1], codes)


def test_a_lookup_over_kept_entries_is_the_coarsened_runs_lookup(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "c4"
    assert derive_coarse_run(tiny_run, out, 4, tiny_data)
    source, derived = (inference_model(load_checkpoint(path / "checkpoints" / "last.pt")) for path in (tiny_run, out))
    keep = torch.tensor([int((source.dictionaries.d_lr == row).all(1).nonzero()[0]) for row in derived.dictionaries.d_lr])
    x = pad_to_grid(image_tensor(training_lr_images(tiny_data)[1]), source.code_patch)
    from dictsr_core.model.dictsr import to_signed
    with torch.no_grad():
        kept = source.dictionaries.content_indices(source.enc_lr(to_signed(x)), keep)
    assert torch.equal(kept, derived.indices(x))


def test_coarsen_auto_keeps_the_largest_size_that_reaches_the_target(tiny_run, noisy_data, tmp_path, capsys):
    from dictsr_core.training.code_coarsening import choose_size, training_probe
    from dictsr_core.training.coarse_size import size_ladder

    payload = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    model, cfg = inference_model(payload), payload["config"]
    chosen = torch.cat([model.indices(pad_to_grid(image_tensor(im), model.code_patch)).reshape(-1)
                        for im in training_lr_images(noisy_data)])
    choice = choose_size(model, chosen, training_probe(noisy_data, cfg), 0.5)
    curve, bound = choice["agreement"], choice["agreement_bound"]  # a size reaches the target by its bound
    assert list(curve) == list(bound) == [cfg.model.entries, *size_ladder(cfg.model.entries)]
    assert all(bound[size] <= curve[size] for size in curve)
    below_n = {size: value for size, value in bound.items() if size < cfg.model.entries and value > bound[cfg.model.entries]}
    assert below_n, f"no coarser code agrees more than the fine one: {bound}"
    target = max(below_n.values())
    expected = max(size for size, value in bound.items() if value >= target)
    out = tmp_path / "auto"
    assert main(["derive", "--from", str(tiny_run), "--out", str(out), "--coarsen", "auto", "--agreement", str(target),
                 "--data", str(noisy_data)]) == 0
    assert f"--coarsen auto: {expected} entries" in capsys.readouterr().err
    derived = load_checkpoint(out / "checkpoints" / "last.pt")
    assert derived["config"].model.entries == expected and derived["coarse_size"]["clusters"] == expected
    assert derived["derived_from"]["coarsen"] == "auto" and derived["derived_from"]["agreement_target"] == target
    assert derived["coarse_size"]["agreement"] == pytest.approx(curve)
    assert derived["coarse_size"]["agreement_bound"] == pytest.approx(bound) and derived["coarse_size"]["z"] == 2.0
    # the same request again is up to date; another target is another derivation
    assert derive_coarse_run(tiny_run, out, "auto", noisy_data, target=target) is False
    if expected != cfg.model.entries:
        assert derive_coarse_run(tiny_run, out, expected, noisy_data) is True


def test_coarsen_auto_says_why_it_cannot_choose(tiny_run, tiny_data, noisy_data, tmp_path, capsys):
    import shutil

    from dictsr_core.data.io import write_rgb

    busy = tmp_path / "busy"  # LR photos with no flat window: no real noise to add
    shutil.copytree(tiny_data, busy)
    for path in (busy / "train_lr").iterdir():
        path.unlink()
    stripes = np.where((np.arange(48) // 4) % 2 == 0, 0, 255).astype(np.uint8)  # 8-pixel period: never flat
    write_rgb(busy / "train_lr" / "texture.png", np.repeat(np.repeat(stripes[None, :, None], 48, 0), 3, 2))
    with pytest.raises(ConfigError, match="train_lr.*flat enough.*--coarsen M"):
        derive_coarse_run(tiny_run, tmp_path / "a", "auto", busy)
    with pytest.raises(ConfigError, match="nothing to coarsen"):
        derive_coarse_run(tiny_run, tmp_path / "b", "auto", noisy_data, target=1e-6)
    with pytest.raises(ConfigError, match=r"fraction in \(0, 1\]"):
        derive_coarse_run(tiny_run, tmp_path / "c", "auto", noisy_data, target=1.5)
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "d"), "--coarsen", "4", "--agreement", "0.5",
                 "--data", str(noisy_data)]) == 2
    assert "--agreement goes with --coarsen auto, --restarts or --split" in capsys.readouterr().err
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "d"), "--coarsen", "4", "--agreement-z", "1",
                 "--data", str(noisy_data)]) == 2
    assert "--agreement-z goes with --coarsen auto, --restarts or --split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "e"), "--coarsen", "many", "--data", str(noisy_data)])
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_restarts_keep_the_draw_with_the_best_training_lpips_among_those_that_agree(tiny_run, noisy_data, tmp_path, capsys):
    from dictsr_core.training.coarse_size import best_restart

    # the rule: lowest LPIPS among the draws that reach the target; the highest agreement when none does
    agreement, lpips = {0: 0.6, 1: 0.4, 2: 0.55}, {0: 0.30, 1: 0.10, 2: 0.25}
    assert best_restart(agreement, lpips, 0.5) == 2
    assert best_restart(agreement, lpips, 0.9) == 0
    out = tmp_path / "r"
    assert main(["derive", "--from", str(tiny_run), "--out", str(out), "--coarsen", "4", "--restarts", "3",
                 "--agreement", "0.2", "--data", str(noisy_data)]) == 0
    assert "3 k-means draws of 4 entries" in capsys.readouterr().err
    derived = load_checkpoint(out / "checkpoints" / "last.pt")
    scores = derived["coarse_restarts"]
    assert sorted(scores["lpips_alex"]) == [0, 1, 2]
    assert scores["seed"] == best_restart(scores["agreement_bound"], scores["lpips_alex"], 0.2)
    assert scores["agreement_z"] == 2.0 and all(scores["agreement_bound"][s] <= scores["agreement"][s] for s in range(3))
    assert derived["derived_from"]["restarts"] == 3 and derived["derived_from"]["coarsen"] == 4
    assert derived["derived_from"]["agreement_z"] == 2.0
    # another z is another derivation, not the one already there
    assert derive_coarse_run(tiny_run, out, 4, noisy_data, target=0.2, restarts=3) is False
    assert derive_coarse_run(tiny_run, out, 4, noisy_data, target=0.2, restarts=3, agreement_z=0.0, log=lambda l: None)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["coarse_restarts"]["agreement_bound"] == pytest.approx(
        scores["agreement"])
    # the kept entries are that draw's representatives
    payload = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    model = inference_model(payload)
    with torch.no_grad():
        chosen = torch.cat([model.indices(pad_to_grid(image_tensor(im), model.code_patch)).reshape(-1)
                            for im in training_lr_images(noisy_data)])
    keep = coarse_code(model.dictionaries.d_lr, chosen, 4, seed=scores["seed"]).representative
    assert torch.equal(derived["model"]["dictionaries.d_lr"], payload["model"]["dictionaries.d_lr"][keep])
    # the draws differ: a restart is another k-means, not the same one again
    others = {tuple(coarse_code(model.dictionaries.d_lr, chosen, 4, seed=s).representative.tolist()) for s in range(3)}
    assert len(others) > 1
    with pytest.raises(ConfigError, match="--restarts 0"):
        derive_coarse_run(tiny_run, tmp_path / "bad", 4, noisy_data, restarts=0)
    with pytest.raises(ConfigError, match="--agreement-z -1"):
        derive_coarse_run(tiny_run, tmp_path / "bad", 4, noisy_data, restarts=2, agreement_z=-1)


# ---- --split: the coarse code grown where the training LPIPS gains and the agreement holds ---------------------

def test_a_split_replaces_one_kept_entry_by_two_of_the_entries_it_stands_for():
    from dictsr_core.model.dictionaries import split_kept_entry

    entries = torch.tensor([[0.0], [1.0], [10.0], [11.0], [20.0], [21.0]])
    chosen = torch.tensor([0, 1, 1, 2, 2, 2, 3, 4, 5, 5, 5])
    keep = torch.tensor([1, 3])  # entry 1 stands for {0, 1}; entry 3 for {10, 11, 20, 21}
    grown = split_kept_entry(entries, chosen, keep, 1)
    assert grown[0] == 1 and len(grown) == 3  # the other kept entry untouched
    # 2-means of {10, 11, 20, 21} weighted by their cells: one from each pair, the entry nearest its centroid
    assert set(grown[1:].tolist()) == {2, 5}
    assert split_kept_entry(entries, chosen, keep, 0).tolist()[0] == 3  # the first region split instead
    # a region whose cells choose one entry only cannot be split
    assert split_kept_entry(entries, torch.tensor([0, 0, 2, 3]), keep, 0) is None


def test_a_split_must_lower_the_training_lpips_by_more_than_z_standard_errors():
    from dictsr_core.training.code_refinement import significant_gain

    before = [0.50, 0.40, 0.30, 0.20]
    assert significant_gain(before, [0.45, 0.35, 0.25, 0.15])  # the same gain on every image: no spread at all
    uneven = [0.30, 0.42, 0.28, 0.22]  # gains 0.2, -0.02, 0.02, -0.02: mean 0.045, standard error 0.052
    assert significant_gain(before, uneven, z=0.5) and not significant_gain(before, uneven, z=1.0)
    assert not significant_gain(before, before, z=0.0)  # no gain is no gain, whatever z
    assert not significant_gain(before, [0.55, 0.45, 0.35, 0.25], z=0.0)
    with pytest.raises(ValueError, match="matching"):
        significant_gain(before, before[:3])


def test_refinement_keeps_the_split_with_the_best_training_lpips_among_those_that_agree(tiny_run, noisy_data, tmp_path,
                                                                                        capsys):
    from dictsr_core.model.dictionaries import split_kept_entry
    from dictsr_core.training.code_coarsening import training_probe
    from dictsr_core.training.code_refinement import refine_code
    from dictsr_core.training.coarse_size import agreement_bound, agreement_by_size, training_lpips

    payload = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    model = inference_model(payload)
    with torch.no_grad():
        chosen = torch.cat([model.indices(pad_to_grid(image_tensor(im), model.code_patch)).reshape(-1)
                            for im in training_lr_images(noisy_data)])
    probe = training_probe(noisy_data, payload["config"])
    start = coarse_code(model.dictionaries.d_lr, chosen, 2).representative
    keep, record = refine_code(model, chosen, start, probe, 1e-6, z=0.0, agreement_z=0.0, max_splits=2,
                               log=lambda line: None)
    steps = record["steps"]
    assert steps[0]["entries"] == 2 and steps[0]["split"] is None and len(keep) == steps[-1]["entries"]
    assert len(steps) >= 2, f"no split lowered the training LPIPS-Alex of a 2-entry code: {steps}"
    assert [s["entries"] for s in steps] == list(range(2, 2 + len(steps)))
    assert all(later["lpips_alex"] < earlier["lpips_alex"] for earlier, later in zip(steps, steps[1:]))
    # the first split is the best of all single splits of the start, as scored on the probe
    candidates = {int(start[i]): split_kept_entry(model.dictionaries.d_lr, chosen, start, i) for i in range(2)}
    candidates = {entry: grown for entry, grown in candidates.items() if grown is not None}
    scores = {entry: training_lpips(model, grown, probe["noisy"], probe["hr"]) for entry, grown in candidates.items()}
    assert steps[1]["split"] == min(scores, key=lambda entry: (scores[entry], entry))
    assert steps[1]["lpips_alex"] == pytest.approx(scores[steps[1]["split"]])
    assert steps[-1]["agreement"] == pytest.approx(agreement_by_size(model, probe["clean"], probe["noisy"], {0: keep})[0])
    # a target no split can keep: the code stays as it was
    best = max(agreement_by_size(model, probe["clean"], probe["noisy"], candidates).values())
    if best < 1:
        same, record = refine_code(model, chosen, start, probe, best + 1e-6, agreement_z=0.0, log=lambda line: None)
        assert torch.equal(same, start) and len(record["steps"]) == 1
    # the agreement each step is held to is its bound: the mean less agreement_z standard errors of it
    shares = agreement_by_size(model, probe["clean"], probe["noisy"], {0: start}, per_image=True)[0]
    _, record = refine_code(model, chosen, start, probe, 1e-6, agreement_z=3.0, max_splits=0, log=lambda line: None)
    assert record["agreement_z"] == 3.0
    assert record["steps"][0]["agreement_bound"] == pytest.approx(agreement_bound(shares, 3.0))
    # the command: the derived run is the grown code, and says how it grew
    out = tmp_path / "split"
    assert main(["derive", "--from", str(tiny_run), "--out", str(out), "--coarsen", "2", "--split", "--agreement",
                 "1e-6", "--data", str(noisy_data)]) == 0
    assert "[split] 2 entries" in capsys.readouterr().err
    derived = load_checkpoint(out / "checkpoints" / "last.pt")
    grown = derived["coarse_split"]["steps"][-1]["entries"]
    assert derived["config"].model.entries == grown == derived["model"]["dictionaries.d_lr"].shape[0] >= 2
    assert derived["derived_from"]["split"] is True
    assert derive_coarse_run(tiny_run, out, 2, noisy_data, target=1e-6, split=True) is False  # up to date
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "no"), "--split"]) == 2
    assert "--split goes with --coarsen" in capsys.readouterr().err and not (tmp_path / "no").exists()
