"""A trained run with a coarser code, made without training: its N content entries grouped into M k-means clusters
(fit on the entries its training images choose, as `dictsr coarsen` probes), each cluster kept as one entry.

The derived model is an ordinary DictSR with N = M: D_lr, D_hr, D_deg and the usage buffers keep the rows of the
clusters' representative entries (the entry nearest each centroid), so inference looks up the nearest of the M
kept entries. Not in the paper: a fine code learns well on a CPU budget, but the degradation moves its indices
(index agreement 0.05 with 1024 entries); 8 kept entries are indices it mostly cannot move (docs/recipe.md
item 6).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from dictsr_core.training.coarse_size import AGREEMENT_Z

DICTIONARY_ROWS = ("dictionaries.d_lr", "dictionaries.d_hr", "dictionaries.d_deg", "dictionaries.last_used",
                   "dictionaries.last_used_deg", "dictionaries.born", "dictionaries.ema_count",
                   "dictionaries.ema_sum")  # state entries indexed by content entry


def kept_rows(state: dict, keep: torch.Tensor) -> dict:
    """A DictSR state dict with only the content entries `keep` (in that order) in its dictionaries."""
    return {key: (value[keep].clone() if key in DICTIONARY_ROWS else value) for key, value in state.items()}


def derive_coarse_run(source_dir, out_dir, clusters: int | str, data_dir, force: bool = False,
                      target: float | None = None, restarts: int = 1, split: bool = False, log=print,
                      payload: dict | None = None, agreement_z: float | None = None,
                      lookup_blurs: tuple[float, ...] | None = None, device="cpu") -> bool:
    """OUT_DIR as SOURCE_DIR's run with its code coarsened to `clusters` entries, the clusters fit on the training
    images of DATA_DIR (data.datasets.training_lr_images) through the weights inference runs (its average where it
    has one). `clusters` "auto": the largest size of training.coarse_size.size_ladder whose training agreement
    reaches `target` (AGREEMENT_TARGET by default; the sizes and their agreements are logged and kept in the
    checkpoint's `coarse_size`). `restarts` > 1: that many k-means draws (seeds 0..restarts-1) of the M clusters,
    and the one kept is training.coarse_size.best_restart's (lowest LPIPS-Alex on the noisy training images among
    the draws whose training agreement reaches `target`; scores kept in `coarse_restarts`). Writes config.yaml
    (model.entries = clusters), a copy of metrics.jsonl and checkpoints/last.pt with every kept state (last
    weights and averages) cut to the same entries and `derived_from`; no optimizer state (it is not resumable).
    `split`: then grow the kept entries by greedy splits while the training agreement holds
    (training.code_refinement.refine_code; its steps kept in `coarse_split`, and model.entries is the grown size).
    A training agreement "reaches" `target` when its mean over the training photos less `agreement_z`
    (training.coarse_size.AGREEMENT_Z by default) standard errors does (training.coarse_size.agreement_bound).
    `lookup_blurs`: the whole derivation once per model.lookup_blur of the list, and the one kept is the code
    with the lowest training LPIPS-Alex among those whose training agreement reaches `target` (the most agreeing
    where none does; every candidate kept in `coarse_blur`); needs `restarts` > 1 or `split`, which score it.
    False when OUT_DIR already holds this derivation. `payload`: SOURCE_DIR's checkpoint, where the caller has
    loaded it already. `device`: where the model runs its lookups and the probe's SR (the codes found do not depend
    on it beyond float rounding)."""
    from dictsr_core.data.datasets import training_clean_lr_images, training_hr_images
    from dictsr_core.training.checkpoint import inference_model, load_checkpoint
    from dictsr_core.training.run_folder import checkpoint_file, holds_derivation

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    payload = load_checkpoint(checkpoint_file(source_dir)) if payload is None else payload
    source_cfg = payload["config"]
    auto = clusters == "auto"
    target, agreement_z = _checked_request(source_dir, source_cfg, clusters, target, restarts, agreement_z)
    blurs = _checked_blurs(lookup_blurs, auto, restarts, split)
    hr = training_hr_images(data_dir)
    clean = training_clean_lr_images(data_dir, hr)
    probe = training_probe(data_dir, source_cfg, hr, clean) if auto or restarts > 1 or split else None
    derived_from = _derivation_record(source_dir, payload, clusters, data_dir, target, agreement_z, restarts, split,
                                      blurs, probe)
    if not force and holds_derivation(out_dir, derived_from, lambda done: replace(source_cfg, model=replace(
            source_cfg.model, entries=done.model.entries if auto or split else clusters,
            lookup_blur=done.model.lookup_blur if blurs is not None else source_cfg.model.lookup_blur))):
        return False
    model = inference_model(payload, device=device, source=str(source_dir))
    request = {"clusters": clusters, "restarts": restarts, "split": split, "target": target, "z": agreement_z}
    if blurs is None:
        clusters, keep, extra, _ = _derive_code(model, data_dir, clean, probe, request, source_dir, log)
        blur = source_cfg.model.lookup_blur
    else:
        blur, (clusters, keep, extra) = _best_blur(model, data_dir, clean, probe, request, blurs, source_dir, log)
    _write_coarse_run(payload, source_dir, out_dir, clusters, keep.cpu(), extra, derived_from, blur)
    return True


def _derivation_record(source_dir, payload, clusters, data_dir, target, agreement_z, restarts, split, blurs,
                       probe) -> dict:
    """The derived checkpoint's `derived_from`: what makes two derivations the same."""
    from dictsr_core.training.checkpoint import tensor_checksum

    auto = clusters == "auto"
    record = {"run": str(source_dir), "step": int(payload["step"]), "checksum": tensor_checksum(payload),
              "coarsen": "auto" if auto else int(clusters), "fit": f"training images of {Path(data_dir).resolve().name}"}
    if auto or restarts > 1 or split:
        record.update(agreement_target=target, agreement_z=agreement_z)
    if restarts > 1:
        record["restarts"] = restarts
    if split:
        record["split"] = True
    if blurs is not None:
        record["lookup_blurs"] = list(blurs)
    if probe is not None and probe["jpeg_quality"] is not None:  # the probe's copies are JPEG'd (data/jpeg_trace.py)
        record["probe_jpeg"] = probe["jpeg_quality"]
    return record


def _derive_code(model, data_dir, clean, probe, request: dict, source_dir, log) -> tuple:
    """(clusters, kept entries, the records for the checkpoint, {agreement, agreement_bound, lpips_alex} of the
    code kept or None where nothing scored it) of one derivation through `model`'s own lookup."""
    from dictsr_core.data.datasets import training_lr_images
    from dictsr_core.inference.index_maps import content_index_map

    clusters, target, z = request["clusters"], request["target"], request["z"]
    chosen = torch.cat([content_index_map(model, image, tile=None).reshape(-1)
                        for image in training_lr_images(data_dir, clean)]).to(model.dictionaries.d_lr.device)
    extra = {}
    if clusters == "auto":
        clusters, extra["coarse_size"] = _auto_size(model, chosen, probe, target, z, source_dir, log)
    keep = _kept_draw(model, chosen, clusters, request["restarts"], probe, target, z, extra, log)
    if request["split"]:
        from dictsr_core.training.code_refinement import refine_code

        keep, extra["coarse_split"] = refine_code(model, chosen, keep, probe, target, agreement_z=z, log=log)
        clusters = len(keep)
    return clusters, keep, extra, _final_scores(extra)


def _final_scores(extra: dict) -> dict | None:
    """The training scores of the code a derivation kept: its last split step's, else its k-means draw's."""
    if "coarse_split" in extra:
        last = extra["coarse_split"]["steps"][-1]
        return {key: float(last[key]) for key in ("agreement", "agreement_bound", "lpips_alex")}
    if "coarse_restarts" in extra:
        scores = extra["coarse_restarts"]
        seed = scores["seed"]
        return {key: float(scores[key][seed]) for key in ("agreement", "agreement_bound", "lpips_alex")}
    return None


def _best_blur(model, data_dir, clean, probe, request: dict, blurs, source_dir, log) -> tuple[float, tuple]:
    """(the lookup blur kept, (clusters, kept entries, records with `coarse_blur`)): one derivation per blur."""
    found = {}
    for blur in blurs:
        _set_lookup_blur(model, blur)
        log(f"[derive] lookup blur {blur:g}:")
        found[blur] = _derive_code(model, data_dir, clean, probe, request, source_dir, log)
    scores = {blur: result[3] for blur, result in found.items()}
    reaching = [blur for blur in blurs if scores[blur]["agreement_bound"] >= request["target"]]
    kept = (min(reaching, key=lambda b: scores[b]["lpips_alex"]) if reaching
            else max(blurs, key=lambda b: scores[b]["agreement_bound"]))
    clusters, keep, extra, _ = found[kept]
    extra["coarse_blur"] = {"kept": kept, "target": request["target"], "candidates": [
        {"lookup_blur": blur, "entries": int(found[blur][0]), **scores[blur]} for blur in blurs]}
    log(f"[derive] lookup blur kept: {kept:g} (" + ", ".join(
        f"{blur:g}: {found[blur][0]} entries, agreement {scores[blur]['agreement']:.3f} "
        f"({scores[blur]['agreement_bound']:.3f}), LPIPS-Alex {scores[blur]['lpips_alex']:.4f}" for blur in blurs) + ")")
    _set_lookup_blur(model, kept)
    return kept, (clusters, keep, extra)


def _set_lookup_blur(model, blur: float) -> None:
    """The inference model's lookup blur (its lookup, and its config, which sizes tiled inference's margin)."""
    model.dictionaries.lookup_blur = blur
    model.cfg = replace(model.cfg, lookup_blur=blur)


def checked_sigmas(lookup_blurs) -> tuple[float, ...]:
    """--lookup-blur's candidates as floats: distinct sigmas >= 0, at least one; a ConfigError naming the flag."""
    import math

    from dictsr_core.config import ConfigError

    blurs = tuple(float(b) for b in lookup_blurs)
    if not blurs or any(not (math.isfinite(b) and b >= 0) for b in blurs) or len(set(blurs)) != len(blurs):
        raise ConfigError(f"--lookup-blur {' '.join(map(str, lookup_blurs))}: distinct sigmas >= 0 (code cells), "
                          "0 for no blur")
    return blurs


def _checked_blurs(lookup_blurs, auto: bool, restarts: int, split: bool) -> tuple[float, ...] | None:
    """The lookup blurs to try (None: the source's own), after checking them; a ConfigError naming the flag."""
    from dictsr_core.config import ConfigError

    if lookup_blurs is None:
        return None
    blurs = checked_sigmas(lookup_blurs)
    if auto or not (restarts > 1 or split):
        raise ConfigError("--lookup-blur chooses by the training LPIPS-Alex that --restarts R (> 1) or --split "
                          "measure; it does not go with --coarsen auto or without them")
    return blurs


def _kept_draw(model, chosen, clusters: int, restarts: int, probe, target: float, z: float, extra: dict,
               log) -> torch.Tensor:
    """The representatives of the k-means draw kept (seed 0, or score_restarts' best of `restarts` draws, whose
    scores go into extra["coarse_restarts"])."""
    from dictsr_core.model.dictionaries import coarse_code

    seed = 0
    if restarts > 1:
        extra["coarse_restarts"] = scores = score_restarts(model, chosen, clusters, restarts, probe, target, z)
        seed = scores["seed"]
        log(f"[derive] {restarts} k-means draws of {clusters} entries, training agreement (its bound, "
            f"{scores['agreement_z']:g} SE under) / LPIPS-Alex: "
            + ", ".join(f"seed {s}: {scores['agreement'][s]:.3f} ({scores['agreement_bound'][s]:.3f}) / "
                        f"{scores['lpips_alex'][s]:.4f}" for s in range(restarts))
            + f"; kept seed {seed}")
    return coarse_code(model.dictionaries.content_entries, chosen, clusters, seed=seed).representative


def _checked_request(source_dir, source_cfg, clusters, target, restarts, agreement_z) -> tuple[float, float]:
    """(the agreement target, its z) (AGREEMENT_TARGET, AGREEMENT_Z for None) after checking the request; a
    ConfigError naming the field."""
    from dictsr_core.config import ConfigError
    from dictsr_core.training.coarse_size import AGREEMENT_TARGET

    entries = source_cfg.model.entries
    if source_cfg.method != "dictsr":
        raise ConfigError(f"{source_dir} is a {source_cfg.method} run: it has no code to coarsen")
    if source_cfg.model.coarse_entries:  # its coarse_keep indexes the full code: coarsen the run it came from
        raise ConfigError(f"{source_dir} already has a gated code; derive from the run it came from")
    if clusters != "auto" and not (isinstance(clusters, int) and 1 <= clusters < entries):
        raise ConfigError(f"--coarsen {clusters}: a coarser code of {source_dir} needs 1 to {entries - 1} entries "
                          f"(it has {entries}), or auto")
    target = AGREEMENT_TARGET if target is None else float(target)
    if not 0 < target <= 1:
        raise ConfigError(f"--agreement {target}: a target index agreement is a fraction in (0, 1]")
    if not (isinstance(restarts, int) and restarts >= 1):
        raise ConfigError(f"--restarts {restarts}: the number of k-means draws is an integer >= 1")
    agreement_z = AGREEMENT_Z if agreement_z is None else float(agreement_z)
    if not agreement_z >= 0:  # NaN too
        raise ConfigError(f"--agreement-z {agreement_z}: the standard errors the training agreement must clear the "
                          "target by are a number >= 0")
    return target, agreement_z


def _auto_size(model, chosen, probe: dict, target: float, z: float, source_dir, log) -> tuple[int, dict]:
    """(M, the `coarse_size` record) by choose_size; a ConfigError when no size, or only the model itself, reaches
    the target."""
    from dictsr_core.config import ConfigError

    entries = model.dictionaries.d_lr.shape[0]
    choice = choose_size(model, chosen, probe, target, z)
    bound = choice["agreement_bound"]
    log(f"[derive] training index agreement by code size (clean HR-down vs + real LR noise; target {target:g} for "
        f"the mean less {z:g} standard errors, in brackets): "
        + ", ".join(f"{size}: {value:.3f} ({bound[size]:.3f})" for size, value in choice["agreement"].items()))
    if choice["clusters"] is None:
        raise ConfigError(f"--coarsen auto: no code size of {source_dir} reaches a training index agreement of "
                          f"{target:g} by {z:g} standard errors (best {max(bound.values()):.3f}); "
                          "pass --coarsen M")
    if choice["clusters"] >= entries:
        raise ConfigError(f"--coarsen auto: {source_dir} already reaches a training index agreement of "
                          f"{bound[entries]:.3f} >= {target:g} with all {entries} entries; nothing to coarsen")
    log(f"[derive] --coarsen auto: {choice['clusters']} entries")
    return choice["clusters"], {"target": target, "z": z, "clusters": int(choice["clusters"]),
                                "agreement": {int(k): float(v) for k, v in choice["agreement"].items()},
                                "agreement_bound": {int(k): float(v) for k, v in bound.items()},
                                "images": len(probe["clean"]), "noise_patches": probe["noise_patches"]}


def _write_coarse_run(payload: dict, source_dir: Path, out_dir: Path, clusters: int, keep, extra: dict,
                      derived_from: dict, lookup_blur: float) -> None:
    """OUT_DIR's folder and checkpoint: every kept state of the source cut to the entries `keep`."""
    source_cfg = payload["config"]
    cfg = replace(source_cfg, model=replace(source_cfg.model, entries=clusters, lookup_blur=lookup_blur)).validated()
    write_derived_states(payload, source_dir, out_dir, cfg, lambda state: kept_rows(state, keep), **extra,
                         derived_from=derived_from)


def write_derived_states(payload: dict, source_dir: Path, out_dir: Path, cfg, state_of, **fields) -> None:
    """OUT_DIR's folder and checkpoint for a run derived after training: every kept state of the source (last
    weights, EMA, averages) through `state_of`, the source's step, training wall time, device and world size, and
    `fields` (derived_from and the derivation's records)."""
    from dictsr_core.training.checkpoint import save_checkpoint
    from dictsr_core.training.run_folder import checkpoint_file, start_derived_folder

    start_derived_folder(source_dir, out_dir, cfg)
    states = {"model_ema": state_of(payload["model_ema"])} if payload.get("model_ema") is not None else {}
    if payload.get("model_averages"):
        states["model_averages"] = {label: None if state is None else state_of(state)
                                    for label, state in payload["model_averages"].items()}
    fields = {**{k: v for k, v in payload.items() if k in ("train_wall_s", "device", "world_size")}, **fields}
    save_checkpoint(checkpoint_file(out_dir), model_state=state_of(payload["model"]), config=cfg,
                    step=payload["step"], **fields, **states)


def training_probe(data_dir, cfg, hr: list | None = None, clean: list | None = None) -> dict:
    """What the training-data rules look at: {hr (train_hr photos, cropped to a multiple of 4), clean (their
    HR-down), noisy (clean plus one draw of real LR noise, then a JPEG round trip where the real LR shows one:
    data/jpeg_trace.py), noise_patches (how many), jpeg_quality (None: none), jpeg_trace (its blockiness record)}.
    The noise patches are the ones index consistency trains on (train.hr_crop // 4 pixels, flat windows of
    train_lr). `hr` and `clean`:
    training_hr_images and training_clean_lr_images, where the caller has read them already."""
    from dictsr_core.config import ConfigError
    from dictsr_core.data.datasets import load_folder, training_clean_lr_images, training_hr_images
    from dictsr_core.data.degradations import jpeg_roundtrip
    from dictsr_core.data.jpeg_trace import estimate_jpeg_quality
    from dictsr_core.data.noise_bank import extract_noise_patches
    from dictsr_core.training.coarse_size import noisy_copies

    _, real_lr = load_folder(Path(data_dir) / "train_lr")
    try:
        patches = extract_noise_patches(real_lr, cfg.train.hr_crop // 4)
    except ValueError as error:
        raise ConfigError(f"--coarsen auto / --restarts: {Path(data_dir) / 'train_lr'}: {error}; the training index "
                          "agreement needs real LR noise to add. Pass --coarsen M") from None
    hr = training_hr_images(data_dir) if hr is None else hr
    clean = training_clean_lr_images(data_dir, hr) if clean is None else clean
    noisy = noisy_copies(clean, patches)
    quality, trace = estimate_jpeg_quality(real_lr, noisy)
    if quality is not None:  # the real LR went through JPEG: so do the copies (data/jpeg_trace.py)
        noisy = [jpeg_roundtrip(image, quality) for image in noisy]
    return {"hr": hr, "clean": clean, "noisy": noisy, "noise_patches": len(patches), "jpeg_quality": quality,
            "jpeg_trace": trace}


def choose_size(model, chosen: torch.Tensor, probe: dict, target: float, z: float = AGREEMENT_Z) -> dict:
    """training.coarse_size's rule for one model: {clusters (None when no size reaches target), agreement {size:
    mean}, agreement_bound {size: bound}}. The clusters of each size are fit as derive_coarse_run fits them (on
    `chosen`, seed 0); the bound is `z` standard errors under the mean."""
    from dictsr_core.model.dictionaries import coarse_code
    from dictsr_core.training.coarse_size import (agreement_by_size, agreement_summary, largest_size_reaching,
                                                  size_ladder)

    entries = model.dictionaries.d_lr.shape[0]
    codes = {entries: None, **{size: coarse_code(model.dictionaries.content_entries, chosen, size).representative
                               for size in size_ladder(entries)}}
    agreement, bound = agreement_summary(agreement_by_size(model, probe["clean"], probe["noisy"], codes,
                                                           per_image=True), z)
    return {"clusters": largest_size_reaching(bound, target), "agreement": agreement, "agreement_bound": bound}


def score_restarts(model, chosen: torch.Tensor, clusters: int, restarts: int, probe: dict, target: float,
                   z: float = AGREEMENT_Z) -> dict:
    """{seed (best_restart's, on the agreement bounds), agreement {seed: training agreement}, agreement_bound
    {seed: that less `z` standard errors}, agreement_z, lpips_alex {seed: training
    LPIPS-Alex}} over the k-means draws seed 0..restarts-1 of `clusters` clusters."""
    from dictsr_core.model.dictionaries import coarse_code
    from dictsr_core.training.coarse_size import agreement_by_size, agreement_summary, best_restart, training_lpips

    keeps = {seed: coarse_code(model.dictionaries.content_entries, chosen, clusters, seed=seed).representative
             for seed in range(restarts)}
    agreement, bound = agreement_summary(agreement_by_size(model, probe["clean"], probe["noisy"], keeps,
                                                           per_image=True), z)
    lpips = {seed: training_lpips(model, keep, probe["noisy"], probe["hr"]) for seed, keep in keeps.items()}
    return {"seed": best_restart(bound, lpips, target), "agreement": agreement, "agreement_bound": bound,
            "agreement_z": z, "lpips_alex": lpips}
