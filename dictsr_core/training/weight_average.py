"""An exponential moving average of the weights (`train.ema_decay`), saved beside them as the model to use.

Why: the cpu recipe's perceptual phase is 600 steps with batches of 4, so the last weights are one noisy point of
its path; the average over the last few hundred steps is a steadier model (BasicSR keeps one for every GAN run).
It starts from the weights of the first perceptual step (of step 1 when there is no perceptual phase): the L1
phase ends at another optimum, and averaging across the switch would blend the two. Parameters are averaged
(`torch.optim.swa_utils`' EMA update); buffers (the dictionaries' usage clocks) are the live model's.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn


class WeightAverage:
    """The EMA of `model`'s parameters; empty until the first `update`."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay = {decay!r}: expected a number in (0, 1)")
        self.decay = decay
        self.names = [name for name, _ in model.named_parameters()]
        self.average: list[torch.Tensor] | None = None
        self._update = get_ema_multi_avg_fn(decay)

    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current parameters in (the first call copies them)."""
        live = [p.detach() for p in model.parameters()]
        if self.average is None:
            self.average = [p.clone() for p in live]
        else:
            self._update(self.average, live, None)

    def state_dict(self, model: torch.nn.Module) -> dict | None:
        """The model's state dict with the averaged parameters in place of its own; None before the first update."""
        if self.average is None:
            return None
        state = model.state_dict()
        state.update({name: tensor.detach().clone() for name, tensor in zip(self.names, self.average)})
        return state

    def load_state_dict(self, state: dict, model: torch.nn.Module) -> None:
        """Resume from a checkpoint's `model_ema` (in the live parameters' device and memory format)."""
        missing = [name for name in self.names if name not in state]
        if missing:
            raise KeyError(f"model_ema lacks {missing[:3]}")
        self.average = [torch.empty_like(p).copy_(state[name]) for name, p in zip(self.names, model.parameters())]
