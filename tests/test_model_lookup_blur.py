"""model.lookup_blur: the LR lookup embedding blurred before the content lookup (inference only), the derived run
that sets it, and the coarse derivation that chooses it on the training images."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dictsr_core.cli import main
from dictsr_core.config import ConfigError, get_config
from dictsr_core.inference.index_maps import content_index_map
from dictsr_core.inference.tiled import receptive_margin, super_resolve
from dictsr_core.model import DictSRInference
from dictsr_core.model.dictionaries import CoupledDictionaries
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.code_coarsening import derive_coarse_run


def _two_entry_dictionaries(blur: float) -> CoupledDictionaries:
    """Entries at -1 and +1 on the first lookup axis, the embedding = the input's first channel."""
    dicts = CoupledDictionaries(entries=2, offsets=1, dim=1, hr_channels=1, lr_channels=1, lookup_blur=blur)
    with torch.no_grad():
        dicts.lr_in.weight.fill_(1.0)
        dicts.lr_in.bias.zero_()
        dicts.d_lr.copy_(torch.tensor([[-1.0], [1.0]]))
    return dicts


def test_blurred_lookup_follows_the_neighbourhood_not_one_noisy_cell():
    # a flat +0.5 field (entry 1) with single-cell noise of -1.5 on a sparse grid: the plain lookup follows each
    # noisy cell to entry 0, the blurred one (sigma 1 cell) keeps entry 1 there; a real edge still moves it
    field = torch.full((1, 1, 16, 16), 0.5)
    field[..., 4::6, 4::6] -= 1.5
    plain = _two_entry_dictionaries(0.0).content_indices(field)
    blurred = _two_entry_dictionaries(1.0).content_indices(field)
    assert (plain == 0).sum() == 4 and (blurred == 1).all()
    edge = torch.cat([torch.full((1, 1, 16, 8), -1.0), torch.full((1, 1, 16, 8), 1.0)], dim=3)
    j = _two_entry_dictionaries(1.0).content_indices(edge)
    assert (j[..., :6] == 0).all() and (j[..., 10:] == 1).all()


def test_lookup_blur_is_a_checked_config_field_the_baselines_ignore():
    assert get_config("cpu").model.lookup_blur == 0.0
    assert get_config("cpu", overrides={"model.lookup_blur": 0.5}).model.lookup_blur == 0.5
    for bad in (-0.5, float("nan")):
        with pytest.raises(ConfigError, match="model.lookup_blur"):
            get_config("cpu", overrides={"model.lookup_blur": bad})
    paired = get_config("cpu", method="paired-bicubic", overrides={"model.lookup_blur": 0.5})
    assert "lookup_blur" not in paired.to_dict()["model"]


def test_tiled_inference_widens_its_margin_and_still_equals_the_whole_image(tiny_inference):
    blurred = DictSRInference(replace(tiny_inference.cfg, lookup_blur=1.0), enc_lr=tiny_inference.enc_lr,
                              dec_hr=tiny_inference.dec_hr, dictionaries=tiny_inference.dictionaries).eval()
    try:
        tiny_inference.dictionaries.lookup_blur = 1.0
        assert receptive_margin(blurred) > receptive_margin(tiny_inference)
        image = np.clip(np.random.default_rng(3).normal(128, 40, (60, 52, 3)), 0, 255).astype(np.uint8)
        whole, tiled = super_resolve(blurred, image, tile=0), super_resolve(blurred, image, tile=16)
        assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
        assert torch.equal(content_index_map(blurred, image, tile=0), content_index_map(blurred, image, tile=16))
    finally:
        tiny_inference.dictionaries.lookup_blur = 0.0


def test_derive_sets_the_inference_lookup_without_training(tiny_run, tmp_path, capsys):
    out = tmp_path / "blurred"
    assert main(["derive", "--from", str(tiny_run), "--out", str(out), "--set", "model.lookup_blur=0.5"]) == 0
    assert "lookup_blur 0.5" in capsys.readouterr().err
    source, derived = load_checkpoint(tiny_run / "checkpoints" / "last.pt"), load_checkpoint(out / "checkpoints" / "last.pt")
    assert derived["config"].model.lookup_blur == 0.5
    assert derived["config"].to_dict() == replace(source["config"], model=replace(
        source["config"].model, lookup_blur=0.5)).to_dict()
    assert all(torch.equal(derived["model"][k], v) for k, v in source["model"].items())
    assert inference_model(derived).dictionaries.lookup_blur == 0.5
    # a field that changes training steps still refuses, and names itself
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "no"), "--set", "model.dim=8"]) == 2
    assert "model.dim" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_coarse_derivation_keeps_the_blur_with_the_best_training_lpips_that_agrees(tiny_run, noisy_data, tmp_path):
    out = tmp_path / "c"
    lines = []
    assert derive_coarse_run(tiny_run, out, 4, noisy_data, target=0.05, restarts=2, lookup_blurs=(0.0, 0.5),
                             log=lines.append)
    derived = load_checkpoint(out / "checkpoints" / "last.pt")
    record = derived["coarse_blur"]
    candidates = {c["lookup_blur"]: c for c in record["candidates"]}
    assert set(candidates) == {0.0, 0.5} and record["target"] == 0.05
    reaching = [b for b, c in candidates.items() if c["agreement_bound"] >= 0.05]
    expected = (min(reaching, key=lambda b: candidates[b]["lpips_alex"]) if reaching
                else max(candidates, key=lambda b: candidates[b]["agreement_bound"]))
    assert record["kept"] == expected == derived["config"].model.lookup_blur
    assert derived["derived_from"]["lookup_blurs"] == [0.0, 0.5]
    # the kept candidate's scores are those of the code written: its restarts record, its entries
    kept = candidates[record["kept"]]
    restarts = derived["coarse_restarts"]
    assert kept["lpips_alex"] == pytest.approx(restarts["lpips_alex"][restarts["seed"]])
    assert kept["entries"] == derived["config"].model.entries == 4
    assert any("lookup blur kept" in line for line in lines)
    # up to date, unless the candidates change
    assert derive_coarse_run(tiny_run, out, 4, noisy_data, target=0.05, restarts=2, lookup_blurs=(0.0, 0.5)) is False
    assert derive_coarse_run(tiny_run, out, 4, noisy_data, target=0.05, restarts=2, lookup_blurs=(0.5,),
                             log=lambda line: None) is True
    assert load_checkpoint(out / "checkpoints" / "last.pt")["config"].model.lookup_blur == 0.5


def test_bad_blur_candidates_are_refused_by_name(tiny_run, noisy_data, tmp_path, capsys):
    for blurs, message in (((0.0, -1.0),  "distinct sigmas >= 0"), ((0.5, 0.5), "distinct sigmas >= 0"),
                           ((), "distinct sigmas >= 0")):
        with pytest.raises(ConfigError, match=message):
            derive_coarse_run(tiny_run, tmp_path / "x", 4, noisy_data, restarts=2, lookup_blurs=blurs)
    with pytest.raises(ConfigError, match="--restarts R"):
        derive_coarse_run(tiny_run, tmp_path / "x", 4, noisy_data, lookup_blurs=(0.0, 0.5))
    assert main(["derive", "--from", str(tiny_run), "--out", str(tmp_path / "x"), "--coarsen", "auto",
                 "--lookup-blur", "0", "0.5", "--data", str(noisy_data)]) == 2
    assert "--lookup-blur" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
