"""Per-run result records: evaluate a trained run (or bicubic) on a prepared data folder's validation pairs.

A record is what one row of the paper's tables needs, and nothing is pasted: metrics come from
`evaluate_pairs`, cost from `model_cost`, activated D_lr entries from the content index maps of the
validation LR images. Records live in `results/<dataset>/<run>.json` (standard JSON, written atomically)
and are reused while the run's checkpoint step and the validation image names are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from dictsr_core.atomic import atomic_write_json
from dictsr_core.peers.names import EQUAL_BUDGET_METHODS, PRETRAINED_METHODS

CHECKPOINT = Path("checkpoints") / "last.pt"
BICUBIC_RUN = "bicubic"  # the bicubic record's name, so no run folder may be called this
COST_KEYS = ("inference_conv_layers", "gmacs_128", "gmacs_128_executed", "params")
RECORD_KEYS = ("run", "run_dir", "method", "preset", "ablation", "steps", "total_steps", "train_wall_s", "device",
               "weights", "eval_device", "dataset", "data_dir", "config", "cost", "activated_entries", "entries",
               "codebook", "evaluation", "comparison")
# `comparison`: {reference method: comparison.compare_records(record, reference)}, set by `attach_comparisons` from
# the records collected together (vs bicubic for every non-bicubic record, and vs paired-bicubic when such a run
# is among them); None for the bicubic record. A record stored before this key existed is evaluated again.
# `weights`: which of the checkpoint's weights were scored, "average" (its `model_ema`) or "last"; None for bicubic.
OPTIONAL_KEYS = ("checkpoint_checksum", "split", "trained_on", "test_split")
# `split`: "val" (absent in records made before the test split existed) or "test"; `trained_on`: what a pretrained
# peer's weights cost (its budget is not ours); `test_split`: the data manifest's check against data/test-split.json.
SPLITS = ("val", "test")
# every record is compared with each of these that was collected with it (by method)
REFERENCE_METHODS = ("bicubic", "paired-bicubic", *EQUAL_BUDGET_METHODS)
# `checkpoint_checksum`: checkpoint.tensor_checksum of the scored checkpoint. A derived run (`dictsr derive`) keeps
# its source's step and training time, so only this tells two derivations apart; records made before it existed
# are reused on step and time, except those of derived runs, which are evaluated again.


class ResultsError(ValueError):
    """A run folder, data folder or results file that cannot be used; the message names it."""


def is_record(obj, summary: bool = True) -> bool:
    """Whether a parsed JSON value is a result record: per-image rows (and, with `summary`, their summary) under
    `evaluation`."""
    evaluation = obj.get("evaluation") if isinstance(obj, dict) else None
    return isinstance(evaluation, dict) and isinstance(evaluation.get("images"), list) \
        and (not summary or isinstance(evaluation.get("summary"), dict))


def read_record(path, error: type[Exception] = ResultsError, missing: str = "", summary: bool = True) -> dict:
    """The result record in `path` (the tables, the verdict, the seeds and the departures all read them so);
    `error`, naming the file, where it is missing (`missing`: what to do about it), unreadable or not a record
    (`summary=False`: the per-image rows are all the caller reads)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such result record{f' ({missing})' if missing else ''}") from None
    except (OSError, ValueError) as failure:
        raise error(f"{path}: not a result record ({type(failure).__name__}: {failure})") from None
    if not is_record(record, summary):
        raise error(f"{path}: not a result record (no evaluation.images{' and evaluation.summary' if summary else ''})")
    return record


def dataset_name(data_dir) -> str:
    """The results sub-folder of a data folder: its own name (`data/sample-aim/` -> `sample-aim`)."""
    return Path(data_dir).resolve().name


def device_label(device: torch.device) -> str:
    """What evaluated: the GPU's name on CUDA (timings and bf16 differ by card), else the device type."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _validation_dirs(data_dir, split: str = "val") -> tuple[Path, Path]:
    if split not in SPLITS:
        raise ResultsError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    lr_dir, hr_dir = data_dir / f"{split}_lr", data_dir / f"{split}_hr"
    for folder in (lr_dir, hr_dir):
        if not folder.is_dir():
            hint = (" (`dictsr prepare --source photos` writes the test split)" if split == "test" else "")
            raise ResultsError(f"{folder}: no such folder; --data must be a prepared data folder with {split}_lr/ and "
                               f"{split}_hr/ (see `dictsr prepare`){hint}")
    return lr_dir, hr_dir


def validation_names(data_dir, split: str = "val") -> list[str]:
    """Stems of the split's pairs, without decoding them (what a reused record must have been scored on)."""
    from dictsr_core.data.io import pair_by_stem

    return [name for name, _, _ in pair_by_stem(*_validation_dirs(data_dir, split))]


def _split_fields(data_dir, split: str) -> dict:
    """The record fields saying which split was scored (and, for test, whether it is the frozen one)."""
    if split == "val":
        return {"split": "val"}
    try:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    return {"split": split, "test_split": manifest.get("test_split")}


def validation_activated_entries(model, pairs, *, tile: int | None = 256, device=None, amp: bool = False) -> int:
    """Distinct D_lr content entries chosen over all validation LR images (the paper's "activated entries")."""
    from dictsr_core.evaluation.metrics import codebook_usage
    from dictsr_core.inference.index_maps import content_index_map

    maps = [content_index_map(model, item["lr"], tile=tile, device=device, amp=amp).reshape(-1) for item in pairs]
    return codebook_usage(torch.cat(maps), model.dictionaries.entries)["activated"]


@torch.no_grad()
def validation_codebook_health(model, pairs, device=None) -> dict:
    """Over the validation LR images (whole): perplexity of the content indices the model decodes (its inference
    lookup: a derived run's coarse code, texture gate and lookup blur included, as super_resolve), and how many of
    the N*K degradation offsets of D_deg the embeddings choose around those entries (eq. 4's k given that j)."""
    from dictsr_core.evaluation.metrics import codebook_usage
    from dictsr_core.inference.tiled import image_tensor, model_device, pad_to_grid
    from dictsr_core.model.dictionaries import nearest_offset, to_rows
    from dictsr_core.model.dictsr import to_signed

    device = model_device(model, device)
    dicts = model.dictionaries
    contents, offsets = [], []
    for item in pairs:
        lr = pad_to_grid(image_tensor(item["lr"], device), model.code_patch)
        features = model.enc_lr(to_signed(lr))
        j = dicts.content_indices(features, roughness=dicts.roughness_for(lr, model.code_patch)).reshape(-1)
        contents.append(j.cpu())
        if dicts.hierarchical:
            z = to_rows(dicts.lr_embedding(features))
            k = nearest_offset(z - dicts.content_entries[j], dicts.d_deg, j, dicts.lookup_chunk)
            offsets.append((j * dicts.num_offsets + k).cpu())
    health = {"perplexity": codebook_usage(torch.cat(contents), dicts.entries)["perplexity"],
              "activated_offsets": None, "offsets": None}
    if offsets:
        total = dicts.entries * dicts.num_offsets
        health.update(activated_offsets=codebook_usage(torch.cat(offsets), total)["activated"], offsets=total)
    return health


def checkpoint_path(run_dir) -> Path:
    """RUN/checkpoints/last.pt, or a ResultsError naming the run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: no such run folder")
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise ResultsError(f"{run_dir}: no checkpoint at {path} (train the run first: `dictsr train ... --out {run_dir}`)")
    return path


def _record(*, run: str, run_dir, method: str, data_dir, eval_device: torch.device, evaluation: dict, **fields) -> dict:
    """Every key of RECORD_KEYS, in that order; what does not apply (cost of bicubic, entries of a baseline) is None.
    OPTIONAL_KEYS where given."""
    from dictsr_core.evaluation.evaluate import report_record

    unknown = set(fields) - set(RECORD_KEYS) - set(OPTIONAL_KEYS)
    if unknown:
        raise TypeError(f"unknown record field(s) {sorted(unknown)}")
    record = {key: None for key in RECORD_KEYS}
    record["cost"] = {key: None for key in COST_KEYS}
    record.update(fields)
    record.update(run=run, run_dir=None if run_dir is None else str(run_dir), method=method,
                  eval_device=device_label(eval_device), dataset=dataset_name(data_dir), data_dir=str(data_dir),
                  evaluation=report_record(evaluation))
    return record


def evaluate_run(run_dir, data_dir, device=None, tile: int = 256, progress: bool = True, weights: str = "auto",
                 payload: dict | None = None, split: str = "val") -> dict:
    """The result record of a trained run: RUN/checkpoints/last.pt scored on DATA/val_lr -> DATA/val_hr (its weight
    average where it has one, unless `weights` is "last"; checkpoint.model_weights). `payload`: that checkpoint,
    where the caller has loaded it already."""
    from dictsr_core.data.datasets import PairedImages
    from dictsr_core.evaluation.evaluate import evaluate_pairs
    from dictsr_core.inference.tiled import super_resolve
    from dictsr_core.performance.cost import model_cost
    from dictsr_core.training.checkpoint import inference_model, load_checkpoint, tensor_checksum, weights_used
    from dictsr_core.training.devices import pick_device

    run_dir = Path(run_dir)
    ckpt = checkpoint_path(run_dir)
    device = pick_device(device) if not isinstance(device, torch.device) else device
    payload = load_checkpoint(ckpt) if payload is None else payload
    cfg = payload["config"]
    method = getattr(cfg, "method", "dictsr")
    model = inference_model(payload, device, source=str(ckpt), weights=weights)
    amp = device.type == "cuda"
    pairs = PairedImages(*_validation_dirs(data_dir, split))
    evaluation = evaluate_pairs(pairs, lambda lr: super_resolve(model, lr, tile=tile, device=device, amp=amp),
                                device=device, progress=progress, desc=run_dir.name)
    is_dictsr = method == "dictsr"
    if is_dictsr:
        _add_index_agreement(evaluation, model, pairs, data_dir, device=device, tile=tile, amp=amp)
    cost = model_cost(cfg)
    return _record(
        run=run_dir.name, run_dir=run_dir, method=method, data_dir=data_dir, eval_device=device, evaluation=evaluation,
        preset=cfg.preset, ablation=cfg.ablation, steps=int(payload["step"]), total_steps=cfg.train.total_steps,
        train_wall_s=payload.get("train_wall_s"), device=payload.get("device"), weights=weights_used(payload, weights),
        config=cfg.to_dict(),
        cost={key: cost.get(key) for key in COST_KEYS},
        activated_entries=validation_activated_entries(model, pairs, tile=tile, device=device, amp=amp) if is_dictsr else None,
        entries=cfg.model.entries if is_dictsr else None,
        codebook=validation_codebook_health(model, pairs, device=device) if is_dictsr else None,
        checkpoint_checksum=tensor_checksum(payload), **_split_fields(data_dir, split),
    )


def _add_index_agreement(evaluation: dict, model, pairs, data_dir, **kwargs) -> None:
    """Per-image and mean index agreement (clean vs degraded LR, two degradation draws) into an evaluation."""
    from dictsr_core.data.degradations import data_degradation
    from dictsr_core.evaluation.index_consistency import validation_agreement

    found = validation_agreement(model, pairs, degradation=data_degradation(data_dir), **kwargs)
    for row in evaluation["images"]:
        row.update(found["images"][row["name"]])
    evaluation["summary"].update(found["summary"])


def bicubic_record(data_dir, device=None, progress: bool = True, split: str = "val") -> dict:
    """The bicubic row: MATLAB-compatible bicubic x4 of DATA/<split>_lr scored against DATA/<split>_hr; no cost, no run."""
    from dictsr_core.data.datasets import PairedImages
    from dictsr_core.evaluation.evaluate import bicubic_upscale, evaluate_pairs
    from dictsr_core.training.devices import pick_device

    device = pick_device(device) if not isinstance(device, torch.device) else device
    pairs = PairedImages(*_validation_dirs(data_dir, split))
    evaluation = evaluate_pairs(pairs, bicubic_upscale, device=device, progress=progress, desc=BICUBIC_RUN)
    return _record(run=BICUBIC_RUN, run_dir=None, method="bicubic", data_dir=data_dir, eval_device=device,
                   evaluation=evaluation, **_split_fields(data_dir, split))


def pretrained_record(name: str, data_dir, device=None, progress: bool = True, split: str = "val",
                      tile: int = 256, cache_dir=None) -> dict:
    """A pretrained peer's row (peers/pretrained.py): its published weights through super_resolve, scored like a
    run; cost at 128x128 LR from the RRDBNet it is; `trained_on` says its budget is not ours."""
    from dictsr_core.data.datasets import PairedImages
    from dictsr_core.evaluation.evaluate import evaluate_pairs
    from dictsr_core.inference.tiled import super_resolve
    from dictsr_core.peers.pretrained import load_pretrained, trained_on
    from dictsr_core.performance.cost import rrdbnet_cost
    from dictsr_core.training.devices import pick_device

    device = pick_device(device) if not isinstance(device, torch.device) else device
    model = load_pretrained(name, cache_dir).to(device)
    pairs = PairedImages(*_validation_dirs(data_dir, split))
    evaluation = evaluate_pairs(pairs, lambda lr: super_resolve(model, lr, tile=tile, device=device),
                                device=device, progress=progress, desc=name)
    cost = rrdbnet_cost()
    return _record(run=name, run_dir=None, method=name, data_dir=data_dir, eval_device=device, evaluation=evaluation,
                   cost={key: cost.get(key) for key in COST_KEYS}, trained_on=trained_on(name),
                   **_split_fields(data_dir, split))


def results_path(run: str, dataset: str, results_root="results") -> Path:
    return Path(results_root) / dataset / f"{run}.json"


def write_run_results(record: dict, results_root="results", dataset: str | None = None) -> Path:
    """Write RESULTS_ROOT/<dataset>/<run>.json atomically (standard JSON); `dataset` defaults to the record's."""
    return atomic_write_json(results_path(record["run"], dataset or record["dataset"], results_root), record)


def _reusable(path: Path, *, names: list[str], step: int | None, run_dir, train_wall_s=None,
              weights: str | None = None, checksum: str | None = None, derived: bool = False, split: str = "val",
              method: str | None = None) -> dict | None:
    """The stored record at `path` if it was made from the same checkpoint (its `checksum`, where the record has
    one; else step and training wall time, which a derived run shares with its source), run folder, weights and
    images."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        stored_names = [row["name"] for row in record["evaluation"]["images"]]
        same_run = (record["run_dir"] is None and run_dir is None) or (
            record["run_dir"] is not None and run_dir is not None
            and Path(record["run_dir"]).resolve() == Path(run_dir).resolve())
        missing = [key for key in RECORD_KEYS if key not in record]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if missing or not same_run or record["steps"] != step or stored_names != names or record["weights"] != weights:
        return None
    if record.get("split", "val") != split or "ssim_rgb_gauss" not in record["evaluation"]["summary"]:
        return None  # another split, or scored before SSIM followed Measure.py (its ssim_rgb was the Gaussian one)
    if method is not None and record.get("method") != method:
        return None
    if run_dir is not None and record.get("train_wall_s") != train_wall_s:
        return None
    if run_dir is not None and record.get("checkpoint_checksum", checksum) != checksum:
        return None
    if run_dir is not None and "checkpoint_checksum" not in record and derived:
        return None
    if "photos" not in record["evaluation"]["summary"]:  # a record written before the summary counted them
        from dictsr_core.evaluation.evaluate import photo_count

        record["evaluation"]["summary"]["photos"] = photo_count(record["evaluation"]["images"])
    return record


def stored_record(run_dir, data_dir, *, results_root="results", weights: str = "auto", names=None,
                  payload=None, split: str = "val", method: str | None = None) -> dict | None:
    """The stored result record of a run folder (None: bicubic) on DATA_DIR's validation images, where it was made
    from the checkpoint now in the folder (_reusable), the same weights and the same images; else None (it must be
    evaluated). `names` and `payload` (the loaded checkpoint), where the caller has them."""
    from dictsr_core.training.checkpoint import load_checkpoint, tensor_checksum, weights_used

    names = validation_names(data_dir, split) if names is None else names
    dataset = dataset_name(data_dir)
    if run_dir is None:  # bicubic, or a pretrained peer named by `method`
        return _reusable(results_path(method or BICUBIC_RUN, dataset, results_root), names=names, step=None,
                         run_dir=None, split=split, method=method or "bicubic")
    run_dir = Path(run_dir)
    if payload is None:
        if not (run_dir / CHECKPOINT).is_file():
            return None
        payload = load_checkpoint(run_dir / CHECKPOINT)
    return _reusable(results_path(run_dir.name, dataset, results_root), names=names, step=int(payload["step"]),
                     run_dir=run_dir, train_wall_s=payload.get("train_wall_s"),
                     weights=weights_used(payload, weights, str(run_dir)),
                     checksum=tensor_checksum(payload),
                     derived="derived_from" in payload, split=split)


def collect_records(run_dirs, data_dir, *, results_root="results", device=None, tile: int = 256, force: bool = False,
                    progress: bool = True, log: Callable[[str], None] = print, weights: str = "auto",
                    split: str = "val", methods=()) -> list[dict]:
    """Bicubic first, then each pretrained peer of `methods` (peers/pretrained.py), then one record per run; each
    reused from its results JSON when still valid, else evaluated and written there. Every run folder is checked
    before anything is evaluated. `weights` as in evaluate_run; `split`: "val" or "test" (DATA/<split>_lr, _hr)."""
    from dictsr_core.training.checkpoint import load_checkpoint, weights_used
    from dictsr_core.training.devices import pick_device

    run_dirs = [Path(run) for run in run_dirs]
    seen: dict[str, Path] = {}
    for run_dir in run_dirs:
        checkpoint_path(run_dir)
        if run_dir.name == BICUBIC_RUN:
            raise ResultsError(f"{run_dir}: a run folder may not be called {BICUBIC_RUN!r} (that name is the bicubic row)")
        if run_dir.name in seen:
            raise ResultsError(f"{seen[run_dir.name]} and {run_dir}: two runs named {run_dir.name!r} would share "
                               f"one results file; give the run folders different names")
        seen[run_dir.name] = run_dir
    unknown = [name for name in methods if name not in PRETRAINED_METHODS]
    if unknown:
        raise ResultsError(f"unknown method(s) {unknown}: choose among {', '.join(PRETRAINED_METHODS)}")
    clash = sorted(set(methods) & set(seen))
    if clash:
        raise ResultsError(f"run folder(s) {clash} share a name with a pretrained method; rename them")
    names = validation_names(data_dir, split)
    dataset = dataset_name(data_dir)
    device = pick_device(device) if not isinstance(device, torch.device) else device

    def obtain(run: str, run_dir: Path | None, evaluate: Callable[[], dict], made_from: str, payload=None,
               method: str | None = None) -> dict:
        record = None if force else stored_record(run_dir, data_dir, results_root=results_root, weights=weights,
                                                  names=names, payload=payload, split=split, method=method)
        if record is not None:
            log(f"[table] {run}: reusing {results_path(run, dataset, results_root)} ({made_from}; --force re-evaluates)")
            return record
        log(f"[table] {run}: evaluating on {len(names)} {split} pairs of {dataset} ({device})")
        record = evaluate()
        write_run_results(record, results_root, dataset)
        return record

    records = [obtain(BICUBIC_RUN, None, lambda: bicubic_record(data_dir, device, progress, split), f"same {split} images")]
    for name in methods:
        records.append(obtain(name, None, lambda name=name: pretrained_record(name, data_dir, device, progress, split,
                                                                             tile), f"same {split} images", method=name))
    for run_dir in run_dirs:
        payload = load_checkpoint(run_dir / CHECKPOINT)
        made_from = f"checkpoint step {payload['step']}, {weights_used(payload, weights, str(run_dir))} weights, same {split} images"
        records.append(obtain(run_dir.name, run_dir,
                              lambda run_dir=run_dir, payload=payload: evaluate_run(run_dir, data_dir, device, tile,
                                                                                    progress, weights, payload, split),
                              made_from, payload))
    for record in records[1:]:
        if record["total_steps"] is not None and record["steps"] < record["total_steps"]:
            log(f"[table] note: {record['run']} stopped at step {record['steps']} of {record['total_steps']}")
    for record in attach_comparisons(records):
        write_run_results(record, results_root, dataset)
    return records


def attach_comparisons(records: list[dict]) -> list[dict]:
    """Set each record's `comparison` from the records collected together (RECORD_KEYS' note); the records whose
    comparison changed (reused records keep their file untouched when it did not: the bootstrap is seeded)."""
    from dictsr_core.atomic import json_safe
    from dictsr_core.evaluation.comparison import ComparisonError, compare_records

    references = {method: next((r for r in records if r["method"] == method), None) for method in REFERENCE_METHODS}
    changed = []
    for record in records:
        comparison = None
        if record["method"] != "bicubic":
            comparison = {}
            try:
                for method, reference in references.items():
                    if reference is not None and record["method"] != method:
                        comparison[method] = compare_records(record, reference)
            except ComparisonError as error:
                raise ResultsError(str(error)) from None
            comparison = json_safe(comparison)
        if record.get("comparison") != comparison:
            record["comparison"] = comparison
            changed.append(record)
    return changed
