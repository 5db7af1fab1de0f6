"""The texture gate (model.texture_gate): the LR roughness it reads, the gated lookup, the derived run that carries
it, and the rule that chooses it on the training photos."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dictsr_core.cli import main
from dictsr_core.config import ConfigError, get_config
from dictsr_core.inference.index_maps import content_index_map
from dictsr_core.inference.tiled import image_tensor, pad_to_grid, receptive_margin, super_resolve
from dictsr_core.model import DictSRInference
from dictsr_core.model.dictionaries import CoupledDictionaries
from dictsr_core.model.texture_gate import lr_roughness
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.coarse_size import agreement_by_size, central_window
from dictsr_core.training.code_coarsening import derive_coarse_run, training_probe
from dictsr_core.training.texture_gate_search import best_gated, derive_gated_run
from dictsr_core.workbook import context
from dictsr_core.workbook.plan import plan
from dictsr_core.workbook.profiles import PROFILES, recipe_model_name


def test_roughness_is_zero_on_flat_colour_high_at_an_edge_and_damps_noise():
    flat = torch.full((1, 3, 24, 24), 0.4)
    assert lr_roughness(flat).abs().max() < 1e-3
    edge = flat.clone()
    edge[..., 12:] = 0.6  # a 51 grey-level step between columns 11 and 12
    r = lr_roughness(edge)
    assert r.shape == (1, 24, 24)
    assert r[0, :, 11].min() > 10 and r[0, :, :5].max() < 0.1 and r[0, :, 19:].max() < 0.1
    # white noise of std 8 grey levels reads far below 8 (the low-pass), a 2x2-cell map averages each cell
    noise = (0.5 + torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 8 / 255).clamp(0, 1)
    assert 0.5 < lr_roughness(noise).mean() < 4
    assert torch.allclose(lr_roughness(noise, 2), torch.nn.functional.avg_pool2d(lr_roughness(noise)[:, None], 2)[:, 0])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        lr_roughness(torch.zeros(1, 1, 8, 8))


def _gated_dictionaries(gate: float = 5.0) -> CoupledDictionaries:
    """Entries at 0, 1, 2, 3 on a 1-d lookup axis (the embedding = the input's channel), the coarse code {0, 3}."""
    dicts = CoupledDictionaries(entries=4, offsets=1, dim=1, hr_channels=1, lr_channels=1, coarse_entries=2,
                                texture_gate=gate)
    with torch.no_grad():
        dicts.lr_in.weight.fill_(1.0)
        dicts.lr_in.bias.zero_()
        dicts.d_lr.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
        dicts.coarse_keep.copy_(torch.tensor([0, 3]))
    return dicts


def test_gated_lookup_uses_all_entries_on_textured_cells_and_the_coarse_code_on_flat_ones():
    dicts = _gated_dictionaries()
    features = torch.tensor([[[[0.9, 2.2, 1.2, 2.6]]]])  # fine: 1, 2, 1, 3; coarse ({0, 3}): 0, 3, 0, 3
    roughness = torch.tensor([[[0.0, 1.0, 5.0, 9.0]]])  # the gate is 5: cells 2 and 3 are textured
    assert dicts.gated
    assert dicts.content_indices(features, roughness=roughness).tolist() == [[[0, 3, 1, 3]]]
    assert dicts.fine_indices(features).tolist() == [[[1, 2, 1, 3]]]
    assert dicts.coarse_indices(features, dicts.coarse_keep).tolist() == [[[0, 3, 0, 3]]]
    # `keep` bypasses the gate (what the coarse-code rules score), and a gated lookup without the map refuses
    assert dicts.content_indices(features, keep=torch.tensor([1, 2])).tolist() == [[[0, 1, 0, 1]]]
    with pytest.raises(ValueError, match="roughness map of shape"):
        dicts.content_indices(features)
    # without a coarse code the dictionaries have no gate and no extra state
    plain = CoupledDictionaries(entries=4, offsets=1, dim=1, hr_channels=1, lr_channels=1)
    assert not plain.gated and "coarse_keep" not in plain.state_dict()


def test_gate_fields_are_checked_together_and_by_name():
    cfg = get_config("cpu", overrides={"model.coarse_entries": 8, "model.texture_gate": 6.0})
    assert (cfg.model.coarse_entries, cfg.model.texture_gate) == (8, 6.0)
    for overrides, field in (({"model.coarse_entries": 8}, "model.texture_gate"),
                             ({"model.texture_gate": 6.0}, "model.texture_gate"),
                             ({"model.coarse_entries": 1024, "model.texture_gate": 6.0}, "model.coarse_entries"),
                             ({"model.coarse_entries": 8, "model.texture_gate": float("inf")}, "model.texture_gate")):
        with pytest.raises(ConfigError, match=field):
            get_config("cpu", overrides=overrides)
    paired = get_config("cpu", method="paired-bicubic")
    assert "texture_gate" not in paired.to_dict()["model"]


def _gated_inference(model, keep, gate: float):
    cfg = replace(model.cfg, coarse_entries=len(keep), texture_gate=gate)
    out = DictSRInference(cfg)
    state = {**{f"enc_lr.{k}": v for k, v in model.enc_lr.state_dict().items()},
             **{f"dec_hr.{k}": v for k, v in model.dec_hr.state_dict().items()},
             **{f"dictionaries.{k}": v for k, v in model.dictionaries.state_dict().items()},
             "dictionaries.coarse_keep": keep}
    out.load_from_training_state(state)
    return out.eval()


def test_tiled_inference_of_a_gated_code_equals_the_whole_image(tiny_inference):
    gated = _gated_inference(tiny_inference, torch.tensor([0, 5, 9]), 4.0)
    assert receptive_margin(gated) > receptive_margin(tiny_inference)
    rng = np.random.default_rng(4)
    image = np.clip(rng.normal(128, 30, (60, 52, 3)), 0, 255).astype(np.uint8)
    image[:30] = 90  # a flat half, so that both lookups occur
    whole, tiled = super_resolve(gated, image, tile=0), super_resolve(gated, image, tile=16)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    j = content_index_map(gated, image, tile=0)
    assert torch.equal(j, content_index_map(gated, image, tile=16))
    assert set(j[:12].unique().tolist()) <= {0, 5, 9} and not set(j[-8:].unique().tolist()) <= {0, 5, 9}


def test_best_gated_puts_the_target_first_then_the_lowest_lpips():
    candidates = [{"agreement_bound": 0.6, "lpips_alex": 0.30}, {"agreement_bound": 0.55, "lpips_alex": 0.28},
                  {"agreement_bound": 0.4, "lpips_alex": 0.20}]
    assert best_gated(candidates, 0.5) is candidates[1]
    assert best_gated(candidates, 0.7) is candidates[0]  # none reaches: the most agreeing


def test_gated_derivation_scores_through_the_model_it_writes(tiny_run, noisy_data, tmp_path, capsys):
    out = tmp_path / "g"
    lines = []
    assert derive_gated_run(tiny_run, out, 4, noisy_data, (2.0, 6.0), restarts=2, lookup_blurs=(0.0, 0.5),
                            target=0.05, log=lines.append)
    derived = load_checkpoint(out / "checkpoints" / "last.pt")
    source = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    record, cfg = derived["coarse_gate"], derived["config"]
    assert len(record["candidates"]) == 2 * 2 * 2 and record["kept"] == best_gated(record["candidates"], 0.05)
    kept = record["kept"]
    assert (cfg.model.coarse_entries, cfg.model.texture_gate, cfg.model.lookup_blur) == (
        4, kept["texture_gate"], kept["lookup_blur"])
    assert cfg.model.entries == source["config"].model.entries  # every entry kept for the textured cells
    keep = derived["model"]["dictionaries.coarse_keep"]
    assert keep.shape == (4,) and all(torch.equal(derived["model"][k], v) for k, v in source["model"].items())
    # the kept candidate's scores are those of the written model's own inference
    model = inference_model(derived)
    probe = training_probe(noisy_data, cfg)
    shares = [float((model.indices(pad_to_grid(image_tensor(a, "cpu"), model.code_patch))
                     == model.indices(pad_to_grid(image_tensor(b, "cpu"), model.code_patch))).float().mean())
              for a, b in zip(probe["clean"], probe["noisy"])]
    assert np.mean(shares) == pytest.approx(kept["agreement"], abs=1e-6)
    # the rules' shared agreement helper follows the gate too (the model itself: no `keep`)
    assert agreement_by_size(model, probe["clean"], probe["noisy"], {0: None}, per_image=True)[0] == pytest.approx(shares)
    from dictsr_core.perceptual.lpips_models import build_lpips
    from dictsr_core.training.texture_gate_search import _encoded, _window_lpips

    lpips, windows = build_lpips("alex"), [central_window(lr, hr, 64) for lr, hr in zip(probe["noisy"], probe["hr"])]
    scores = [_window_lpips(model, i, _encoded(model, lr), model.indices(_encoded(model, lr)[0]), hr, lpips, {})
              for i, (lr, hr) in enumerate(windows)]
    assert np.mean(scores) == pytest.approx(kept["lpips_alex"], abs=1e-6)
    assert any("kept gate" in line for line in lines)
    # the explorer and the dictionary analysis see the gated run's own index map
    from dictsr_core.analysis.dictionary_analysis import lr_patch_embeddings
    from dictsr_core.analysis.explorer import encode_image, load_training_model

    image = probe["noisy"][0]
    expected = content_index_map(model, image, tile=None)
    assert torch.equal(encode_image(load_training_model(out / "checkpoints" / "last.pt"), image).entries, expected)
    assert np.array_equal(lr_patch_embeddings(model, [image], max_points=10**9)[1], expected.reshape(-1).numpy())
    # up to date unless the candidates change; a gated run is not a source
    assert derive_gated_run(tiny_run, out, 4, noisy_data, (2.0, 6.0), restarts=2, lookup_blurs=(0.0, 0.5),
                            target=0.05) is False
    with pytest.raises(ConfigError, match="already has a gated code"):
        derive_gated_run(out, tmp_path / "again", 4, noisy_data, (2.0,), target=0.05)
    with pytest.raises(ConfigError, match="already has a gated code"):  # nor of a plain coarse code
        derive_coarse_run(out, tmp_path / "again", 4, noisy_data, target=0.05, restarts=2)
    assert not (tmp_path / "again").exists()
    # the CLI: flags checked by name, nothing written
    for argv, message in ((["--gate", "4"], "--gate goes with --coarsen"), (["--device", "cpu"], "--device goes with"),
                          (["--coarsen", "4", "--split", "--gate", "4"], "not with auto or --split"),
                          (["--coarsen", "4", "--gate", "-1"], "positive roughness")):
        assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "x"), "--data", str(noisy_data),
                     *argv]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cpu_profile_ends_with_the_gated_code(tmp_path):
    assert recipe_model_name(PROFILES["cpu"]) == "dictsr-c8g" and recipe_model_name(PROFILES["gpu"]) == "dictsr-c8g"
    ungated = replace(PROFILES["cpu"], coarse_gates=())
    assert recipe_model_name(replace(ungated, coarse_split=True)) == "dictsr-c8s"
    assert recipe_model_name(replace(ungated, coarse_split=False)) == "dictsr-c8"
    assert recipe_model_name(replace(ungated, coarse_entries=0)) == "dictsr"
    ctx = context("cpu", data_dir="data/photos-aim", run_root=tmp_path / "fresh", device="cpu")
    train = next(stage for stage in plan(ctx) if stage.key == "02_train-dictsr")
    assert train.parameters["gated_run"] == "dictsr-c8g"
    assert train.parameters["coarse_gates"] == [3.0, 4.0, 6.0, 8.0]
    assert train.parameters["gate_lookup_blurs"] == [0.0, 0.5, 1.0]
    evaluate = next(stage for stage in plan(ctx) if stage.key == "03_evaluate")
    assert "dictsr-c8g" in evaluate.parameters["runs"]


def test_derivations_run_where_asked(tiny_run, noisy_data, tmp_path, capsys):
    # --device reaches both derivations (a CUDA device is checked by the device script; here the CPU by name),
    # and a device that does not exist is refused by name before anything is written
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "g"), "--coarsen", "4", "--restarts", "2",
                 "--gate", "2", "--agreement", "0.05", "--data", str(noisy_data), "--device", "cpu"]) == 0
    assert load_checkpoint(tmp_path / "g" / "checkpoints" / "last.pt")["config"].model.texture_gate == 2.0
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "x"), "--coarsen", "4", "--restarts", "2",
                 "--data", str(noisy_data), "--device", "cuda:7"]) == 2
    assert "cuda" in capsys.readouterr().err and not (tmp_path / "x").exists()
