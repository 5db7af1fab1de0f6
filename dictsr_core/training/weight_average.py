"""A moving average of the weights, saved beside them as the model to use: a fixed decay (`train.ema_decay`) or a
length-aware power function (`train.ema_sigma_rel`, Karras et al. 2024, "Analyzing and Improving the Training
Dynamics of Diffusion Models", section 3.1).

Why: the cpu recipe's perceptual phase is 600 steps with batches of 4, so the last weights are one noisy point of
its path; an average over its last steps is a steadier model (BasicSR keeps one for every GAN run). A fixed decay
averages over a fixed number of steps (0.995: about 200, a third of the phase, so the average lags while LPIPS-VGG
still moves the weights); the power function's window is a fixed fraction of the steps averaged so far, whatever
the run's length. Either starts from the weights of the first perceptual step (of step 1 when there is no
perceptual phase): the L1 phase ends at another optimum, and averaging across the switch would blend the two.
Parameters are averaged; buffers (the dictionaries' usage clocks) are the live model's.
"""

from __future__ import annotations

import numpy as np
import torch

from dictsr_core.config import SIGMA_REL_RANGE


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent of the power-function profile p(t) ~ t^gamma whose std, relative to its length, is sigma_rel
    (Karras et al. 2024, eq. 3: sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3)))."""
    t = sigma_rel ** -2
    return float(np.roots([1.0, 7.0, 16.0 - t, 12.0 - t]).real.max())


def average_label(decay: float = 0.0, sigma_rel: float = 0.0) -> str:
    """How checkpoints name an average ("decay=0.995", "sigma_rel=0.1")."""
    return f"sigma_rel={sigma_rel:g}" if sigma_rel > 0 else f"decay={decay:g}"


def average_specs(t) -> tuple[dict | None, list[dict]]:
    """The {decay, sigma_rel} of a train config's own weight average (None without one) and of those it tracks."""
    own = {"decay": t.ema_decay, "sigma_rel": t.ema_sigma_rel} if t.ema_decay > 0 or t.ema_sigma_rel > 0 else None
    return own, [{"sigma_rel": s} for s in t.ema_track_sigma_rel] + [{"decay": d} for d in t.ema_track_decay]


class WeightAverage:
    """The moving average of `model`'s parameters; empty until the first `update`.

    `decay` in (0, 1): average <- decay * average + (1 - decay) * weights at every update. `sigma_rel` (instead):
    at update t (1, 2, ...) the decay is (1 - 1/t)^(gamma + 1), which makes the average exactly
    sum_t ((t/T)^(gamma+1) - ((t-1)/T)^(gamma+1)) * weights_t after T updates."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.0, sigma_rel: float = 0.0):
        if (decay > 0) == (sigma_rel > 0):
            raise ValueError(f"train.ema_decay = {decay!r}, train.ema_sigma_rel = {sigma_rel!r}: set exactly one")
        if sigma_rel > 0 and not SIGMA_REL_RANGE[0] <= sigma_rel <= SIGMA_REL_RANGE[1]:
            raise ValueError(f"train.ema_sigma_rel = {sigma_rel!r}: expected a number in "
                             f"[{SIGMA_REL_RANGE[0]}, {SIGMA_REL_RANGE[1]}], e.g. 0.1")
        if sigma_rel == 0 and not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay = {decay!r}: expected a number in (0, 1)")
        self.decay, self.sigma_rel = decay, sigma_rel
        self.gamma = sigma_rel_to_gamma(sigma_rel) if sigma_rel > 0 else None
        self.names = [name for name, _ in model.named_parameters()]
        self.average: list[torch.Tensor] | None = None

    @property
    def label(self) -> str:
        return average_label(self.decay, self.sigma_rel)

    def decay_at(self, t: int) -> float:
        """The decay of update t (1-based: the first update copies the weights)."""
        return self.decay if self.gamma is None else (1.0 - 1.0 / t) ** (self.gamma + 1.0)

    def update(self, model: torch.nn.Module, t: int) -> None:
        """Fold the model's current parameters in as update t (the first call copies them)."""
        live = [p.detach() for p in model.parameters()]
        if self.average is None:
            self.average = [p.clone() for p in live]
        else:
            torch._foreach_lerp_(self.average, live, 1.0 - self.decay_at(t))

    def state_dict(self, model: torch.nn.Module) -> dict | None:
        """The model's state dict with the averaged parameters in place of its own; None before the first update."""
        if self.average is None:
            return None
        state = model.state_dict()
        state.update({name: tensor.detach().clone() for name, tensor in zip(self.names, self.average)})
        return state

    def load_state_dict(self, state: dict, model: torch.nn.Module) -> None:
        """Resume from a checkpoint's average (in the live parameters' device and memory format)."""
        missing = [name for name in self.names if name not in state]
        if missing:
            raise KeyError(f"the average lacks {missing[:3]}")
        self.average = [torch.empty_like(p).copy_(state[name]) for name, p in zip(self.names, model.parameters())]
