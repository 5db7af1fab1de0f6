"""What `dictsr workbook` prints around its kernels: live progress from metrics.jsonl, the plan, the summary."""

import io
import json
import math
import time

import pytest
import yaml

from dictsr_core.workbook import estimate
from dictsr_core.workbook.progress import (MetricsTail, StageProgress, clock, headline_rows, plan_lines, progress_text,
                                           summary_lines)


def _run_dir(tmp_path, epochs=2, steps_per_epoch=50):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"epochs": epochs, "steps_per_epoch": steps_per_epoch}}))
    return run


def _log(run, step, wall, **extra):
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": step, "wall_s": wall, "total": 0.5 / step, "l1_hr": 0.01, "it_s": 9.0, **extra}) + "\n")


def test_clock_formats_minutes_and_hours():
    assert clock(0) == "0:00" and clock(75) == "1:15" and clock(3725) == "1:02:05" and clock(-3) == "0:00"


def test_tail_reads_only_new_complete_lines_and_the_rate_from_them(tmp_path):
    run = _run_dir(tmp_path)
    tail = MetricsTail(run)
    assert not tail.poll() and tail.last is None  # no file yet
    _log(run, 10, 2.0)
    _log(run, 20, 4.0)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 30, "wall_s"')  # a line being written: not read until it ends
    assert tail.poll() and tail.last["step"] == 20
    assert tail.rate() == pytest.approx(5.0)  # 10 steps in 2 s, not the trainer's it_s of 9
    assert not tail.poll()
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(': 5.0, "total": 0.1}\n')
    assert tail.poll() and tail.last["step"] == 30 and tail.rate() == pytest.approx(20 / 3.0)


def test_tail_starts_over_when_the_log_is_replaced(tmp_path):
    run = _run_dir(tmp_path)
    tail = MetricsTail(run)
    for step in (10, 20, 30):
        _log(run, step, step / 10)
    tail.poll()
    (run / "metrics.jsonl").unlink()  # a retrain removes the run folder
    _log(run, 5, 1.0)
    assert tail.poll() and tail.last["step"] == 5
    assert tail.rate() == 9.0  # one line: the trainer's own it/s, not a rate across the two files


def test_progress_text_has_step_loss_rate_and_eta(tmp_path):
    run = _run_dir(tmp_path)
    tail = MetricsTail(run)
    _log(run, 10, 2.0)
    _log(run, 20, 4.0)
    tail.poll()
    text = progress_text(tail, 100)
    assert text.startswith("step 20/100 (20%)")
    assert "loss 0.0250" in text and "L1 0.0100" in text and "5.00 it/s" in text
    assert "ETA 0:16" in text  # 80 steps at 5 it/s


def test_the_eta_counts_the_slower_perceptual_phase_still_ahead(tmp_path):
    # the fresh-clone case of the issue: at 92 % of the steps, the last 600 of 7800 with the LPIPS term at 10x the
    # plain step time; the L1 rate alone said 0:58
    run = _run_dir(tmp_path, epochs=1, steps_per_epoch=7800)
    tail = MetricsTail(run)
    _log(run, 7100, 710.0)
    _log(run, 7176, 717.6)  # 10 it/s in the plain phase
    tail.poll()
    assert "ETA 1:02" in progress_text(tail, 7800)  # no phases known: 624 steps at 10 it/s
    phase = (7200, 0.1, 1.0)  # perceptual from step 7200, measured 0.1 / 1.0 s per step
    assert "ETA 10:02" in progress_text(tail, 7800, phase)  # 24 plain steps (2.4 s) + 600 perceptual (600 s)
    for step in range(7260, 7421, 20):  # now in the perceptual phase, a window of lines at its own rate: 1 it/s
        _log(run, step, 1000.0 + step)
    tail.poll()
    assert "ETA 6:20" in progress_text(tail, 7800, phase)  # 380 steps at 1 it/s


def test_a_stage_that_scores_after_training_says_so(tmp_path):
    run = _run_dir(tmp_path, epochs=1, steps_per_epoch=40)
    stream = io.StringIO()
    with StageProgress("04_ablations", [run], estimate_s=600, stream=stream, tty=False, every_s=0.0,
                       heartbeat_s=0.2, poll_s=0.05):
        _log(run, 20, 2.0)
        time.sleep(0.1)
        assert "training done" not in stream.getvalue()  # half-way: no
        _log(run, 40, 4.0)
        time.sleep(0.6)
    out = stream.getvalue()
    assert "04_ablations · run: step 40/40 (100%)" in out
    assert "[workbook] 04_ablations: training done; scoring and drawing, 0:0" in out
    assert "elapsed, about 10:00 expected in all" in out


def test_stage_progress_prints_plain_lines_for_a_log(tmp_path):
    run = _run_dir(tmp_path)
    _log(run, 10, 1.0)  # already there when the stage starts (a resumed run): not reported as news
    stream = io.StringIO()
    with StageProgress("02_train-dictsr", [run], stream=stream, tty=False, every_s=0.0, poll_s=0.05):
        time.sleep(0.2)
        assert stream.getvalue() == ""
        _log(run, 60, 6.0)
        time.sleep(0.3)
    _log(run, 100, 10.0)  # after the stage ended: not shown
    out = stream.getvalue()
    assert "[workbook] 02_train-dictsr · run: step 60/100 (60%)" in out
    assert "ETA 0:04" in out  # 40 steps at 10 it/s
    assert "step 100" not in out
    assert "\r" not in out and "\x1b" not in out


def test_stage_progress_follows_the_run_that_moves(tmp_path):
    runs = []
    for name in ("ablation-A1", "ablation-R1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump({"train": {"epochs": 1, "steps_per_epoch": 40}}))
        runs.append(tmp_path / name)
    stream = io.StringIO()
    with StageProgress("04_ablations", runs, stream=stream, tty=False, every_s=0.0, poll_s=0.05):
        _log(runs[0], 40, 4.0)
        time.sleep(0.25)
        _log(runs[1], 20, 2.0)
        time.sleep(0.25)
    out = stream.getvalue()
    assert "04_ablations · ablation-A1: step 40/40 (100%)" in out
    assert "04_ablations · ablation-R1: step 20/40 (50%)" in out


def test_stage_without_training_says_it_is_still_running(tmp_path):
    stream = io.StringIO()
    with StageProgress("03_evaluate", [], estimate_s=200, stream=stream, tty=False, heartbeat_s=0.1, poll_s=0.05):
        time.sleep(0.35)
    assert "[workbook] 03_evaluate: running, 0:00 elapsed, about 3:20 expected" in stream.getvalue()


def test_stage_progress_draws_a_tqdm_bar_on_a_terminal(tmp_path):
    run = _run_dir(tmp_path)
    stream = io.StringIO()
    with StageProgress("02_train-dictsr", [run], stream=stream, tty=True, poll_s=0.05):
        _log(run, 30, 3.0)
        time.sleep(0.3)
    out = stream.getvalue()
    assert "02_train-dictsr · run:" in out and "30/100" in out and "\r" in out


def test_plan_lines_total_skips_reused_stages():
    rows = [{"stage": "01_data", "reused": True, "seconds": 0.0, "what": "splits"},
            {"stage": "02_train-dictsr", "reused": False, "seconds": 600.0, "what": "train dictsr: 6000 steps"},
            {"stage": "03_evaluate", "reused": False, "seconds": 180.0, "what": "Table 1"}]
    lines = plan_lines(rows, "measured")
    assert lines[0] == "[workbook] plan:"
    assert "reused" in lines[1] and "~10.0 min" in lines[2] and "train dictsr: 6000 steps" in lines[2]
    assert lines[-1].split()[1:4] == ["total", "~13", "min"]


def test_summary_shows_the_computed_rows_and_where_things_are(tmp_path):
    table = tmp_path / "table1.csv"
    table.write_text("method,run,LPIPS-Alex,PSNR (RGB),ΔPSNR vs bicubic [95% CI]\n"
                     "Bicubic,,0.56587,27.9740,\n"
                     "Real-ESRGAN,,,,\n"
                     "DictSR,dictsr,0.49251,28.1301,\"0.1612345 [0.04, 0.2871]\"\n"
                     "DictSR,dictsr-l1,0.6,28.2,\"0.2 [0.1, 0.3]\"\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"")
    assert headline_rows(table) == [["method", "PSNR (RGB)", "LPIPS-Alex", "ΔPSNR vs bicubic [95% CI]"],
                                    ["Bicubic", "27.97", "0.5659", "-"], ["DictSR", "28.13", "0.4925", "+0.16 [+0.04, +0.29]"],
                                    ["DictSR (dictsr-l1)", "28.20", "0.6000", "+0.20 [+0.10, +0.30]"]]
    lines = summary_lines(table_csv=table, report=tmp_path / "report.md", figure_dir=tmp_path / "figures",
                          notebook_dir=tmp_path / "notebooks", data_dir=tmp_path / "photos-aim", seconds=4000)
    text = "\n".join(lines)
    assert "done in 1:06:40 on photos-aim" in text and "Real-ESRGAN" not in text
    assert "report.md" in text and "(1 PNG" in text and "make lab" in text


def test_phase_steps_split_at_the_perceptual_start():
    from dictsr_core.config import get_config

    cfg = get_config("tiny", overrides={"train.perceptual_weight": 1.0, "train.perceptual_from": 0.5})
    total = cfg.train.total_steps
    assert estimate.phase_steps(cfg, 0) == (total // 2, total - total // 2)
    assert estimate.phase_steps(cfg, total - 1) == (0, 1)
    assert estimate.phase_steps(get_config("tiny"), 3) == (total - 3, 0)


def test_the_plan_counts_the_coarse_derivations_a_training_stage_makes(tmp_path):
    from dictsr_core.workbook.plan import plan
    from dictsr_core.workbook.profiles import context

    ctx = context("cpu-full", data_dir="data/photos-aim", run_root=tmp_path / "fresh", device="cpu")
    stages = {stage.key: stage for stage in plan(ctx)}
    dictsr, paired = stages["02_train-dictsr"].parameters, stages["02_train-paired-bicubic"].parameters
    both = estimate.DERIVE_S["coarse_run"] + estimate.DERIVE_S["split_run"]
    assert dictsr["coarse_lookup_blurs"] == [0.0, 0.5]  # each derivation is made once per blur tried
    gated = estimate.GATE_CANDIDATE_S * 8 * 3 * 4  # the gated code: 8 draws x 3 blurs x 4 gates scored
    assert estimate.derivation_seconds(dictsr) == pytest.approx(2 * both + gated) and gated > 0
    assert estimate.derivation_seconds({**dictsr, "coarse_lookup_blurs": None}) == pytest.approx(both + gated)
    assert estimate.derivation_seconds(paired) == 0.0  # a paired baseline has no code to coarsen
    assert estimate.derivation_seconds({**dictsr, "split_run": None, "gated_run": None}) == (
        2 * estimate.DERIVE_S["coarse_run"])


def test_step_time_is_measured_by_real_training_and_reused_per_kind(tiny_data, tmp_path):
    from dictsr_core.config import get_config

    said = []
    clock_ = estimate.StepClock(tiny_data, "cpu", steps=12, say=said.append)
    cfg = get_config("tiny")
    seconds = clock_(cfg, perceptual=False)
    assert math.isfinite(seconds) and 0 < seconds < 30
    assert clock_(get_config("tiny", ablation="A1"), perceptual=False) == seconds  # same kind: measured once
    assert len(said) == 1 and "dictsr" in said[0]
    run = tmp_path / "run"
    assert estimate.steps_done(run, cfg) == 0
    assert estimate.training_seconds([(run, cfg)], clock_) == pytest.approx(cfg.train.total_steps * seconds)


def test_a_run_with_the_perceptual_term_on_every_step_is_measured_over_as_many_steps_as_plain_ones(monkeypatch):
    from dictsr_core.config import get_config

    measured = []
    monkeypatch.setattr(estimate, "measure_step_seconds", lambda cfg, data, device, steps: measured.append(steps) or 0.1)
    clock_ = estimate.StepClock("data", "cpu", steps=150, perceptual_steps=24, say=lambda line: None)
    clock_(get_config("cpu"), perceptual=True)  # the recipe: LPIPS on its last steps only
    clock_(get_config("paper-cpu"), perceptual=True)  # the paper's: LPIPS on every step, the whole run's cost
    assert measured == [24, 150]


def test_steps_done_reads_a_baseline_config_written_before_it_was_trimmed(tmp_path):
    import yaml

    from dictsr_core.config import get_config

    cfg = get_config("cpu", method="paired-bicubic")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    older = cfg.to_dict()
    older["model"].update(entries=8, offsets=8, dim=4)  # what config.yaml held before the trimming
    (run / "config.yaml").write_text(yaml.safe_dump(older, sort_keys=False))
    (run / "metrics.jsonl").write_text('{"step": 25}\n{"step": 50}\n')
    assert estimate.steps_done(run, cfg) == 50
    assert estimate.steps_done(run, get_config("cpu", overrides={"model.lr_width": 16}, method="paired-bicubic")) == 0
