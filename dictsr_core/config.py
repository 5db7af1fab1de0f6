"""Typed configuration: model and training dataclasses, presets, the paper's ablations, `--set` overrides.

Every decision the paper leaves open (docs/method.md, "Decisions where the paper is silent") is a field here, so it can be ablated.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable


SIGMA_REL_RANGE = (0.01, 0.25)  # train.ema_sigma_rel: beyond 0.25 the power-function profile is nearly flat


class ConfigError(ValueError):
    """A bad preset, ablation, key or value; the message names it."""


@dataclass(frozen=True)
class ModelConfig:
    # dictionaries (paper: N 4096, K 32, d 4)
    entries: int = 4096  # N: content entries in D_hr and D_lr
    offsets: int = 32  # K: degradation offsets around each D_lr entry (D_deg is N x K x d)
    dim: int = 4  # d: lookup-space dimension
    hierarchical: bool = True  # A1 = False: branch 3 looks up over D_lr only
    coupled: bool = True  # E1 = False: the HR branch looks up its own index over D_hr
    joint_lookup: bool = False  # inference: choose the nearest (j, k) pair over D_lr + D_deg, keep j
    # not in the paper, inference only: > 0 blurs the LR lookup embedding (Gaussian, this sigma in code cells) before
    # the content lookup, so a cell's entry follows its neighbourhood's mean embedding and one LR pixel's sensor noise
    # moves it less (index agreement), at a cost in detail where the content changes within the blur
    lookup_blur: float = 0.0
    # not in the paper, inference only, set by `dictsr derive --gate`: a coarse code of this many of the N entries
    # (the state's dictionaries.coarse_keep) that the LR cells whose roughness is under `texture_gate` grey levels
    # choose among; the textured ones choose among all N (model/texture_gate.py). 0 and 0: no gate
    coarse_entries: int = 0
    texture_gate: float = 0.0
    beta: float = 0.25  # commitment weight (on ||z - sg[q]||^2, not on the codebook term)
    # branch 1's index comes from branch 2, so no argmin sits between D_hr and the HR loss: "ste" passes the
    # reconstruction gradient to E_hr only (VQ-VAE; D_hr follows E_hr through L_dis); "both" also gives it to D_hr.
    # cpu preset, 250 steps: "both" lifts validation PSNR 19.9 -> 22.7 (chelsea), 14.2 -> 17.8 (coffee); G1 = "ste"
    hr_grad: str = "both"
    # architecture
    code_patch: int = 2  # LR pixels per code side (HR: 4x); paper 2x2 / 8x8
    hr_widths: tuple[int, ...] = (48, 128, 256, 512)  # E_hr stages H..H/8; D_hr mirrors them
    lr_width: int = 128  # E_lr / D_lr width (F_lr has this many channels)
    enc_hr_blocks: int = 1  # residual blocks per stage; F1..F4 deepen one network each
    dec_hr_blocks: int = 1
    enc_lr_blocks: int = 1
    dec_lr_blocks: int = 1
    activation: str = "leaky_relu"
    # not in the paper: > 0 makes every decoder add its output to a Gaussian low-pass (this sigma, LR pixels) of its
    # LR-side input, upsampled; the codes then carry the detail, the base the colour (see model/lowpass_base.py)
    base_sigma: float = 0.0
    # not in the paper, used when train.consistency_weight > 0: "mse" pulls a noisy copy's embedding to its clean
    # entry; "cross_entropy" asks it to fall in that entry's cell, at the scale of the entries' spacing (ablation R5)
    consistency_form: str = "mse"
    # dictionary initialisation and health
    init: str = "sample"  # "sample" | "kmeans": content entries from the first batch's embeddings
    deg_init_scale: float = 0.05  # D_deg offsets start at this fraction of the embeddings' std
    lookup_chunk: int = 1 << 24  # max elements of one distance block (bounds lookup memory)
    # not in the paper: the method issue's remedies for a content index the degradation moves (ablation rows Q1-Q9)
    cosine_lookup: bool = False  # Q1: LR lookups on the unit sphere (l2-normalised embeddings and D_lr rows)
    codebook_ema: float = 0.0  # Q2: > 0 (a decay, e.g. 0.99): D_lr is an EMA of the clean embeddings it wins
    degraded_moves_content: bool = True  # Q4 = False: branch 3's codebook term moves D_deg only, never D_lr
    joint_lookup_train: bool = False  # Q5: branch 3 picks the nearest (j, k) pair in training (with joint_lookup)

    @property
    def hr_patch(self) -> int:
        return 4 * self.code_patch

    @property
    def lr_stages(self) -> int:
        return int(math.log2(self.code_patch)) + 1

    @property
    def hr_stages(self) -> int:
        return int(math.log2(self.hr_patch)) + 1


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 24  # HR patches and LR patches per step (each)
    hr_crop: int = 256
    lr_crop: int = 64
    lr: float = 2e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    dictionary_lr_scale: float = 10.0  # lr multiplier of the dictionary entries (D_hr, D_lr, D_deg); see train.param_groups
    epochs: int = 100
    steps_per_epoch: int = 1000  # an "epoch" is a fixed number of steps
    halve_every: int = 25  # epochs between learning-rate halvings
    dis_weight: float = 10.0  # lambda on the three discretization losses
    perceptual_weight: float = 1.0  # LPIPS-VGG term on the HR branch; 0 disables it
    # not in the paper: > 0 adds w * ||z(HR-down + real LR-domain noise) - sg[D_lr(j_clean)]||^2 (data/noise_bank.py)
    consistency_weight: float = 0.0
    # not in the paper (Q6): the noisy copies also go through JPEG at the quality the LR photos show, where they show
    # one (data/jpeg_trace.estimate_jpeg_quality); no effect without consistency_weight
    noise_jpeg: bool = False
    perceptual_from: float = 0.0  # fraction of the schedule trained with L1 + VQ only before the LPIPS term joins (paper: 0)
    usage_window: int = 1000  # steps: an entry is "activated" if used within this window
    restart_every: int = 200  # steps between dead-entry restarts; 0 disables restarts
    # restarts also after the weight average starts (the method issue's bug: the average then blends a restarted
    # entry's old and new rows into points no step trained). False: none once an average folds steps in; a run
    # trained before this field existed restarted there, and loads with True (Config.from_dict)
    restarts_in_average: bool = False
    log_every: int = 50
    checkpoint_every: int = 1000
    num_workers: int = 4
    seed: int = 0
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping
    # not in the paper: > 0 keeps an exponential moving average of the weights from the first perceptual step
    # (training/weight_average.py), saved as the checkpoint's `model_ema` and used by inference; 0 disables it
    ema_decay: float = 0.0
    # instead of ema_decay: a length-aware (power-function) average whose window is this fraction of the steps
    # averaged so far (Karras et al. 2024); 0 disables it
    ema_sigma_rel: float = 0.0
    # averages kept beside the run's own (the checkpoint's `model_averages`), power-function and fixed-decay: they
    # change no step, and `dictsr derive` makes the run that uses one of them from this run's checkpoint
    ema_track_sigma_rel: tuple[float, ...] = ()
    ema_track_decay: tuple[float, ...] = ()
    # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "off" | "perceptual": bf16 only while the LPIPS-VGG term is on,
    # on CUDA or a CPU with native bf16 (there it makes that phase's steps 1.5x faster; the L1 phase stays fp32)
    amp: str = "auto"
    compile: bool = False
    channels_last: bool = True  # CUDA and CPU (`dictsr bench`: the cpu preset's step 112 -> 92 ms on 2 cores)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def ema_start(self) -> int:
        """The weight average folds in the steps after this many (the L1 phase is left out of it)."""
        return self.perceptual_start if self.perceptual_weight > 0 else 0

    @property
    def perceptual_throughout(self) -> bool:
        """The perceptual term on every step, as the paper trains (no L1 phase before it)."""
        return self.perceptual_weight > 0 and self.perceptual_start == 0

    @property
    def perceptual_start(self) -> int:
        """The first step trained with the perceptual term (when its weight is above 0)."""
        return round(self.perceptual_from * self.total_steps)

    @property
    def averaged(self) -> bool:
        """Whether the run keeps any weight average (its own or a tracked one)."""
        return bool(self.ema_decay or self.ema_sigma_rel or self.ema_track_sigma_rel or self.ema_track_decay)

    @property
    def restarts_until(self) -> int | None:
        """The last step a dead-entry restart may fall on: the weight averages' start where the run keeps one (so no
        average blends a restarted entry's old and new rows), unless restarts_in_average; None: to the end."""
        return self.ema_start if self.averaged and not self.restarts_in_average else None

    @property
    def l1_phase_end(self) -> int | None:
        """The step after which a perceptual phase follows an L1 phase (the L1-only model's step), else None."""
        return self.perceptual_start if self.perceptual_weight > 0 and self.perceptual_start > 0 else None


# dictsr: the paper's method on unpaired data. The baselines train PlainSR (same layers, no dictionary)
# on pairs: paired-bicubic on (bicubic LR, HR), what a user without real pairs does; oracle on the true
# degradation of the same HR crops, an upper bound real unpaired users cannot have.
# The equal-budget peers train PlainSR on pairs made from the training HR by a synthetic route instead
# (peers issue): plain-realesrgan-deg by Real-ESRGAN's second-order degradation, plain-noise-injection by
# Impressionism's kernels and noise estimated from the LR-domain photos (data/noise_injection.py).
METHODS = ("dictsr", "paired-bicubic", "oracle", "plain-realesrgan-deg", "plain-noise-injection")
# ModelConfig fields that only DictSR's dictionaries read (PlainSR has none)
DICTIONARY_FIELDS = ("entries", "offsets", "dim", "hierarchical", "coupled", "joint_lookup", "beta", "hr_grad",
                     "consistency_form", "init", "deg_init_scale", "lookup_chunk", "lookup_blur", "coarse_entries",
                     "texture_gate", "cosine_lookup", "codebook_ema", "degraded_moves_content", "joint_lookup_train")
# model fields that change no training step, only the inference lookup: `dictsr derive --set` may change them on a
# trained run (training/run_folder.derive_average_run)
INFERENCE_FIELDS = ("joint_lookup", "lookup_blur", "texture_gate")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "paper"
    ablation: str | None = None
    method: str = "dictsr"

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain data; a paired baseline's leaves out the dictionary fields its PlainSR never reads, so a change
        of N in a preset does not make the baselines' finished runs look stale."""
        model = _plain(dataclasses.asdict(self.model))
        if self.method != "dictsr":
            model = {key: value for key, value in model.items() if key not in DICTIONARY_FIELDS}
        return {
            "preset": self.preset,
            "ablation": self.ablation,
            "method": self.method,
            "model": model,
            "train": _plain(dataclasses.asdict(self.train)),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        unknown = set(data) - {"preset", "ablation", "method", "model", "train"}
        if unknown:
            raise ConfigError(f"config: unknown section(s) {sorted(unknown)}")
        cfg = cls(preset=data.get("preset", "paper"), ablation=data.get("ablation"), method=data.get("method", "dictsr"))
        overrides = {f"model.{k}": v for k, v in data.get("model", {}).items()}
        train = dict(data.get("train", {}))
        if train and "restarts_in_average" not in train:  # written before the field: restarts went on in the average
            train["restarts_in_average"] = True
        overrides.update({f"train.{k}": v for k, v in train.items()})
        return apply_overrides(cfg, overrides).validated()

    # ---- checks -------------------------------------------------------------------------
    def validated(self) -> "Config":
        m, t = self.model, self.train
        _check(self.method in METHODS, "method", self.method, " or ".join(METHODS))
        _check(m.entries >= 2, "model.entries", m.entries, "at least 2")
        _check(m.offsets >= 1, "model.offsets", m.offsets, "at least 1")
        _check(m.dim >= 1, "model.dim", m.dim, "at least 1")
        _check(m.beta >= 0, "model.beta", m.beta, "non-negative")
        _check(m.code_patch >= 1 and (m.code_patch & (m.code_patch - 1)) == 0, "model.code_patch", m.code_patch, "a power of two")
        _check(
            len(m.hr_widths) == m.hr_stages,
            "model.hr_widths",
            m.hr_widths,
            f"{m.hr_stages} widths (one per HR stage for {m.hr_patch}x{m.hr_patch} HR patches)",
        )
        _check(all(w >= 1 for w in m.hr_widths), "model.hr_widths", m.hr_widths, "positive widths")
        _check(m.lr_width >= 1, "model.lr_width", m.lr_width, "at least 1")
        for name in ("enc_hr_blocks", "dec_hr_blocks", "enc_lr_blocks", "dec_lr_blocks"):
            _check(getattr(m, name) >= 1, f"model.{name}", getattr(m, name), "at least 1")
        _check(m.base_sigma >= 0 and math.isfinite(m.base_sigma), "model.base_sigma", m.base_sigma, "0 (off) or a positive number")
        _check(m.activation in ("leaky_relu", "relu", "silu", "gelu"), "model.activation", m.activation, "leaky_relu, relu, silu or gelu")
        _check(m.init in ("sample", "kmeans"), "model.init", m.init, "'sample' or 'kmeans'")
        _check(0 <= m.codebook_ema < 1, "model.codebook_ema", m.codebook_ema, "0 (off) or a decay in (0, 1), e.g. 0.99")
        _check(not m.joint_lookup_train or m.hierarchical, "model.joint_lookup_train", m.joint_lookup_train,
               "False without the degradation dictionary (model.hierarchical False): there is no (j, k) pair")
        _check(m.hr_grad in ("ste", "both", "entries"), "model.hr_grad", m.hr_grad, "'ste', 'both' or 'entries'")
        _check(m.consistency_form in ("mse", "cross_entropy"), "model.consistency_form", m.consistency_form,
               "'mse' or 'cross_entropy'")
        _check(m.deg_init_scale >= 0, "model.deg_init_scale", m.deg_init_scale, "non-negative")
        _check(m.lookup_blur >= 0 and math.isfinite(m.lookup_blur), "model.lookup_blur", m.lookup_blur,
               "0 (off) or a positive sigma in code cells")
        _check(isinstance(m.coarse_entries, int) and 0 <= m.coarse_entries < max(m.entries, 1), "model.coarse_entries",
               m.coarse_entries, f"0 (no gated code) or fewer than model.entries ({m.entries})")
        _check(m.texture_gate >= 0 and math.isfinite(m.texture_gate) and (m.texture_gate > 0) == (m.coarse_entries > 0),
               "model.texture_gate", m.texture_gate, "a positive roughness in grey levels with model.coarse_entries > 0, "
               "0 without (the gate is made by dictsr derive --gate)")
        _check(m.lookup_chunk >= 1024, "model.lookup_chunk", m.lookup_chunk, "at least 1024")
        _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "at least 1")
        _check(t.hr_crop % m.hr_patch == 0 and t.hr_crop > 0, "train.hr_crop", t.hr_crop, f"a positive multiple of {m.hr_patch}")
        _check(t.lr_crop % m.code_patch == 0 and t.lr_crop > 0, "train.lr_crop", t.lr_crop, f"a positive multiple of {m.code_patch}")
        _check(t.lr > 0 and math.isfinite(t.lr), "train.lr", t.lr, "a positive finite number")
        _check(t.dictionary_lr_scale > 0, "train.dictionary_lr_scale", t.dictionary_lr_scale, "a positive number")
        _check(len(t.adam_betas) == 2 and all(0 <= b < 1 for b in t.adam_betas), "train.adam_betas", t.adam_betas, "two numbers in [0, 1)")
        _check(t.epochs >= 1, "train.epochs", t.epochs, "at least 1")
        _check(t.steps_per_epoch >= 1, "train.steps_per_epoch", t.steps_per_epoch, "at least 1")
        _check(t.halve_every >= 1, "train.halve_every", t.halve_every, "at least 1")
        _check(t.dis_weight >= 0, "train.dis_weight", t.dis_weight, "non-negative")
        _check(t.perceptual_weight >= 0, "train.perceptual_weight", t.perceptual_weight, "non-negative")
        _check(t.consistency_weight >= 0 and math.isfinite(t.consistency_weight), "train.consistency_weight",
               t.consistency_weight, "0 (off) or a positive number")
        _check(0 <= t.perceptual_from < 1, "train.perceptual_from", t.perceptual_from, "a fraction in [0, 1)")
        _check(t.usage_window >= 1, "train.usage_window", t.usage_window, "at least 1")
        _check(t.restart_every >= 0, "train.restart_every", t.restart_every, "0 (off) or more")
        _check(t.log_every >= 1, "train.log_every", t.log_every, "at least 1")
        _check(t.checkpoint_every >= 1, "train.checkpoint_every", t.checkpoint_every, "at least 1")
        _check(t.num_workers >= 0, "train.num_workers", t.num_workers, "0 or more")
        _check(t.grad_clip >= 0 and math.isfinite(t.grad_clip), "train.grad_clip", t.grad_clip, "0 (off) or a positive number")
        _check(0 <= t.ema_decay < 1, "train.ema_decay", t.ema_decay, "0 (off) or a decay in (0, 1), e.g. 0.995")
        low, high = SIGMA_REL_RANGE
        _check(t.ema_sigma_rel == 0 or low <= t.ema_sigma_rel <= high, "train.ema_sigma_rel", t.ema_sigma_rel,
               f"0 (off) or a fraction in [{low}, {high}], e.g. 0.1")
        _check(t.ema_sigma_rel == 0 or t.ema_decay == 0, "train.ema_sigma_rel", t.ema_sigma_rel,
               f"0 while train.ema_decay = {t.ema_decay} (one weight average per run; track more with ema_track_sigma_rel)")
        _check(all(low <= s <= high for s in t.ema_track_sigma_rel) and len(set(t.ema_track_sigma_rel))
               == len(t.ema_track_sigma_rel) and t.ema_sigma_rel not in t.ema_track_sigma_rel,
               "train.ema_track_sigma_rel", t.ema_track_sigma_rel,
               f"distinct fractions in [{low}, {high}], other than train.ema_sigma_rel")
        _check(all(0 < d < 1 for d in t.ema_track_decay) and len(set(t.ema_track_decay)) == len(t.ema_track_decay)
               and t.ema_decay not in t.ema_track_decay, "train.ema_track_decay", t.ema_track_decay,
               "distinct decays in (0, 1), other than train.ema_decay")
        _check(t.amp in ("auto", "bf16", "off", "perceptual"), "train.amp", t.amp, "'auto', 'bf16', 'off' or 'perceptual'")
        return self


# fields of the paper preset where the paper is silent (docs/method.md, "Decisions where the paper is silent"), each with what was chosen and why;
# tests/test_config.py checks that every field of the preset is either the paper's or named here
PAPER_DECISIONS = {
    "model.hr_widths": "E_hr 48/128/256/512 (D_hr mirrored): the widths that give the paper's 129 GMACs at 18 layers",
    "model.lr_width": "E_lr / D_lr 128 channels (the paper gives depths, not widths)",
    "model.activation": "leaky ReLU in conv-act-conv residual blocks, no normalisation",
    "model.init": "content entries from the first batch's embeddings (random sample)",
    "model.deg_init_scale": "D_deg offsets start small, 0.05 of the embeddings' std",
    "model.lookup_chunk": "memory bound of the lookup's distance blocks (no effect on results)",
    "train.usage_window": "steps over which an entry counts as activated (a statistic: no effect on training)",
    "train.log_every": "logging only", "train.checkpoint_every": "checkpointing only",
    "train.num_workers": "loader processes (no effect on results)",
    "train.amp": "bf16 autocast on CUDA, fp32 on the CPU; lookups in fp32 always",
    "train.channels_last": "memory layout (no effect on results)", "train.compile": "off (no effect on results)",
    "train.seed": "0",
}


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name} = {value!r} is invalid: expected {expected}")


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ---- presets ---------------------------------------------------------------------------

# the power-function averages the recipe's runs keep beside their last weights (checkpoint `model_averages`): they change
# no training step, stop the dead-entry restarts where they start, and let `dictsr derive` and ablation R10 make the
# averaged model from the checkpoint; 0.2 was the recipe's own average until 2026-12-07 (docs/recipe.md item 19)
RECIPE_TRACKED_SIGMA_REL = (0.05, 0.1, 0.2)

PRESETS: dict[str, Config] = {
    # the paper's settings (section 4.1.2): 100 epochs of 1000 steps, lr halved every 25, one lr for every weight,
    # D_hr learning through L_dis alone (VQ-VAE's straight-through; branch 1's index comes from branch 2), no
    # dead-entry restarts. Every other field follows the paper or is one of PAPER_DECISIONS (the paper is silent)
    "paper": Config(preset="paper", model=ModelConfig(hr_grad="ste"),
                    train=TrainConfig(dictionary_lr_scale=1.0, restart_every=0)),
    # the paper's method at the cpu budget (method issue): only widths (a quarter), batch, crops and steps scaled;
    # LPIPS-VGG on every step, as the paper trains. 4 "epochs" with the lr halved after each, as the paper's 100 with
    # halvings every 25; the workbook sizes the steps to the DictSR run's wall clock (workbook/budget.py)
    "paper-cpu": Config(
        preset="paper-cpu", model=ModelConfig(hr_widths=(12, 32, 64, 128), lr_width=32, hr_grad="ste"),
        train=TrainConfig(batch_size=4, hr_crop=96, lr_crop=24, epochs=4, steps_per_epoch=600, halve_every=1,
                          dictionary_lr_scale=1.0, restart_every=0, usage_window=200, num_workers=1, log_every=25,
                          checkpoint_every=600),
    ),
    # the cpu recipe below (low-pass base, D_hr from the reconstruction alone, one code per LR pixel, 1024 x 8 entries,
    # constant lr halved once at 10 of 14 epochs, the perceptual phase in the last 14th; index consistency and the
    # weight average left it on 2026-12-07, not measured on a GPU since) at the paper's widths (one HR stage shallower, as code_patch 1 asks), batch and
    # crops; the paper's lr (4e-4 diverged at these widths on the H200 run with the paper's recipe). About 5 minutes
    # on one H200 (7966 steps in 276 s, 2026-12-04); eager: the compiled step was never measured faster there, and the perceptual phase would
    # compile a second graph
    "gpu": Config(
        preset="gpu",
        model=ModelConfig(entries=1024, offsets=8, code_patch=1, hr_widths=(48, 128, 256), base_sigma=1.5,
                          hr_grad="entries"),
        train=TrainConfig(
            lr=2e-4, epochs=14, steps_per_epoch=500, halve_every=10, perceptual_weight=1.0, perceptual_from=13 / 14,
            usage_window=200, restart_every=100, num_workers=8, log_every=100, checkpoint_every=1000,
            ema_track_sigma_rel=RECIPE_TRACKED_SIGMA_REL, ema_track_decay=(0.995,),
        ),
    ),
    # 2 CPU cores, about 15 minutes (photos-aim; 3600 steps, the last 600 with the perceptual term: four runs of this
    # budget, the DictSR run, the paper's method and the two equal-budget peers, keep `make main` under 2 hours; until
    # 2026-12-07 it was 8400 steps, about 26 minutes, docs/recipe.md item 18). Departures from the paper,
    # each an option with an ablation row: a low-pass base under the decoders (R1, base_sigma; without it every
    # colour must come from N codes), D_hr learning from the reconstruction alone (R4, hr_grad "entries"; with the
    # codebook term D_hr collapsed), a perceptual phase (R3): LPIPS-VGG joins for the last 600 steps
    # (perceptual_from = 5/6), in bf16 where the CPU has it natively (amp "perceptual"). Index consistency against
    # real LR noise (consistency_weight) and the length-aware weight average (ema_sigma_rel) left the recipe on
    # 2026-12-07 (docs/recipe.md item 19: on validation both cost); R9 and R10 add them back, the averages still
    # tracked (they change no step) so R10 is made from the checkpoint. One code per LR pixel (code_patch 1 and an HR encoder one stage shallower, as ablation D1
    # makes of the paper's 2x2 grid, which this preset had before): its step is 0.80x the 2x2 network's, so the
    # same wall clock bought 8400 steps instead of 6600, and it keeps texture the 2x2 grid smooths (docs/recipe.md
    # items 8 and 9). Constant lr, halved once at 4 of 6 epochs. The workbook then coarsens the 1024 entries to 8 (`dictsr derive --coarsen 8
    # --restarts 8`, profile cpu): a code the degradation mostly cannot move (index agreement past 0.5)
    "cpu": Config(
        preset="cpu",
        model=ModelConfig(entries=1024, offsets=8, code_patch=1, hr_widths=(16, 32, 64), lr_width=32, base_sigma=1.5,
                          hr_grad="entries"),
        train=TrainConfig(
            batch_size=4, hr_crop=96, lr_crop=24, lr=5e-4, epochs=6, steps_per_epoch=600, halve_every=4,
            perceptual_weight=1.0, perceptual_from=5 / 6, amp="perceptual",
            usage_window=200, restart_every=100, log_every=25, checkpoint_every=1200, num_workers=1,
            ema_track_sigma_rel=RECIPE_TRACKED_SIGMA_REL, ema_track_decay=(0.995,),
        ),
    ),
    # seconds; for tests
    "tiny": Config(
        preset="tiny",
        model=ModelConfig(entries=64, offsets=4, hr_widths=(8, 8, 16, 16), lr_width=16),
        train=TrainConfig(
            batch_size=2, hr_crop=32, lr_crop=8, lr=1e-3, epochs=1, steps_per_epoch=20, halve_every=1,
            perceptual_weight=0.0, usage_window=10, restart_every=0, log_every=5, checkpoint_every=10, num_workers=0,
        ),
    ),
    # the smoke profile's paper run (tests): tiny's sizes with the paper's training rules (hr_grad, one lr, no restarts)
    "paper-tiny": Config(
        preset="paper-tiny",
        model=ModelConfig(entries=64, offsets=4, hr_widths=(8, 8, 16, 16), lr_width=16, hr_grad="ste"),
        train=TrainConfig(
            batch_size=2, hr_crop=32, lr_crop=8, lr=1e-3, epochs=2, steps_per_epoch=10, halve_every=1,
            perceptual_weight=0.0, dictionary_lr_scale=1.0, usage_window=10, restart_every=0, log_every=5,
            checkpoint_every=10, num_workers=0,
        ),
    ),
}


# ---- ablations (paper Tables 3 and 4), composable with any preset ------------------------

def _shallower(m: ModelConfig) -> ModelConfig:  # D1: 1x1 LR / 4x4 HR patches
    if m.code_patch < 2:
        raise ConfigError("ablation D1 needs model.code_patch >= 2")
    return replace(m, code_patch=m.code_patch // 2, hr_widths=m.hr_widths[:-1])


def _deeper(m: ModelConfig) -> ModelConfig:  # D2: 4x4 LR / 16x16 HR patches
    return replace(m, code_patch=m.code_patch * 2, hr_widths=m.hr_widths + m.hr_widths[-1:])


def _model(change: Callable[[ModelConfig], ModelConfig]) -> Callable[["Config"], "Config"]:
    return lambda cfg: replace(cfg, model=change(cfg.model))


def _own_average(decay: float = 0.0, sigma_rel: float = 0.0) -> Callable[["Config"], "Config"]:
    """The run's own weight average becomes this one (no longer tracked beside it, where it was)."""
    def change(cfg: "Config") -> "Config":
        t = cfg.train
        return replace(cfg, train=replace(
            t, ema_decay=decay, ema_sigma_rel=sigma_rel, ema_track_decay=tuple(d for d in t.ema_track_decay if d != decay),
            ema_track_sigma_rel=tuple(s for s in t.ema_track_sigma_rel if s != sigma_rel)))
    return change


def _set(**fields_) -> Callable[["Config"], "Config"]:
    """An ablation that sets config fields (`model__base_sigma=0.0` sets model.base_sigma)."""
    def change(cfg: "Config") -> "Config":
        model = {k.split("__", 1)[1]: v for k, v in fields_.items() if k.startswith("model__")}
        train = {k.split("__", 1)[1]: v for k, v in fields_.items() if k.startswith("train__")}
        return replace(cfg, model=replace(cfg.model, **model), train=replace(cfg.train, **train))
    return change


ABLATIONS: dict[str, tuple[str, Callable[["Config"], "Config"]]] = {
    "A1": ("no degradation dictionary", _model(lambda m: replace(m, hierarchical=False))),
    "B1": ("N = N/2 (paper 2048)", _model(lambda m: replace(m, entries=m.entries // 2))),
    "B2": ("N = 2N (paper 8192)", _model(lambda m: replace(m, entries=m.entries * 2))),
    "C1": ("d = 16", _model(lambda m: replace(m, dim=16))),
    "C2": ("d = 64", _model(lambda m: replace(m, dim=64))),
    "D1": ("patches 1x1 LR / 4x4 HR (shallower encoders)", _model(_shallower)),
    "D2": ("patches 4x4 LR / 16x16 HR (deeper encoders)", _model(_deeper)),
    "E1": ("no coupling: HR branch looks up its own index", _model(lambda m: replace(m, coupled=False))),
    "F1": ("E_hr 20 layers", _model(lambda m: replace(m, enc_hr_blocks=2))),
    "F2": ("D_hr 20 layers", _model(lambda m: replace(m, dec_hr_blocks=2))),
    "F3": ("E_lr 14 layers", _model(lambda m: replace(m, enc_lr_blocks=3))),
    "F4": ("D_lr 14 layers", _model(lambda m: replace(m, dec_lr_blocks=3))),
    # inference only; on the cpu recipe's photos-ntire checkpoint: index agreement 0.036 instead of 0.049, LPIPS-Alex
    # 0.457 instead of 0.4395 (docs/recipe.md item 3)
    "J1": ("joint (j, k) lookup at inference", _model(lambda m: replace(m, joint_lookup=True))),
    "G1": ("coupled HR branch straight-through only: D_hr learns through L_dis alone", _model(lambda m: replace(m, hr_grad="ste"))),
    # the cpu recipe's departures from the paper, each removed on its own (no-ops where a preset lacks them)
    "R1": ("no low-pass base (decoders paint every pixel, as in the paper)", _set(model__base_sigma=0.0)),
    "R2": ("no index-consistency term", _set(train__consistency_weight=0.0)),
    "R3": ("no perceptual phase (L1 + VQ losses throughout)", _set(train__perceptual_weight=0.0)),
    "R4": ("D_hr also pulled toward E_hr's embeddings (codebook term, hr_grad both)", _set(model__hr_grad="both")),
    # seed 0 at 6600 steps, last weights -> the recipe's average (sigma_rel 0.2): LPIPS-Alex photos-aim 0.407 -> 0.418,
    # photos-ntire 0.489 -> 0.445, PSNR +0.11 / +0.47 dB (docs/recipe.md item 5; results/weight-average/)
    "R6": ("no weight average: the last step's weights", _set(train__ema_decay=0.0, train__ema_sigma_rel=0.0)),
    # the same runs: LPIPS-Alex 0.429 (photos-aim) and 0.451 (photos-ntire) with 0.995, against 0.418 and 0.445
    "R7": ("a fixed-decay weight average (0.995, the recipe before), not the length-aware one",
           _own_average(decay=0.995)),
    # the two departures that left the recipe on 2026-12-07 (docs/recipe.md item 19: on photos-aim's validation photos
    # at 600 steps both cost, +0.029 and +0.038 LPIPS-Alex), added back one at a time: whether they still cost
    "R9": ("index consistency against real LR noise, weight 10 (in the recipe until 2026-12-07)",
           _set(train__consistency_weight=10.0)),
    "R10": ("the length-aware weight average, sigma_rel 0.2, not the last weights (in the recipe until 2026-12-07)",
            _own_average(sigma_rel=0.2)),
    # an addition, not in the cpu recipe: index agreement 0.74 instead of 0.08 at 1200 steps, but LPIPS-Alex 0.561
    # instead of 0.495; over 6600 steps agreement 0.37, LPIPS-Alex 0.558 instead of 0.404 (docs/recipe.md item 3, results/consistency-study)
    "R5": ("index consistency as a cross-entropy over the D_lr cells, weight 0.1 (not an MSE to the entry)",
           _set(model__consistency_form="cross_entropy", train__consistency_weight=0.1)),
    # an addition, not in the cpu recipe (seed 0, 6600 steps): index agreement photos-aim 0.64 instead of 0.05 at
    # LPIPS-Alex 0.440 instead of 0.418; photos-ntire 0.92 instead of 0.05 at 0.556 instead of 0.445 (docs/recipe.md item 6)
    "R8": ("N = 8, a coarse code the degradation cannot move (index agreement past 0.5, at a cost in LPIPS-Alex)",
           _set(model__entries=8)),
    # the method issue's remedies for a content index the degradation moves, each added on its own (to the paper's
    # method and to the recipe); whether any makes the trained code consistent: docs/recipe.md item 16
    "Q1": ("cosine lookup: embeddings and D_lr on the unit sphere (vector-quantize-pytorch use_cosine_sim)",
           _set(model__cosine_lookup=True)),
    "Q2": ("EMA codebook: D_lr the running mean of the clean embeddings it wins, decay 0.99, Laplace-smoothed (VQ-VAE-2)",
           _set(model__codebook_ema=0.99)),
    "Q3": ("k-means initialisation of the coupled entries", _set(model__init="kmeans")),
    "Q4": ("stop-gradient on D_lr in branch 3: only D_deg absorbs the degradation's shift",
           _set(model__degraded_moves_content=False)),
    "Q5": ("joint (j, k) lookup in training and at inference", _set(model__joint_lookup_train=True,
                                                                    model__joint_lookup=True)),
    "Q6": ("JPEG in the training noise bank where the LR photos show it (index-consistency copies)",
           _set(train__noise_jpeg=True)),
    "Q7": ("a larger code cell: twice the LR pixels per code side (the encoders one stage deeper)", _model(_deeper)),
    "Q8": ("commitment weight beta 1.0 (not 0.25)", _set(model__beta=1.0)),
    "Q9": ("no dead-entry restarts", _set(train__restart_every=0)),
    # the paper's HR branch does not learn at the CPU budget (docs/recipe.md item 17): its coupled code is chosen by
    # the LR side, so the straight-through gradient reaches an embedding that does not choose what is decoded
    "Q10": ("D_hr entries learn from the reconstruction (hr_grad entries, the recipe's), not the straight-through path",
            _set(model__hr_grad="entries")),
    "Q11": ("dictionary entries at 10x the learning rate (the recipe's), the paper's gradients otherwise",
            _set(train__dictionary_lr_scale=10.0)),
    # the two remedies that helped on their own on the recipe (docs/recipe.md item 16: Q1 the consistency, Q4 the
    # LPIPS-Alex), together: whether their gains add
    "Q12": ("Q1 and Q4 together: cosine lookup and the stop-gradient on D_lr in branch 3",
            _set(model__cosine_lookup=True, model__degraded_moves_content=False)),
}

# variants that change only which weights a run keeps, not its training steps: the workbook derives them from Ours'
# checkpoint (training/run_folder.derive_average_run) instead of training Ours a second time (R7 from the
# fixed-decay average the cpu preset tracks, train.ema_track_decay; R10 from the power-function one)
DERIVED_ABLATIONS = ("R6", "R7", "R10")


def get_config(
    preset: str = "paper", ablation: str | None = None, overrides: dict[str, Any] | None = None, method: str = "dictsr"
) -> Config:
    """A preset, then an ablation, then `key=value` overrides; validated."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = with_ablation(replace(PRESETS[preset], method=method), ablation)
    return apply_overrides(cfg, overrides or {}).validated()


def ablations_for(preset: str) -> list[str]:
    """The ablations that change this preset (D1 needs a code grid it can halve: not the cpu preset's 1x1)."""
    def applies(ablation: str) -> bool:
        try:
            get_config(preset, ablation)
        except ConfigError:
            return False
        return True

    return [ablation for ablation in ABLATIONS if applies(ablation)]


def with_ablation(cfg: Config, ablation: str | None) -> Config:
    """cfg with an ablation's change (none for None), validated."""
    if not ablation:
        return cfg
    if ablation not in ABLATIONS:
        raise ConfigError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
    return replace(ABLATIONS[ablation][1](cfg), ablation=ablation).validated()


# ---- `--set key=value` -----------------------------------------------------------------

def _field_map() -> dict[str, tuple[str, dataclasses.Field]]:
    out = {}
    for section, klass in (("model", ModelConfig), ("train", TrainConfig)):
        for f in fields(klass):
            out[f"{section}.{f.name}"] = (section, f)
    return out


def resolve_key(key: str) -> str:
    """'model.entries' or a bare 'entries' (when unambiguous) -> 'model.entries'."""
    known = _field_map()
    if key in known:
        return key
    matches = [k for k in known if k.split(".", 1)[1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"config key {key!r} is ambiguous: {', '.join(matches)}")
    hint = difflib.get_close_matches(key, list(known) + [k.split(".", 1)[1] for k in known], n=3)
    raise ConfigError(f"unknown config key {key!r}" + (f"; did you mean {', '.join(hint)}?" if hint else ""))


def parse_value(key: str, raw: Any, annotation: Any) -> Any:
    """Coerce a string (from the command line) or a loaded YAML value to the field's type."""
    ann = str(annotation)
    try:
        if ann.startswith("tuple"):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            item_type = float if "float" in ann else int
            return tuple(item_type(str(x).strip()) for x in items if str(x).strip())
        if ann == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("not a boolean")
        if ann == "int":
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            if isinstance(raw, bool):
                raise ValueError("not an integer")
            return int(str(raw).strip())
        if ann == "float":
            return float(raw)
        if ann in ("str", "str | None"):
            return None if raw is None or str(raw).lower() == "none" else str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {raw!r} is invalid: expected {ann}") from None
    raise ConfigError(f"{key}: unsupported field type {ann}")


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    known = _field_map()
    sections = {"model": {}, "train": {}}
    for key, raw in overrides.items():
        full = resolve_key(key)
        section, f = known[full]
        sections[section][f.name] = parse_value(full, raw, f.type)
    return replace(cfg, model=replace(cfg.model, **sections["model"]), train=replace(cfg.train, **sections["train"]))


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """['model.entries=2048', 'lr=1e-4'] -> {...}; a missing '=' is an error naming the item."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out
