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


def test_paper_preset_is_the_paper():
    cfg = get_config("paper")
    m, t = cfg.model, cfg.train
    assert (m.entries, m.offsets, m.dim, m.code_patch, m.beta) == (4096, 32, 4, 2, 0.25)
    assert (t.batch_size, t.hr_crop, t.lr_crop, t.lr, t.adam_betas) == (24, 256, 64, 2e-4, (0.9, 0.999))
    assert (t.total_steps, t.halve_every * t.steps_per_epoch, t.dis_weight) == (100_000, 25_000, 10.0)


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
