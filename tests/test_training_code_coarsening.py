import pytest
import torch

from dictsr_core.cli import main
from dictsr_core.config import ConfigError
from dictsr_core.data.datasets import training_lr_images
from dictsr_core.inference.tiled import image_tensor, pad_to_grid
from dictsr_core.model.dictionaries import coarse_code
from dictsr_core.training.checkpoint import inference_model, load_checkpoint
from dictsr_core.training.code_coarsening import derive_coarse_run


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("coarse") / "run"
    assert main(["train", "--preset", "tiny", "--data", str(tiny_data), "--out", str(out), "--device", "cpu"]) == 0
    return out


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
    assert derive_coarse_run(tiny_run, out, 4, tiny_data, force=True) is True


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
