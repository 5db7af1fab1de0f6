"""The training recipe's options beyond the paper: each off in the `paper` preset, each tested for what it does."""

import pytest

from dictsr_core.config import ConfigError, get_config
from dictsr_core.train import perceptual_weight_at


def test_perceptual_phase_starts_at_its_fraction_of_the_schedule():
    cfg = get_config("tiny", overrides={"train.perceptual_weight": 0.5, "train.perceptual_from": 0.75})
    total = cfg.train.total_steps  # 20
    assert [perceptual_weight_at(cfg.train, s) for s in (0, 14, 15, total - 1)] == [0.0, 0.0, 0.5, 0.5]
    assert perceptual_weight_at(get_config("paper").train, 0) == 1.0  # the paper: LPIPS from the first step
    with pytest.raises(ConfigError, match="train.perceptual_from"):
        get_config("tiny", overrides={"train.perceptual_from": 1.0})


def test_paper_preset_keeps_the_papers_method():
    m, t = get_config("paper").model, get_config("paper").train
    assert m.base_sigma == 0.0 and t.perceptual_from == 0.0 and t.perceptual_weight == 1.0


def test_training_logs_no_perceptual_term_before_its_phase(tiny_data, tmp_path):
    import json

    from dictsr_core.train import train

    cfg = get_config("tiny", overrides={"train.perceptual_weight": 0.1, "train.perceptual_from": 0.5})
    train(cfg, tiny_data, tmp_path / "run", device="cpu", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [5, 10, 15, 20]
    assert [r["perceptual"] for r in logged[:2]] == [0.0, 0.0]
    assert all(r["perceptual"] > 0 for r in logged[2:])
