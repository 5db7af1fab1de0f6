"""DictSR: the three training branches (HR, HR-down, real LR) and the LR -> SR inference path."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dictsr_core.config import ModelConfig
from dictsr_core.model.blocks import count_convs
from dictsr_core.model.code_stem import CodeStem
from dictsr_core.model.decoders import Decoder
from dictsr_core.model.dictionaries import CoupledDictionaries, LookupResult
from dictsr_core.model.encoders import Encoder
from dictsr_core.model.lowpass_base import add_base


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> network input in [-1, 1]."""
    return x * 2.0 - 1.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 0.5


def build_dictionaries(cfg: ModelConfig) -> CoupledDictionaries:
    return CoupledDictionaries(
        entries=cfg.entries,
        offsets=cfg.offsets,
        dim=cfg.dim,
        hr_channels=cfg.hr_widths[-1],
        lr_channels=cfg.lr_width,
        beta=cfg.beta,
        hierarchical=cfg.hierarchical,
        coupled=cfg.coupled,
        joint_lookup=cfg.joint_lookup,
        lookup_blur=cfg.lookup_blur,
        coarse_entries=cfg.coarse_entries,
        texture_gate=cfg.texture_gate,
        init=cfg.init,
        deg_init_scale=cfg.deg_init_scale,
        lookup_chunk=cfg.lookup_chunk,
        hr_grad=cfg.hr_grad,
        consistency_form=cfg.consistency_form,
        cosine_lookup=cfg.cosine_lookup,
        codebook_ema=cfg.codebook_ema,
        degraded_moves_content=cfg.degraded_moves_content,
        joint_lookup_train=cfg.joint_lookup_train,
    )


def build_lr_encoder(cfg: ModelConfig) -> Encoder:
    return Encoder((cfg.lr_width,) * cfg.lr_stages, cfg.enc_lr_blocks, act=cfg.activation)


def build_hr_decoder(cfg: ModelConfig) -> Decoder:
    return Decoder(tuple(reversed(cfg.hr_widths)), cfg.dec_hr_blocks, act=cfg.activation)


@dataclass
class BranchOutputs:
    hr: torch.Tensor  # reconstruction of I_hr (branch 1)
    hr_down: torch.Tensor  # reconstruction of I_hr_down (branch 2)
    lr: torch.Tensor  # reconstruction of I_lr (branch 3)
    lookups: tuple[LookupResult, LookupResult, LookupResult]  # branches 1, 2, 3
    consistency: torch.Tensor | None = None  # ||z(injected HR-down) - sg[D_lr(j of HR-down)]||^2 (not in the paper)


class DictSR(nn.Module):
    """The training model. Images are float tensors in [0, 1], [B, 3, H, W]."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        self.enc_hr = Encoder(cfg.hr_widths, cfg.enc_hr_blocks, act=cfg.activation)
        self.dec_hr = build_hr_decoder(cfg)
        self.enc_lr = build_lr_encoder(cfg)
        self.dec_lr = Decoder((cfg.lr_width,) * cfg.lr_stages, cfg.dec_lr_blocks, act=cfg.activation)
        self.dictionaries = build_dictionaries(cfg)

    def forward(self, hr: torch.Tensor, hr_down: torch.Tensor, lr: torch.Tensor,
                injected: torch.Tensor | None = None) -> BranchOutputs:
        """`injected`: HR-down with real LR-domain noise added (data/noise_bank.py); its embedding is pulled to
        the clean HR-down's content entry, so a degraded image keeps its clean code (not in the paper)."""
        dicts = self.dictionaries
        f_inj = None
        if hr_down.shape[1:] == lr.shape[1:]:  # one E_lr / D_lr pass over both LR-side batches
            extra = [] if injected is None else [injected]
            f_all = self.enc_lr(to_signed(torch.cat([hr_down, lr, *extra])))
            f_hrd, f_lr, *f_extra = f_all.split([hr_down.shape[0], lr.shape[0]] + [e.shape[0] for e in extra])
            f_inj = f_extra[0] if f_extra else None
        else:
            f_hrd, f_lr = self.enc_lr(to_signed(hr_down)), self.enc_lr(to_signed(lr))
            f_inj = None if injected is None else self.enc_lr(to_signed(injected))
        b2 = dicts.lookup_lr(f_hrd, degraded=False)
        b3 = dicts.lookup_lr(f_lr, degraded=True)
        b1 = dicts.lookup_hr(self.enc_hr(to_signed(hr)), b2.indices if dicts.coupled else None)
        if hr_down.shape[1:] == lr.shape[1:]:
            rec_hrd, rec_lr = self.dec_lr(torch.cat([b2.features, b3.features])).split([hr_down.shape[0], lr.shape[0]])
        else:
            rec_hrd, rec_lr = self.dec_lr(b2.features), self.dec_lr(b3.features)
        sigma = self.cfg.base_sigma
        return BranchOutputs(
            hr=add_base(self.dec_hr(b1.features), hr_down, sigma, 4),
            hr_down=add_base(rec_hrd, hr_down, sigma, 1),
            lr=add_base(rec_lr, lr, sigma, 1),
            lookups=(b1, b2, b3),
            consistency=None if f_inj is None else dicts.consistency_loss(f_inj, b2.indices),
        )

    @torch.no_grad()
    def coupled_embeddings(self, hr: torch.Tensor, hr_down: torch.Tensor):
        """Lookup-space embeddings of HR-down and HR at the same code positions (for init and restarts)."""
        d = self.dictionaries
        z_lr = d.lr_embedding(self.enc_lr(to_signed(hr_down)))
        z_hr = d.hr_in(self.enc_hr(to_signed(hr))).float()
        if z_lr.shape[2:] != z_hr.shape[2:]:
            raise ValueError(f"HR-down code grid {tuple(z_lr.shape[2:])} != HR code grid {tuple(z_hr.shape[2:])}")
        rows = lambda z: z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # noqa: E731
        return rows(z_lr), rows(z_hr)

    def inference(self) -> "DictSRInference":
        """The LR -> SR path sharing this model's modules (no copy)."""
        return DictSRInference(self.cfg, enc_lr=self.enc_lr, dec_hr=self.dec_hr, dictionaries=self.dictionaries)


class DictSRInference(nn.Module):
    """LR -> E_lr -> content index over D_lr -> D_hr -> D_hr decoder -> SR (4x). Only 18 conv layers run."""

    def __init__(self, cfg: ModelConfig | None = None, enc_lr=None, dec_hr=None, dictionaries=None):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        self.enc_lr = enc_lr if enc_lr is not None else build_lr_encoder(cfg)
        self.dec_hr = dec_hr if dec_hr is not None else build_hr_decoder(cfg)
        self.dictionaries = dictionaries if dictionaries is not None else build_dictionaries(cfg)
        self.scale = 4
        self.code_patch = cfg.code_patch
        self.stem = None  # CodeStem once folded(): the decoder then starts at dec_hr[1]

    def indices(self, lr: torch.Tensor) -> torch.Tensor:
        return self.dictionaries.content_indices(self.enc_lr(to_signed(lr)),
                                                 roughness=self.dictionaries.roughness_for(lr, self.code_patch))

    def decode(self, indices: torch.Tensor, lr: torch.Tensor | None = None) -> torch.Tensor:
        """SR from an index map; with a low-pass base (model.base_sigma > 0) `lr` gives the base, and without
        it the output is the decoded detail alone, around mid-grey (what the atlas and explorer show)."""
        if self.stem is None:
            x = self.dec_hr(self.dictionaries.hr_features(indices))
        else:
            x = self.stem(F.embedding(indices, self.dictionaries.d_hr).permute(0, 3, 1, 2))
            for layer in list(self.dec_hr)[1:]:
                x = layer(x)
        return add_base(x, lr, self.cfg.base_sigma if lr is not None else 0.0, 4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """[B, 3, h, w] in [0, 1] (h, w multiples of code_patch) -> [B, 3, 4h, 4w], not clamped."""
        return self.decode(self.indices(lr), lr)

    def folded(self) -> "DictSRInference":
        """The same function with hr_out folded into the decoder's first conv (see CodeStem), for inference
        after training: a snapshot, sharing this module's other weights. Unchanged if it cannot fold."""
        if self.stem is not None or not CodeStem.folds(self.dec_hr[0]):
            return self
        out = DictSRInference(self.cfg, enc_lr=self.enc_lr, dec_hr=self.dec_hr, dictionaries=self.dictionaries)
        out.stem = CodeStem(self.dictionaries.hr_out, self.dec_hr[0])
        return out.train(self.training)

    def conv_layers(self) -> int:
        return count_convs(self.enc_lr) + count_convs(self.dec_hr)

    def load_from_training_state(self, state_dict: dict) -> None:
        """Load the inference modules from a full DictSR state dict (strict on the keys it needs)."""
        keep = ("enc_lr.", "dec_hr.", "dictionaries.")
        self.load_state_dict({k: v for k, v in state_dict.items() if k.startswith(keep)}, strict=True)
