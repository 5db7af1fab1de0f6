"""A trained run with a coarser code, made without training: its N content entries grouped into M k-means clusters
(fit on the entries its training images choose, as `dictsr coarsen` probes), each cluster kept as one entry.

The derived model is an ordinary DictSR with N = M: D_lr, D_hr, D_deg and the usage buffers keep the rows of the
clusters' representative entries (the entry nearest each centroid), so inference looks up the nearest of the M
kept entries. Not in the paper: a fine code learns well on a CPU budget, but the degradation moves its indices
(index agreement 0.05 with 1024 entries); 8 kept entries are indices it mostly cannot move (README, "What it
took", 6.).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

DICTIONARY_ROWS = ("dictionaries.d_lr", "dictionaries.d_hr", "dictionaries.d_deg", "dictionaries.last_used",
                   "dictionaries.last_used_deg", "dictionaries.born")  # state entries indexed by content entry


def kept_rows(state: dict, keep: torch.Tensor) -> dict:
    """A DictSR state dict with only the content entries `keep` (in that order) in its dictionaries."""
    return {key: (value[keep].clone() if key in DICTIONARY_ROWS else value) for key, value in state.items()}


def derive_coarse_run(source_dir, out_dir, clusters: int, data_dir, force: bool = False) -> bool:
    """OUT_DIR as SOURCE_DIR's run with its code coarsened to `clusters` entries, the clusters fit on the training
    images of DATA_DIR (data.datasets.training_lr_images) through the weights inference runs (its average where it
    has one). Writes config.yaml (model.entries = clusters), a copy of metrics.jsonl and checkpoints/last.pt with
    every kept state (last weights and averages) cut to the same entries and `derived_from`; no optimizer state
    (it is not resumable). False when OUT_DIR already holds this derivation."""
    from dictsr_core.config import ConfigError
    from dictsr_core.data.datasets import training_lr_images
    from dictsr_core.inference.index_maps import content_index_map
    from dictsr_core.model.dictionaries import coarse_code
    from dictsr_core.training.checkpoint import inference_model, load_checkpoint, save_checkpoint, tensor_checksum
    from dictsr_core.training.run_folder import checkpoint_file, holds_derivation, start_derived_folder

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    payload = load_checkpoint(checkpoint_file(source_dir))
    source_cfg = payload["config"]
    if source_cfg.method != "dictsr":
        raise ConfigError(f"{source_dir} is a {source_cfg.method} run: it has no code to coarsen")
    if not 1 <= clusters < source_cfg.model.entries:
        raise ConfigError(f"--coarsen {clusters}: a coarser code of {source_dir} needs 1 to "
                          f"{source_cfg.model.entries - 1} entries (it has {source_cfg.model.entries})")
    cfg = replace(source_cfg, model=replace(source_cfg.model, entries=clusters)).validated()
    derived_from = {"run": str(source_dir), "step": int(payload["step"]),
                    "checksum": tensor_checksum({k: v for k, v in payload.items() if k != "config"}),
                    "coarsen": int(clusters), "fit": f"training images of {Path(data_dir).resolve().name}"}
    if not force and holds_derivation(out_dir, derived_from, cfg):
        return False
    model = inference_model(payload, source=str(source_dir))
    chosen = torch.cat([content_index_map(model, image, tile=None).reshape(-1) for image in training_lr_images(data_dir)])
    keep = coarse_code(model.dictionaries.d_lr, chosen, clusters).representative
    start_derived_folder(source_dir, out_dir, cfg)
    states = {"model_ema": kept_rows(payload["model_ema"], keep)} if payload.get("model_ema") is not None else {}
    if payload.get("model_averages"):
        states["model_averages"] = {label: None if state is None else kept_rows(state, keep)
                                    for label, state in payload["model_averages"].items()}
    extra = {k: v for k, v in payload.items() if k in ("train_wall_s", "device", "world_size")}
    save_checkpoint(checkpoint_file(out_dir), model_state=kept_rows(payload["model"], keep), config=cfg, step=payload["step"],
                    **extra, **states, derived_from=derived_from)
    return True
