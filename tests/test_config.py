import pytest

from dictsr_core.config import ABLATIONS, PRESETS, Config, ConfigError, get_config, parse_set_args


def test_presets_and_ablations_compose():
    for preset in PRESETS:
        for ablation in ABLATIONS:
            if ablation == "D1" and PRESETS[preset].model.code_patch == 1:
                # the cpu preset already has one code per LR pixel: there is no shallower grid
                with pytest.raises(ConfigError, match="ablation D1 needs model.code_patch >= 2"):
                    get_config(preset, ablation)
                continue
            cfg = get_config(preset, ablation)
            assert cfg.preset == preset and cfg.ablation == ablation
    assert PRESETS["cpu"].model.code_patch == 1


# every field the paper fixes (sections 3 and 4.1.2, Tables 3-4), as the paper fixes it
PAPER = {
    "model.entries": 4096, "model.offsets": 32, "model.dim": 4, "model.hierarchical": True, "model.coupled": True,
    "model.joint_lookup": False,  # eq. 4: j over D_lr first, then k
    "model.lookup_blur": 0.0, "model.coarse_entries": 0, "model.texture_gate": 0.0,  # no post-hoc code
    "model.beta": 0.25, "model.hr_grad": "ste",  # VQ-VAE's straight-through; D_hr learns through L_dis
    "model.code_patch": 2,  # 2x2 LR / 8x8 HR patches
    "model.enc_hr_blocks": 1, "model.dec_hr_blocks": 1, "model.enc_lr_blocks": 1, "model.dec_lr_blocks": 1,
    "model.base_sigma": 0.0, "model.consistency_form": "mse",  # (unused without a consistency term)
    # the method issue's remedies, all off: Euclidean lookup, D_lr learned by gradient, branch 3 moving D_lr too
    # (eq. 5's L_dis over q = D_lr(j) + D_deg(j, k)), the greedy j-then-k lookup of eq. 4
    "model.cosine_lookup": False, "model.codebook_ema": 0.0, "model.degraded_moves_content": True,
    "model.joint_lookup_train": False,
    "train.batch_size": 24, "train.hr_crop": 256, "train.lr_crop": 64, "train.lr": 2e-4,
    "train.adam_betas": (0.9, 0.999), "train.dictionary_lr_scale": 1.0, "train.epochs": 100,
    "train.steps_per_epoch": 1000, "train.halve_every": 25, "train.dis_weight": 10.0,
    "train.perceptual_weight": 1.0, "train.perceptual_from": 0.0, "train.consistency_weight": 0.0, "train.noise_jpeg": False,
    "train.restart_every": 0, "train.restarts_in_average": False, "train.grad_clip": 0.0, "train.ema_decay": 0.0, "train.ema_sigma_rel": 0.0,
    "train.ema_track_sigma_rel": (), "train.ema_track_decay": (),
}


def _field_values(cfg) -> dict:
    from dataclasses import fields

    return {f"{section}.{f.name}": getattr(getattr(cfg, section), f.name)
            for section in ("model", "train") for f in fields(getattr(cfg, section))}


def test_paper_preset_is_the_paper():
    from dictsr_core.config import PAPER_DECISIONS

    values = _field_values(get_config("paper"))
    assert {key: values[key] for key in PAPER} == PAPER
    # every other field is a named decision where the paper is silent: a new field must be one or the other
    assert set(values) - set(PAPER) == set(PAPER_DECISIONS)
    assert get_config("paper").train.total_steps == 100_000 and get_config("paper").model.hr_patch == 8


def test_paper_cpu_is_the_paper_with_only_widths_batch_crops_and_steps_scaled():
    scaled = {"model.hr_widths", "model.lr_width", "train.batch_size", "train.hr_crop", "train.lr_crop",
              "train.epochs", "train.steps_per_epoch", "train.halve_every"}
    paper, cpu = _field_values(get_config("paper")), _field_values(get_config("paper-cpu"))
    from dictsr_core.config import PAPER_DECISIONS

    changed = {key for key in paper if paper[key] != cpu[key]}
    assert scaled <= changed and changed - scaled <= set(PAPER_DECISIONS)  # e.g. loader workers, logging
    assert changed - scaled == {"train.usage_window", "train.num_workers", "train.log_every", "train.checkpoint_every"}
    t = get_config("paper-cpu").train
    assert t.halve_every / t.epochs == 25 / 100 and t.perceptual_start == 0  # the schedule's shape, LPIPS throughout


def test_ablation_values():
    assert get_config("paper", "B1").model.entries == 2048
    assert get_config("paper", "B2").model.entries == 8192
    assert get_config("paper", "C2").model.dim == 64
    assert get_config("paper", "D1").model.hr_patch == 4
    assert get_config("paper", "D2").model.hr_patch == 16
    assert get_config("paper", "A1").model.hierarchical is False
    assert get_config("paper", "E1").model.coupled is False


def test_set_overrides_with_types():
    cfg = get_config("tiny", overrides=parse_set_args(["model.entries=32", "lr=3e-4", "hierarchical=false", "hr_widths=8,8,16,16"]))
    assert cfg.model.entries == 32 and cfg.train.lr == 3e-4 and cfg.model.hierarchical is False
    assert cfg.model.hr_widths == (8, 8, 16, 16)


@pytest.mark.parametrize(
    "preset,ablation,items,message",
    [
        ("nope", None, [], "unknown preset 'nope'"),
        ("tiny", "Z9", [], "unknown ablation 'Z9'"),
        ("tiny", None, ["model.entires=3"], r"unknown config key 'model.entires'.*model.entries"),
        ("tiny", None, ["entries=abc"], r"model.entries = 'abc' is invalid"),
        ("tiny", None, ["entries=1"], r"model.entries = 1 is invalid"),
        ("tiny", None, ["hierarchical=maybe"], "model.hierarchical"),
        ("tiny", None, ["train.amp=fp16"], "train.amp"),
        ("tiny", None, ["hr_crop=30"], "train.hr_crop"),
        ("tiny", None, ["hr_widths=8,8"], "model.hr_widths"),
        ("tiny", None, ["lr"], "expected key=value"),
    ],
)
def test_bad_config_names_the_field(preset, ablation, items, message):
    with pytest.raises(ConfigError, match=message):
        get_config(preset, ablation, parse_set_args(items))


def test_dict_round_trip():
    cfg = get_config("cpu", "F2", {"train.seed": 3})
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config key"):
        Config.from_dict({"model": {"bogus": 1}})


def test_a_baseline_config_leaves_out_the_dictionary_fields():
    from dictsr_core.config import DICTIONARY_FIELDS

    dictsr = get_config("cpu").to_dict()
    paired = get_config("cpu", method="paired-bicubic").to_dict()
    assert set(DICTIONARY_FIELDS) <= set(dictsr["model"]) and not set(DICTIONARY_FIELDS) & set(paired["model"])
    # a baseline trained with another N in its stored config (as before this trimming) is the same baseline
    older = get_config("cpu", overrides={"model.entries": 8}, method="paired-bicubic")
    assert older.to_dict() == paired and Config.from_dict(paired).to_dict() == paired
    # what PlainSR reads still tells baselines apart, and DictSR runs still differ by N
    assert get_config("cpu", overrides={"model.lr_width": 16}, method="paired-bicubic").to_dict() != paired
    assert get_config("cpu", overrides={"model.entries": 8}).to_dict() != dictsr


def test_r8_is_the_cpu_recipe_with_a_coarse_code():
    cpu, r8 = get_config("cpu"), get_config("cpu", "R8")
    assert (cpu.model.entries, r8.model.entries) == (1024, 8)
    assert r8.to_dict()["model"] == {**cpu.to_dict()["model"], "entries": 8} and r8.train == cpu.train
