"""A texture-gated code chosen from the training photos alone (`dictsr derive --coarsen M --restarts R --gate T ...`;
not in the paper; the gate itself is model/texture_gate.py).

Each candidate is one k-means draw of M clusters of the fine code (as `dictsr derive --coarsen M --restarts R` draws
them), one LR lookup blur for the coarse cells, and one roughness threshold. Each is scored as the coarse-code rules
score theirs, through the gated model's own inference lookup: the training index agreement (HR-down against it plus
one draw of real LR noise, whole photos; its mean less `agreement_z` standard errors is the bound) and the training
LPIPS-Alex (the noisy HR-down's central 64 x 64 LR pixels against its HR). The one kept has the lowest LPIPS-Alex
among those whose agreement bound reaches the target; the most agreeing where none does. No validation image is read.

The derived run keeps all N entries (the textured cells choose among them) and the M chosen in its state's
`dictionaries.coarse_keep`; config: model.coarse_entries M, model.texture_gate, model.lookup_blur.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dictsr_core.model.dictionaries import gate_indices
from dictsr_core.training.coarse_size import agreement_bound, central_window


def derive_gated_run(source_dir, out_dir, clusters: int, data_dir, gates, *, restarts: int = 1, lookup_blurs=None,
                     target: float | None = None, agreement_z: float | None = None, force: bool = False,
                     payload: dict | None = None, log=print, device="cpu") -> bool:
    """OUT_DIR as SOURCE_DIR's run with a texture-gated code (module docstring): every k-means draw (seeds
    0..restarts-1) of `clusters` entries x every lookup blur (the source's own where None) x every gate in `gates`
    (grey levels) scored on DATA_DIR's training photos, the best kept (its scores and every candidate's in the
    checkpoint's `coarse_gate`). False when OUT_DIR already holds this derivation. `device`: where the scoring runs."""
    from dictsr_core.data.datasets import training_clean_lr_images, training_hr_images, training_lr_images
    from dictsr_core.inference.index_maps import content_index_map
    from dictsr_core.model.dictionaries import coarse_code
    from dictsr_core.training.checkpoint import inference_model, load_checkpoint
    from dictsr_core.training.code_coarsening import _checked_request, _derivation_record, training_probe
    from dictsr_core.training.run_folder import checkpoint_file, holds_derivation

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    payload = load_checkpoint(checkpoint_file(source_dir)) if payload is None else payload
    source_cfg = payload["config"]
    target, agreement_z = _checked_request(source_dir, source_cfg, clusters, target, restarts, agreement_z)
    blurs, gates = checked_gate_request(source_cfg, lookup_blurs, gates)
    hr = training_hr_images(data_dir)
    clean = training_clean_lr_images(data_dir, hr)
    probe = training_probe(data_dir, source_cfg, hr, clean)
    # the coarse derivation's record, with the target and draws even at one draw (the gate search always scores)
    derived_from = {**_derivation_record(source_dir, payload, int(clusters), data_dir, target, agreement_z, restarts,
                                         False, blurs, probe),
                    "agreement_target": target, "agreement_z": agreement_z, "restarts": restarts, "gates": list(gates)}
    if not force and holds_derivation(out_dir, derived_from, lambda done: gated_config(
            source_cfg, clusters, done.model.texture_gate, done.model.lookup_blur)):
        return False
    model = inference_model(payload, device=device, source=str(source_dir))
    chosen = torch.cat([content_index_map(model, image, tile=None).reshape(-1)
                        for image in training_lr_images(data_dir, clean)]).to(model.dictionaries.d_lr.device)
    keeps = {seed: coarse_code(model.dictionaries.content_entries, chosen, clusters, seed=seed).representative
             for seed in range(restarts)}
    record = score_gated_codes(model, keeps, blurs, gates, probe, target, agreement_z, log)
    kept = record["kept"]
    _write_gated_run(payload, source_dir, out_dir, keeps[kept["seed"]].cpu(), kept, record, derived_from)
    return True


def checked_gate_request(source_cfg, lookup_blurs, gates) -> tuple[tuple, tuple]:
    """(lookup blurs, gates) to try after checking them; a ConfigError naming the flag."""
    import math

    from dictsr_core.config import ConfigError
    from dictsr_core.training.code_coarsening import checked_sigmas

    gates = tuple(float(g) for g in (gates or ()))
    if not gates or any(not (math.isfinite(g) and g > 0) for g in gates) or len(set(gates)) != len(gates):
        raise ConfigError(f"--gate {' '.join(map(str, gates))}: distinct positive roughness thresholds (grey levels)")
    return (source_cfg.model.lookup_blur,) if lookup_blurs is None else checked_sigmas(lookup_blurs), gates


def gated_config(source_cfg, clusters: int, gate: float, blur: float):
    """The derived run's config: the source's, with the gated code's fields."""
    return replace(source_cfg, model=replace(source_cfg.model, coarse_entries=int(clusters), texture_gate=float(gate),
                                             lookup_blur=float(blur))).validated()


def score_gated_codes(model, keeps: dict, blurs, gates, probe: dict, target: float, agreement_z: float, log) -> dict:
    """{kept, target, agreement_z, candidates}: each (seed, blur, gate)'s training agreement, its bound, its training
    LPIPS-Alex and its share of coarse cells in the noisy photos; kept is the chosen candidate (module docstring).
    The maps are the gated lookup's own pieces (CoupledDictionaries.fine_indices, coarse_indices, gate_indices),
    each computed once: the fine map per photo, the coarse one per photo, draw and blur."""
    from dictsr_core.perceptual.lpips_models import build_lpips

    lpips = build_lpips("alex", device=next(model.parameters()).device)
    pairs = [(_encoded(model, a), _encoded(model, b)) for a, b in zip(probe["clean"], probe["noisy"])]
    windows = [(_encoded(model, lr), hr) for lr, hr in
               (central_window(lr, hr, 64) for lr, hr in zip(probe["noisy"], probe["hr"]))]
    candidates, scored = [], {}
    for blur in blurs:
        for seed, keep in keeps.items():
            coarse = [[_coarse(model, e, keep, blur) for e in pair] for pair in pairs]
            window_coarse = [_coarse(model, e, keep, blur) for e, _ in windows]
            for gate in gates:
                shares = [float((gate_indices(a[3], ca, a[2], gate) == gate_indices(b[3], cb, b[2], gate))
                                .float().mean()) for (a, b), (ca, cb) in zip(pairs, coarse)]
                scores = [_window_lpips(model, i, e, gate_indices(e[3], c, e[2], gate), hr, lpips, scored)
                          for i, ((e, hr), c) in enumerate(zip(windows, window_coarse))]
                candidates.append(_candidate(seed, blur, gate, shares, scores, pairs, agreement_z))
                _log_candidate(candidates[-1], log)
    kept = best_gated(candidates, target)
    log(f"[derive] kept gate {kept['texture_gate']:g}, blur {kept['lookup_blur']:g}, draw {kept['seed']} "
        f"(LPIPS-Alex {kept['lpips_alex']:.4f}, agreement {kept['agreement']:.3f})")
    return {"kept": kept, "target": target, "agreement_z": agreement_z, "candidates": candidates}


def best_gated(candidates: list[dict], target: float) -> dict:
    """The candidate with the lowest training LPIPS-Alex among those whose agreement bound reaches `target`; the one
    with the highest bound where none does (the target comes first; ties: the earlier candidate)."""
    reaching = [c for c in candidates if c["agreement_bound"] >= target]
    if reaching:
        return min(reaching, key=lambda c: c["lpips_alex"])
    return max(candidates, key=lambda c: c["agreement_bound"])


def _candidate(seed, blur, gate, shares, scores, pairs, agreement_z) -> dict:
    coarse = [float((b[2] < gate).float().mean()) for _, b in pairs]
    return {"seed": int(seed), "lookup_blur": float(blur), "texture_gate": float(gate),
            "agreement": float(np.mean(shares)), "agreement_bound": agreement_bound(shares, agreement_z),
            "coarse_share": float(np.mean(coarse)), "lpips_alex": float(np.mean(scores))}


def _log_candidate(c: dict, log) -> None:
    log(f"[derive] gate {c['texture_gate']:g}, blur {c['lookup_blur']:g}, draw {c['seed']}: coarse cells "
        f"{c['coarse_share']:.2f}, training agreement {c['agreement']:.3f} ({c['agreement_bound']:.3f}), "
        f"LPIPS-Alex {c['lpips_alex']:.4f}")


@torch.no_grad()
def _encoded(model, image: np.ndarray) -> tuple:
    """(padded LR batch, E_lr features, roughness map, fine index map) of one uint8 image."""
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid
    from dictsr_core.model.dictsr import to_signed
    from dictsr_core.model.texture_gate import lr_roughness

    x = pad_to_grid(image_tensor(image, model_device(model)), model.code_patch)
    features = model.enc_lr(to_signed(x))
    return x, features, lr_roughness(x, model.code_patch), model.dictionaries.fine_indices(features)


def _coarse(model, encoded: tuple, keep: torch.Tensor, blur: float) -> torch.Tensor:
    return model.dictionaries.coarse_indices(encoded[1], keep.to(encoded[1].device), blur)


@torch.no_grad()
def _window_lpips(model, window: int, encoded: tuple, indices: torch.Tensor, hr: np.ndarray, lpips, scored: dict) -> float:
    """LPIPS-Alex of the SR an index map of an encoded LR window decodes to against `hr`, the SR rounded as a saved
    image; `scored` remembers each (window, map) already scored (most maps recur across the candidates)."""
    from dictsr_core.inference.tiled import image_tensor
    from dictsr_core.model.dictsr import to_signed

    key = (window, indices.cpu().numpy().tobytes())
    if key not in scored:
        x = encoded[0]
        h, w = hr.shape[:2]
        sr = model.decode(indices, x)[:, :, :h, :w].float().clamp(0, 1).mul(255).round().div(255)
        scored[key] = float(lpips(to_signed(sr), to_signed(image_tensor(hr, x.device))).item())
    return scored[key]


def _write_gated_run(payload: dict, source_dir: Path, out_dir: Path, keep: torch.Tensor, kept: dict, record: dict,
                     derived_from: dict) -> None:
    """OUT_DIR's folder and checkpoint: every kept state of the source with `keep` as its dictionaries.coarse_keep."""
    from dictsr_core.training.code_coarsening import write_derived_states

    cfg = gated_config(payload["config"], len(keep), kept["texture_gate"], kept["lookup_blur"])
    write_derived_states(payload, source_dir, out_dir, cfg,
                         lambda state: {**state, "dictionaries.coarse_keep": keep.detach().cpu().clone()},
                         derived_from=derived_from, coarse_gate=record)
