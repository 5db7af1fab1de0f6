"""The README's verdict, in words and one small table per dataset, generated from the test records
(`results/test/<dataset>/*.json`, docs/evaluation.md): whether DictSR wins at equal budget in LPIPS-Alex and in
LPIPS-VGG, where it stands against the published peers, and on which kinds of photos. Nothing here is typed by
hand, so the README cannot say more than the records do; a record not scored yet is named as missing."""

from __future__ import annotations

from pathlib import Path

from dictsr_core.evaluation.comparison import compare_records, photo_label
from dictsr_core.evaluation.tables import FLAT_PHOTO  # a photo whose crops' HR is at least half flat 8x8 blocks
from dictsr_core.peers.names import EQUAL_BUDGET_METHODS, PRETRAINED_METHODS

# the records the peers issue names, in the order the verdict reads them (docs/evaluation.md, rule 1)
EXPECTED = ("bicubic", "paired-bicubic", "oracle", *EQUAL_BUDGET_METHODS, *PRETRAINED_METHODS, "dictsr", "paper-cpu")
LABELS = {"realesrgan-x4plus": "Real-ESRGAN x4plus (published)", "realsr-df2k": "RealSR DF2K (published)",
          "bicubic": "bicubic", "paired-bicubic": "paired-bicubic", "oracle": "oracle (true degradation pairs)",
          "paper-cpu": "the paper's method (paper-cpu)", "dictsr": "dictsr (the 1024-entry code as trained)"}


class VerdictError(ValueError):
    """Test records that cannot make a verdict; the message names the file or folder."""


def load_test_records(dataset_dir) -> tuple[dict[str, dict], str]:
    """({run: record} of a dataset's test records, the model `dictsr sr` uses from model.txt)."""
    dataset_dir = Path(dataset_dir)
    try:
        model = (dataset_dir / "model.txt").read_text(encoding="utf-8").strip()
    except OSError as error:
        raise VerdictError(f"{dataset_dir / 'model.txt'}: cannot read the model's name ({error.strerror})") from None
    from dictsr_core.evaluation.results import read_record

    records = {}
    for path in sorted(dataset_dir.glob("*.json")):
        record = read_record(path, VerdictError)
        if record.get("split") != "test":
            raise VerdictError(f"{path}: a {record.get('split', 'val')!r} record among the test records")
        records[record.get("run") or path.stem] = record
    if model not in records:
        raise VerdictError(f"{dataset_dir}: model.txt names {model!r}, which has no record there")
    return records, model


def _subset(record: dict, names: set[str]) -> dict:
    return {**record, "evaluation": {**record["evaluation"],
                                     "images": [r for r in record["evaluation"]["images"] if r["name"] in names]}}


def photo_groups(record: dict) -> dict[str, set[str]]:
    """{"flat": crop names, "textured": crop names}: a photo is flat when its crops' mean flat_fraction is at least
    FLAT_PHOTO (fixed from the HR alone, docs/evaluation.md rule 8)."""
    by_photo: dict[str, list[dict]] = {}
    for row in record["evaluation"]["images"]:
        by_photo.setdefault(photo_label(row), []).append(row)
    groups = {"flat": set(), "textured": set()}
    for rows in by_photo.values():
        fractions = [r["flat_fraction"] for r in rows if r.get("flat_fraction") is not None]
        flat = bool(fractions) and sum(fractions) / len(fractions) >= FLAT_PHOTO
        groups["flat" if flat else "textured"].update(r["name"] for r in rows)
    return groups


def standing(found: dict | None) -> str:
    """ahead (interval under 0: lower LPIPS), behind (over 0) or level (spans 0, or no interval)."""
    if not found:
        return "n/a"
    low, high = found.get("ci_low"), found.get("ci_high")
    if low is None or high is None or low != low or high != high:
        return "level"
    return "ahead" if high < 0 else "behind" if low > 0 else "level"


def _relation(word: str) -> str:
    return {"ahead": "ahead of", "behind": "behind", "level": "level with"}.get(word, f"{word} against")


def _delta(found: dict | None) -> str:
    if not found or found.get("mean_diff") is None:
        return "n/a"
    return (f"{found['mean_diff']:+.3f} [{found['ci_low']:+.3f}, {found['ci_high']:+.3f}] "
            f"**{standing(found)}**")


def compare(model: dict, other: dict) -> dict:
    """The model's paired differences to `other` (LPIPS-Alex and LPIPS-VGG; lower is better): all photos, flat
    photos and textured photos, each with its 95 % interval resampling photos."""
    out = {"all": compare_records(model, other, ("lpips_alex", "lpips_vgg"))}
    for kind, names in photo_groups(model).items():
        if len({photo_label(r) for r in model["evaluation"]["images"] if r["name"] in names}) >= 2:
            out[kind] = compare_records(_subset(model, names), _subset(other, names), ("lpips_alex",))
    return out


def equal_budget_answer(said: dict, peers: list[str]) -> str:
    """The peers issue's question in one word: does DictSR win at equal budget? Yes only where it is ahead of every
    peer in both LPIPS; no where some peer is ahead of it in either; else not shown (level somewhere)."""
    metrics = (("lpips_alex", "LPIPS-Alex"), ("lpips_vgg", "LPIPS-VGG"))
    worse = []
    for p in peers:
        leads = [f"{name} ({_interval(said[p]['all'][m])})" for m, name in metrics
                 if standing(said[p]["all"].get(m)) == "behind"]
        if leads:
            worse.append(f"`{p}` is ahead of it in " + " and ".join(leads))
    if worse:
        return "**Does DictSR win at equal budget? No**: " + ", ".join(worse) + "."
    if all(standing(said[p]["all"].get(m)) == "ahead" for p in peers for m, _ in metrics):
        return "**Does DictSR win at equal budget? Yes**: ahead of every equal-budget peer in LPIPS-Alex and LPIPS-VGG."
    return "**Does DictSR win at equal budget? Not shown**: it is level with a peer in one measure at least."


def _interval(found: dict) -> str:
    """`+0.028 [+0.016, +0.038]`: DictSR minus the other method and its 95 % interval."""
    return f"{found['mean_diff']:+.3f} [{found['ci_low']:+.3f}, {found['ci_high']:+.3f}]"


def _minutes(record: dict) -> float | None:
    seconds = record.get("train_wall_s")
    return None if seconds is None else seconds / 60


def dataset_verdict(dataset: str, records: dict[str, dict], model: str, detail: bool = True) -> str:
    """Markdown for one dataset: a line per question of the peers issue, then (detail) fidelity and sharpness, the
    records still missing and the table the lines rest on."""
    ours = records[model]
    summary = ours["evaluation"]["summary"]
    photos = len({photo_label(row) for row in ours["evaluation"]["images"]})
    peers = [p for p in EQUAL_BUDGET_METHODS if p in records]
    rows, said = [], {}
    for run in [*peers, *[p for p in PRETRAINED_METHODS if p in records], "paper-cpu", "paired-bicubic", "oracle",
                "bicubic"]:
        if run not in records or run == model:
            continue
        found = compare(ours, records[run])
        said[run] = found
        budget = ""
        if run in EQUAL_BUDGET_METHODS or run in ("paired-bicubic", "oracle", "paper-cpu"):
            mine, theirs = _minutes(ours), _minutes(records[run])
            if mine and theirs:
                budget = f"{theirs:.1f} min ({theirs / mine - 1:+.0%})"
        elif records[run].get("trained_on"):
            budget = "GPU-days on DF2K: not our budget"
        rows.append(f"| {LABELS.get(run, run + ' (equal budget)')} | {_delta(found['all'].get('lpips_alex'))} | "
                    f"{_delta(found['all'].get('lpips_vgg'))} | {_delta(found.get('flat', {}).get('lpips_alex'))} | "
                    f"{_delta(found.get('textured', {}).get('lpips_alex'))} | {budget} |")
    seed = (ours.get("config") or {}).get("train", {}).get("seed")
    about = (f"{summary['count']} test crops of {photos} photos; ours is `{model}`, the model `dictsr sr` uses, "
             f"{(_minutes(ours) or 0):.1f} min of training on a 2-core CPU"
             + (f", training seed {seed}" if seed is not None else ""))
    if detail or not peers:
        lines = [f"**`{dataset}`**: {about}."]
        if peers:
            lines.append("- " + equal_budget_answer(said, peers))
    else:  # the README's: the dataset and the answer on one line
        lines = [f"**`{dataset}`** ({about}). {equal_budget_answer(said, peers)}"]
    if peers:
        words = [", ".join(_relation(standing(said[p]["all"].get(metric))) + f" `{p}`" for p in peers) + f" in {name}"
                 for metric, name in (("lpips_alex", "LPIPS-Alex"), ("lpips_vgg", "LPIPS-VGG"))]
        missing_peers = [p for p in EQUAL_BUDGET_METHODS if p not in records]
        if detail:  # the README's answer line says it already
            lines.append("- **At equal budget**, DictSR is " + "; ".join(words) + "."
                         + (f" Not scored yet: {', '.join(f'`{p}`' for p in missing_peers)}." if missing_peers else ""))
        kinds = [f"against `{p}`: " + ", ".join(f"{standing(said[p].get(kind, {}).get('lpips_alex'))} on {kind} photos"
                                                for kind in ("flat", "textured")) for p in peers]
        lines.append("- **Flat / textured photos** (LPIPS-Alex) " + "; ".join(kinds) + ".")
    else:
        lines.append("- **At equal budget**: no equal-budget peer is scored yet, so there is no verdict.")
    published = [p for p in PRETRAINED_METHODS if p in said]
    if published:
        lines.append("- **Against the published peers** (trained for GPU-days, not our budget): " + "; ".join(
            f"{LABELS[p]}: {standing(said[p]['all'].get('lpips_alex'))} in LPIPS-Alex, "
            f"{standing(said[p]['all'].get('lpips_vgg'))} in LPIPS-VGG" for p in published) + ".")
    if "paper-cpu" in said:
        paper = records["paper-cpu"]["evaluation"]["summary"]
        lines.append(f"- **The paper's method** at this budget (`paper-cpu`, {(_minutes(records['paper-cpu']) or 0):.1f} "
                     f"min): LPIPS-Alex {paper['lpips_alex']:.3f}, RGB PSNR {paper['psnr_rgb']:.2f} dB; DictSR is "
                     f"{_relation(standing(said['paper-cpu']['all'].get('lpips_alex')))} it in LPIPS-Alex "
                     f"({_interval(said['paper-cpu']['all']['lpips_alex'])}).")
    if not detail:
        return "\n".join(lines) + "\n"
    bicubic = records.get("bicubic", {}).get("evaluation", {}).get("summary", {})
    if bicubic.get("psnr_rgb") is not None and summary.get("psnr_rgb") is not None:
        sharp = [f"{LABELS.get(run, run)} {records[run]['evaluation']['summary']['hf_energy_ratio']:.0%}"
                 for run in ("bicubic", "realesrgan-x4plus")
                 if records.get(run, {}).get("evaluation", {}).get("summary", {}).get("hf_energy_ratio") is not None]
        lines.append(f"- **Fidelity, sharpness**: RGB PSNR {summary['psnr_rgb']:.2f} dB (bicubic "
                     f"{bicubic['psnr_rgb']:.2f}); the SR has {summary.get('hf_energy_ratio', float('nan')):.0%} of the "
                     "HR's high-frequency energy" + (f" ({', '.join(sharp)})" if sharp else "") + ".")
    absent = [run for run in EXPECTED if run not in records]
    if absent:
        lines.append("- Records still missing: " + ", ".join(f"`{run}`" for run in absent) + ".")
    table = ["", f"| `{model}` against | ΔLPIPS-Alex [95% CI] | ΔLPIPS-VGG [95% CI] | flat photos, ΔLPIPS-Alex | "
             "textured photos, ΔLPIPS-Alex | its training |", "|---|---|---|---|---|---|", *rows]
    return "\n".join(lines) + "\n" + "\n".join(table) + "\n"


def verdict_markdown(results_root, datasets=("photos-aim", "photos-ntire"), detail: bool = True) -> str:
    """The verdict of every dataset of `results_root` (results/test) that has records; a dataset without any is
    said to be missing. Without detail: the lines alone (the README's), the tables in results/test/verdict.md."""
    parts = ["Ahead / behind: DictSR's mean LPIPS difference to the other method over the test crops has a 95 % "
             "bootstrap interval (resampling photos) below / above 0; level: it spans 0. Generated by `dictsr verdict` "
             "from `results/test/` ([numbers](results/test/verdict.md), [rules](docs/evaluation.md)); do not edit."
             if not detail else
             "Δ: DictSR minus the other method, mean over the test crops (lower LPIPS is better), 95 % bootstrap "
             "interval resampling photos; **ahead** / **behind** where the interval excludes 0, **level** where it "
             "spans it. Generated by `dictsr verdict` from `results/test/` (docs/evaluation.md); do not edit.", ""]
    for dataset in datasets:
        folder = Path(results_root) / dataset
        if not folder.is_dir() or not any(folder.glob("*.json")):
            parts.append(f"**`{dataset}`**: no test records yet.\n")
            continue
        records, model = load_test_records(folder)
        parts.append(dataset_verdict(dataset, records, model, detail))
    return "\n".join(parts)
