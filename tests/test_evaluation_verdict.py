"""`dictsr verdict`: the README's verdict from test records with known answers (ahead, behind, level; flat and
textured photos; missing records named), and bad folders refused by name."""

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from dictsr_core.cli import main
from dictsr_core.evaluation.verdict import VerdictError, load_test_records, standing, verdict_markdown

# 8 photos, 3 crops each; photos 0-3 flat (flat_fraction 0.8), 4-7 textured (0.1)
NAMES = [f"p{p}__c{c}" for p in range(8) for c in range(3)]
FLAT = np.array([0.8 if int(n[1]) < 4 else 0.1 for n in NAMES])


def _record(run, alex, vgg, *, psnr=27.0, hf=0.1, wall_s=None, trained_on=None, split="test"):
    rows = [{"name": n, "lpips_alex": float(a), "lpips_vgg": float(v), "flat_fraction": float(f)}
            for n, a, v, f in zip(NAMES, alex, vgg, FLAT)]
    return {"run": run, "split": split, "config": {"train": {"seed": 0}}, "train_wall_s": wall_s,
            "trained_on": trained_on,
            "evaluation": {"images": rows, "summary": {"count": len(rows), "psnr_rgb": psnr, "hf_energy_ratio": hf,
                                                       "lpips_alex": float(np.mean(alex)),
                                                       "lpips_vgg": float(np.mean(vgg))}}}


def _dataset(folder, records, model="dictsr-c8g"):
    folder.mkdir(parents=True)
    for record in records:
        (folder / f"{record['run']}.json").write_text(json.dumps(record))
    (folder / "model.txt").write_text(model + "\n")
    return folder


def _known(tmp_path):
    n = len(NAMES)
    noise = np.random.default_rng(0).normal(0, 0.05, n)
    records = [
        _record("dictsr-c8g", np.full(n, 0.40), np.full(n, 0.50), psnr=27.5, hf=0.06, wall_s=1590.0),
        _record("bicubic", np.full(n, 0.55), np.full(n, 0.52), psnr=27.25, hf=0.05),
        # ahead of this peer on textured photos only; level in LPIPS-VGG (a spread around the same mean)
        _record("plain-realesrgan-deg", np.where(FLAT > 0.5, 0.40, 0.50), 0.50 + noise - noise.mean(),
                wall_s=1620.0),
        _record("realesrgan-x4plus", np.full(n, 0.28), np.full(n, 0.40), hf=0.97, trained_on="DF2K, GPUs"),
    ]
    return _dataset(tmp_path / "results" / "photos-aim", records)


def test_standing_reads_the_interval_not_the_mean():
    assert standing({"mean_diff": -0.01, "ci_low": -0.02, "ci_high": -0.001}) == "ahead"
    assert standing({"mean_diff": 0.01, "ci_low": 0.001, "ci_high": 0.02}) == "behind"
    assert standing({"mean_diff": -0.05, "ci_low": -0.09, "ci_high": 0.01}) == "level"
    assert standing({"mean_diff": -0.05, "ci_low": float("nan"), "ci_high": float("nan")}) == "level"
    assert standing(None) == "n/a"


def test_the_verdict_says_ahead_behind_and_level_with_flat_and_textured_photos(tmp_path):
    _known(tmp_path)
    text = verdict_markdown(tmp_path / "results")
    assert "24 test crops of 8 photos" in text and "`dictsr-c8g`, the model `dictsr sr` uses, 26.5 min" in text
    assert "training seed 0" in text
    assert ("DictSR is ahead of `plain-realesrgan-deg` in LPIPS-Alex; level with `plain-realesrgan-deg` in "
            "LPIPS-VGG") in text
    assert "Not scored yet: `plain-noise-injection`" in text
    assert "**Does DictSR win at equal budget? Not shown**: it is level with a peer" in text  # level in LPIPS-VGG
    assert "against `plain-realesrgan-deg`: level on flat photos, ahead on textured photos" in text
    assert "Real-ESRGAN x4plus (published): behind in LPIPS-Alex, behind in LPIPS-VGG" in text
    assert "RGB PSNR 27.50 dB (bicubic 27.25)" in text and "6% of the HR's high-frequency energy" in text
    assert "Records still missing: `paired-bicubic`, `oracle`, `plain-noise-injection`, `realsr-df2k`" in text
    row = next(line for line in text.splitlines() if line.startswith("| plain-realesrgan-deg"))
    cells = [cell.strip() for cell in row.split("|")[2:-1]]
    assert cells[0].startswith("-0.050 [") and cells[0].endswith("**ahead**")  # half the photos 0.1 ahead
    assert cells[1].endswith("**level**")
    assert "+0.000 [+0.000, +0.000] **level**" in row and "-0.100 [-0.100, -0.100] **ahead**" in row  # flat, textured
    assert row.endswith("27.0 min (+2%) |")
    assert "**`photos-ntire`**: no test records yet." in text


def test_without_an_equal_budget_peer_there_is_no_equal_budget_verdict(tmp_path):
    n = len(NAMES)
    _dataset(tmp_path / "results" / "photos-aim", [_record("dictsr-c8g", np.full(n, 0.4), np.full(n, 0.5)),
                                                  _record("bicubic", np.full(n, 0.5), np.full(n, 0.5))])
    text = verdict_markdown(tmp_path / "results", datasets=("photos-aim",))
    assert "no equal-budget peer is scored yet, so there is no verdict" in text and "ahead of" not in text


@pytest.mark.parametrize("damage,message", [("model", "model.txt"), ("json", "plain-realesrgan-deg.json"),
                                            ("val", "'val' record"), ("name", "names 'dictsr-c9'")])
def test_bad_folders_are_refused_by_name(tmp_path, damage, message):
    folder = _known(tmp_path)
    if damage == "model":
        (folder / "model.txt").unlink()
    elif damage == "json":
        (folder / "plain-realesrgan-deg.json").write_text("{\"run\": ")
    elif damage == "val":
        record = json.loads((folder / "bicubic.json").read_text())
        (folder / "bicubic.json").write_text(json.dumps({**record, "split": "val"}))
    else:
        (folder / "model.txt").write_text("dictsr-c9\n")
    with pytest.raises(VerdictError, match=message):
        load_test_records(folder)


def test_the_command_rewrites_only_the_readme_block(tmp_path):
    _known(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# top\n\n<!-- dictsr verdict: start -->\nold words\n<!-- dictsr verdict: end -->\n\n## after\n")
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["verdict", "--results", str(tmp_path / "results"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old words" not in text and text.startswith("# top\n") and text.rstrip().endswith("## after")
    assert "**Does DictSR win at equal budget? Not shown**" in text and "RGB PSNR" not in text  # the README's lines
    # the dataset and the answer on one line, then three bullets: at most ten lines with the figure
    assert "**`photos-aim`** (24 test crops of 8 photos; ours is" in text and ". **Does DictSR win at equal budget?" in text
    assert "**At equal budget**" not in text  # the answer line says it; the full sentence stays in verdict.md
    block = text.split("<!-- dictsr verdict: start -->")[1].split("<!-- dictsr verdict: end -->")[0]
    assert len([line for line in block.splitlines() if line.strip()]) <= 10
    full = (tmp_path / "results" / "verdict.md").read_text()
    assert "**At equal budget**" in full
    assert "RGB PSNR 27.50" in full and "| plain-realesrgan-deg (equal budget) |" in full  # the numbers they rest on
    # one figure, beside the tables, linked from the README block relative to the README
    assert "![The test split's LPIPS per method](results/verdict.png)" in text
    from PIL import Image

    assert Image.open(tmp_path / "results" / "verdict.png").size[0] > 1000
    (tmp_path / "results" / "photos-aim" / "model.txt").unlink()
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["verdict", "--results", str(tmp_path / "results")]) == 2
    assert "model.txt" in err.getvalue()


@pytest.mark.parametrize("peer_alex, peer_vgg, answer", [
    (0.45, 0.55, "**Does DictSR win at equal budget? Yes**: ahead of every equal-budget peer"),
    (0.35, 0.55, "**Does DictSR win at equal budget? No**: `plain-noise-injection` is ahead of it in LPIPS-Alex "
                 "(+0.050 [+0.050, +0.050])."),
    (0.35, 0.45, "**Does DictSR win at equal budget? No**: `plain-noise-injection` is ahead of it in LPIPS-Alex "
                 "(+0.050 [+0.050, +0.050]) and LPIPS-VGG (+0.050 [+0.050, +0.050])."),
])
def test_the_equal_budget_question_gets_a_plain_answer(tmp_path, peer_alex, peer_vgg, answer):
    # one peer always behind DictSR; the other ahead, behind or mixed: "no" as soon as any peer leads in any measure
    n = len(NAMES)
    spread = np.random.default_rng(1).normal(0, 0.01, n)
    _dataset(tmp_path / "results" / "photos-aim", [
        _record("dictsr-c8g", np.full(n, 0.40) + spread, np.full(n, 0.50) + spread),
        _record("plain-realesrgan-deg", np.full(n, 0.50), np.full(n, 0.60)),
        _record("plain-noise-injection", np.full(n, peer_alex) + spread, np.full(n, peer_vgg) + spread)])
    assert answer in verdict_markdown(tmp_path / "results", datasets=("photos-aim",))


def test_the_figure_shows_every_scored_method_and_marks_the_model(tmp_path):
    from dictsr_core.analysis.figures.results import verdict_figure

    _known(tmp_path)
    assert verdict_figure(tmp_path / "nothing") is None
    figure = verdict_figure(tmp_path / "results")
    alex, vgg = figure.axes
    labels = [tick.get_text() for tick in alex.get_xticklabels()]
    assert labels == ["bicubic", "plain +\nReal-ESRGAN deg.", "Real-ESRGAN\n(published)", "dictsr-c8g\n(dictsr sr)"]
    heights = [patch.get_height() for patch in alex.patches]
    assert heights == pytest.approx([0.55, 0.45, 0.28, 0.40])  # each method's mean LPIPS-Alex, in the order shown
    assert alex.patches[-1].get_linewidth() == 2.0 and alex.patches[0].get_linewidth() == 0.5


def test_the_papers_method_gets_its_line(tmp_path):
    n = len(NAMES)
    folder = _known(tmp_path)
    paper = _record("paper-cpu", np.full(n, 0.75), np.full(n, 0.72), psnr=11.2, wall_s=1600.0)
    (folder / "paper-cpu.json").write_text(json.dumps(paper))
    text = verdict_markdown(tmp_path / "results", datasets=("photos-aim",), detail=False)
    assert ("- **The paper's method** at this budget (`paper-cpu`, 26.7 min): LPIPS-Alex 0.750, RGB PSNR 11.20 dB; "
            "DictSR is ahead of it in LPIPS-Alex (-0.350 [-0.350, -0.350]).") in text


def test_the_readme_verdict_and_verdict_md_regenerate_byte_identically_from_the_committed_records(tmp_path):
    """The README's block and results/test/verdict.md are made by `dictsr verdict` from results/test/: run on a copy
    of the committed records, it writes them again exactly (nothing in them was typed by hand or left stale)."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "results" / "test", tmp_path / "results" / "test")
    readme = tmp_path / "README.md"
    shutil.copyfile(root / "README.md", readme)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["verdict", "--results", str(tmp_path / "results" / "test"), "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == (root / "README.md").read_text(encoding="utf-8")
    assert ((tmp_path / "results" / "test" / "verdict.md").read_text(encoding="utf-8")
            == (root / "results" / "test" / "verdict.md").read_text(encoding="utf-8"))


def test_the_test_targets_regenerate_byte_identically_from_the_committed_records(tmp_path):
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "results" / "test", tmp_path / "test")
    out = tmp_path / "targets"
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["targets", "--results", str(tmp_path / "test" / "photos-aim"), "--results",
                     str(tmp_path / "test" / "photos-ntire"), "--run", "dictsr-c8g", "dictsr", "paper-cpu",
                     "--out", str(out)]) == 0
    name = "dictsr-c8g_dictsr_paper-cpu.md"
    made = (out / name).read_text(encoding="utf-8").replace(str(tmp_path / "test"), "results/test")
    assert made == (root / "results" / "test" / "targets" / name).read_text(encoding="utf-8")
