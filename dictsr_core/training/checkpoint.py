"""Checkpoints: written atomically, read as data only (`weights_only=True`), errors that name the file.

Each checkpoint carries a SHA-256 of its tensors (names, dtypes, shapes and bytes), checked on load: a flipped
byte inside a tensor, which the zip container lets through, is a CheckpointError naming the file. Checkpoints
written before the checksum existed load unchecked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from dictsr_core.atomic import atomic_torch_save
from dictsr_core.config import Config, ConfigError

FORMAT = "dictsr-checkpoint-v1"


class CheckpointError(ValueError):
    pass


CHECKSUM_ALGORITHM = "sha256-tensors-v1"


def _tensors(value, where: str = ""):
    """(path, tensor) of every tensor inside nested dicts / lists / tuples, in their stored order."""
    if isinstance(value, torch.Tensor):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{where}/{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{where}/{index}")


def tensor_checksum(payload: dict) -> str:
    """SHA-256 over every tensor of a checkpoint payload (its place, dtype, shape and bytes), the checksum excluded."""
    digest = hashlib.sha256()
    for where, tensor in _tensors({k: v for k, v in payload.items() if k != "checksum"}):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{where}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy())  # the raw bytes, whatever the dtype (bf16 too)
    return digest.hexdigest()


def save_checkpoint(path, *, model_state: dict, config: Config, step: int, **extra) -> Path:
    payload = {"format": FORMAT, "model": model_state, "config": config.to_dict(), "step": int(step), **extra}
    payload["checksum"] = {"algorithm": CHECKSUM_ALGORITHM, "value": tensor_checksum(payload)}
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
    stored = payload.pop("checksum", None)  # absent in checkpoints written before it existed: loaded unchecked
    if stored is not None:
        if not isinstance(stored, dict) or stored.get("algorithm") != CHECKSUM_ALGORITHM:
            raise CheckpointError(f"{path}: unknown checksum {stored!r} inside the checkpoint")
        if tensor_checksum(payload) != stored.get("value"):
            raise CheckpointError(f"{path}: tensor checksum mismatch: the file is corrupt (bytes changed on disk "
                                  "or in a copy); use another copy or an earlier checkpoint")
    try:
        payload["config"] = Config.from_dict(payload["config"])
    except (KeyError, ConfigError) as error:
        raise CheckpointError(f"{path}: bad config inside the checkpoint: {error}") from None
    return payload


WEIGHTS = ("auto", "average", "last")  # auto: the weight average (train.ema_decay or ema_sigma_rel) where there is one


def weights_used(payload: dict, weights: str = "auto", source="checkpoint") -> str:
    """"average" or "last": which weights `weights` picks in this checkpoint (auto: its average where it has one)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights = {weights!r}: choose one of {', '.join(WEIGHTS)}")
    has_average = payload.get("model_ema") is not None
    if weights == "average" and not has_average:
        raise CheckpointError(f"{source}: has no weight average (it was trained without train.ema_decay or ema_sigma_rel, or stopped "
                              "before its perceptual phase); use the last weights")
    return "average" if weights != "last" and has_average else "last"


def model_weights(payload: dict, weights: str = "auto", source="checkpoint") -> dict:
    """The state dict to run: `model_ema` (the weight average) or `model` (the last step's weights)."""
    return payload["model_ema"] if weights_used(payload, weights, source) == "average" else payload["model"]


def inference_model(payload: dict, device="cpu", source="checkpoint", weights: str = "auto"):
    """The LR -> SR module of a loaded checkpoint, in eval mode: DictSRInference (only the inference
    modules of DictSR), or PlainSR for the paired baselines; `weights` as in model_weights."""
    from dictsr_core.model import DictSRInference, PlainSR

    cfg = payload["config"]
    state = model_weights(payload, weights, source)
    try:
        if cfg.method == "dictsr":
            model = DictSRInference(cfg.model)
            model.load_from_training_state(state)
            model = model.folded()
        else:
            model = PlainSR(cfg.model)
            model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{source}: weights do not match its config: {error}") from None
    return model.to(device).eval()


def load_inference_model(path, device="cpu", weights: str = "auto"):
    """(inference module, Config, step) from a training checkpoint file."""
    payload = load_checkpoint(path)
    return inference_model(payload, device, source=str(path), weights=weights), payload["config"], payload["step"]


def rng_state(device: torch.device) -> dict:
    """The global RNG state a checkpoint carries (CPU, and the device's on CUDA), so a resume continues its draws."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
