"""Checkpoints: written atomically, read as data only (`weights_only=True`), errors that name the file."""

from __future__ import annotations

from pathlib import Path

import torch

from dictsr_core.atomic import atomic_torch_save
from dictsr_core.config import Config, ConfigError

FORMAT = "dictsr-checkpoint-v1"


class CheckpointError(ValueError):
    pass


def save_checkpoint(path, *, model_state: dict, config: Config, step: int, **extra) -> Path:
    payload = {"format": FORMAT, "model": model_state, "config": config.to_dict(), "step": int(step), **extra}
    return atomic_torch_save(path, payload)


def load_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint dict, with `config` turned back into a validated Config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a DictSR checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
    try:
        payload["config"] = Config.from_dict(payload["config"])
    except (KeyError, ConfigError) as error:
        raise CheckpointError(f"{path}: bad config inside the checkpoint: {error}") from None
    return payload


def inference_model(payload: dict, device="cpu", source="checkpoint"):
    """The LR -> SR module of a loaded checkpoint, in eval mode: DictSRInference (only the inference
    modules of DictSR), or PlainSR for the paired baselines."""
    from dictsr_core.model import DictSRInference, PlainSR

    cfg = payload["config"]
    try:
        if cfg.method == "dictsr":
            model = DictSRInference(cfg.model)
            model.load_from_training_state(payload["model"])
            model = model.folded()
        else:
            model = PlainSR(cfg.model)
            model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{source}: weights do not match its config: {error}") from None
    return model.to(device).eval()


def load_inference_model(path, device="cpu"):
    """(inference module, Config, step) from a training checkpoint file."""
    payload = load_checkpoint(path)
    return inference_model(payload, device, source=str(path)), payload["config"], payload["step"]
