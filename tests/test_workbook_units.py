"""The workbook's pieces without a full run: notebooks in git, stage reuse and failure, profiles, JupyterLab."""

import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from dictsr_core.workbook import PROFILES, WorkbookError, context
from dictsr_core.workbook.execute import KERNEL_NAME, execute_notebook, reusable
from dictsr_core.workbook.lab import lab_command
from dictsr_core.workbook.plan import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
LOGIC = (ast.FunctionDef, ast.ClassDef, ast.For, ast.While, ast.If, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp,
         ast.Lambda, ast.Try)
COMMON = ("profile", "data_dir", "run_root", "figure_dir", "device", "seed", "force")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_in_git_carry_no_outputs_and_no_logic(name):
    raw = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    ids = [cell.get("id") for cell in raw["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), f"{name}: every cell needs its own id (nbformat 4.5)"
    assert raw["cells"][0]["cell_type"] == "markdown" and "How long:" in "".join(raw["cells"][0]["source"]), (
        f"{name}: the first cell says what it shows and how long it takes")
    book = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs in git"
        tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith("%")))
        logic = [type(node).__name__ for node in ast.walk(tree) if isinstance(node, LOGIC)]
        assert not logic, f"{name}: logic in a notebook cell ({', '.join(logic)}); it belongs in dictsr_core"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], f"{name}: needs exactly one first cell tagged parameters"
    assigned = {line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line and not line.startswith("#")}
    assert set(COMMON) <= assigned
    assert "from dictsr_core.workbook import" in "".join(c.source for c in code)


def _tiny_root(tmp_path, source: str) -> Path:
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    book = new_notebook(cells=[new_code_cell("value = 1\nout = None"), new_code_cell(source)])
    book.cells[0].metadata["tags"] = ["parameters"]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, root / "notebooks" / "probe.ipynb")
    return root


def test_a_stage_is_reused_only_with_the_same_parameters_source_and_outputs(tmp_path):
    root = _tiny_root(tmp_path, "from pathlib import Path\nPath(out).write_text(str(value))")
    target, made = tmp_path / "runs" / "probe.ipynb", tmp_path / "made.txt"
    params = {"value": 3, "out": str(made)}
    first = execute_notebook("probe", target, params, root=root, outputs=[made])
    assert first["executed"] and made.read_text() == "3" and target.is_file()
    assert json.loads(target.with_name("probe.stamp.json").read_text())["parameters"] == params
    source = root / "notebooks" / "probe.ipynb"
    assert reusable(source, target, params, [made])
    assert not execute_notebook("probe", target, params, root=root, outputs=[made])["executed"]
    assert not reusable(source, target, {**params, "value": 4}, [made])  # other parameters
    made.unlink()
    assert not reusable(source, target, params, [made])  # an output is gone
    assert execute_notebook("probe", target, {**params, "force": True}, root=root, outputs=[made])["executed"]
    assert reusable(source, target, params, [made])  # `force` is not part of the identity
    book = nbformat.read(source, as_version=4)
    book.cells[1].source += "\n# edited"
    nbformat.write(book, source)
    assert not reusable(source, target, params, [made])  # the notebook changed


def test_a_stage_is_rerun_when_a_checkpoint_it_reads_is_replaced(tmp_path):
    import os

    root = _tiny_root(tmp_path, "from pathlib import Path\nPath(out).write_text(str(value))")
    target, made, read = tmp_path / "runs" / "probe.ipynb", tmp_path / "made.txt", tmp_path / "last.pt"
    read.write_bytes(b"weights of the first training")
    params = {"value": 3, "out": str(made)}
    assert execute_notebook("probe", target, params, root=root, outputs=[made], inputs=[read])["executed"]
    source = root / "notebooks" / "probe.ipynb"
    assert reusable(source, target, params, [made], inputs=[read])
    assert not execute_notebook("probe", target, params, root=root, outputs=[made], inputs=[read])["executed"]
    again = tmp_path / "last.pt.tmp"  # trained again to the same size and step: a new file put in place
    again.write_bytes(b"weights of the other training")
    os.utime(again, ns=(read.stat().st_atime_ns, read.stat().st_mtime_ns + 1_000_000))
    os.replace(again, read)
    assert not reusable(source, target, params, [made], inputs=[read])
    assert execute_notebook("probe", target, params, root=root, outputs=[made], inputs=[read])["executed"]
    read.unlink()
    assert not reusable(source, target, params, [made], inputs=[read])  # a checkpoint gone
    assert not reusable(source, target, params, [made])  # a stamp with inputs is not a stage without them


def test_the_plan_stamps_the_checkpoints_each_scoring_stage_reads(tmp_path):
    from dictsr_core.workbook.plan import plan

    ctx = context("smoke", data_dir=tmp_path / "data", run_root=tmp_path / "r", device="cpu")
    stages = {s.key: s for s in plan(ctx)}
    last = lambda run: ctx.run_dir(run) / "checkpoints" / "last.pt"  # noqa: E731
    data = ctx.data_dir / "manifest.json"  # a dataset made again (more validation pairs) is read anew
    assert stages["03_evaluate"].inputs == [last(run) for run in stages["03_evaluate"].parameters["runs"]] + [data]
    assert last("dictsr") in stages["04_ablations"].inputs and last("ablation-A1") in stages["04_ablations"].inputs
    assert stages["04_ablations"].inputs[-1] == data
    assert stages["05_dictionaries"].inputs == [last("dictsr"), data] == stages["07_explore"].inputs
    assert stages["06_qualitative"].inputs == [last(run) for run in stages["06_qualitative"].parameters["runs"]] + [data]
    assert stages["01_data"].inputs == [data] and stages["02_train-dictsr"].inputs == []


def test_a_stage_that_trains_is_rerun_when_its_training_config_changes(tmp_path):
    from dictsr_core.config import get_config
    from dictsr_core.workbook.plan import plan
    from dictsr_core.workbook.profiles import context
    from dictsr_core.workbook.runner import stage_configs

    root = _tiny_root(tmp_path, "from pathlib import Path\nPath(out).write_text(str(value))")
    target, made = tmp_path / "runs" / "probe.ipynb", tmp_path / "made.txt"
    params = {"value": 3, "out": str(made)}
    run = str(tmp_path / "runs" / "dictsr")
    configs = {run: get_config("cpu").to_dict()}
    assert execute_notebook("probe", target, params, root=root, outputs=[made], configs=configs)["executed"]
    source = root / "notebooks" / "probe.ipynb"
    assert reusable(source, target, params, [made], configs)  # as stored (JSON round trip of the config)
    changed = {run: get_config("cpu", overrides={"train.ema_sigma_rel": 0.1, "train.ema_track_sigma_rel": "0.05"}).to_dict()}
    assert not reusable(source, target, params, [made], changed)  # same parameters, another recipe in config.py
    assert not reusable(source, target, params, [made])  # a stamp with configs is not a stage without runs
    assert execute_notebook("probe", target, params, root=root, outputs=[made], configs=changed)["executed"]
    # the workbook's training stages carry the resolved configs of their runs
    stages = {s.key: s for s in plan(context("smoke", data_dir=tmp_path / "data", run_root=tmp_path / "r", device="cpu"))}
    trained = stage_configs(stages["02_train-dictsr"])
    assert list(trained.values()) == [stages["02_train-dictsr"].runs[0][1].to_dict()]
    assert stage_configs(stages["01_data"]) == {}


def test_a_failing_notebook_names_its_executed_copy_and_leaves_no_finished_one(tmp_path):
    root = _tiny_root(tmp_path, "raise ValueError('bad value ' + str(value))")
    target = tmp_path / "runs" / "probe.ipynb"
    with pytest.raises(WorkbookError, match=r"probe\.failed\.ipynb") as error:
        execute_notebook("probe", target, {"value": 7}, root=root)
    assert "bad value 7" in str(error.value)
    assert not target.exists() and not target.with_name("probe.partial.ipynb").exists()
    assert target.with_name("probe.failed.ipynb").is_file()


def test_a_cell_past_the_timeout_fails_its_stage_instead_of_blocking(tmp_path):
    root = _tiny_root(tmp_path, "import time\ntime.sleep(60)")
    target = tmp_path / "runs" / "probe.ipynb"
    start = time.time()
    with pytest.raises(WorkbookError, match=r"probe\.failed\.ipynb"):
        execute_notebook("probe", target, {}, root=root, timeout=2)
    assert time.time() - start < 40 and not target.exists()


def test_a_notebook_that_does_not_write_its_outputs_fails(tmp_path):
    root = _tiny_root(tmp_path, "pass")
    target = tmp_path / "runs" / "probe.ipynb"
    with pytest.raises(WorkbookError, match="did not write: .*never.txt"):
        execute_notebook("probe", target, {}, root=root, outputs=[tmp_path / "never.txt"])
    assert not target.exists()


def test_profiles_and_context(tmp_path):
    assert set(PROFILES) == {"smoke", "cpu", "cpu-full", "remedies", "remedies-paper", "gpu", "paper"}
    full = context("cpu-full", root=tmp_path, device="cpu")  # adds rows beside the cpu profile's runs
    assert full.run_root == tmp_path / "runs" / "cpu" and full.figure_dir == tmp_path / "runs" / "cpu" / "figures"
    assert context("cpu-full", root=tmp_path, untracked_figures=False).figure_dir == tmp_path / "figures" / "cpu"
    ctx = context("cpu", root=tmp_path, device="cpu")
    assert ctx.data_dir == tmp_path / "data" / "photos-aim" and ctx.run_root == tmp_path / "runs" / "cpu"
    assert ctx.figure_dir == ctx.run_root / "figures" and ctx.device.type == "cpu"
    # another data folder gets its own runs and figures, so photos-ntire never overwrites photos-aim
    other = context("cpu", root=tmp_path, device="cpu", data_dir=tmp_path / "data" / "photos-ntire")
    assert other.run_root == tmp_path / "runs" / "cpu-photos-ntire"
    assert other.figure_dir == other.run_root / "figures"
    committed = context("cpu", root=tmp_path, data_dir=tmp_path / "data" / "photos-ntire", untracked_figures=False)
    assert committed.figure_dir == tmp_path / "figures" / "cpu-photos-ntire"
    with pytest.raises(WorkbookError, match="profile 'huge'"):
        context("huge", root=tmp_path)
    from dictsr_core.config import ABLATIONS

    for profile in PROFILES.values():
        assert set(profile.ablations) <= set(ABLATIONS), profile.name
    # the remedy studies: each row changes the config it trains (none is a no-op on its base), in folders of their own
    from dictsr_core.workbook.plan import training_config

    for name in ("remedies", "remedies-paper"):
        study = context(name, root=tmp_path, device="cpu")
        assert study.run_root == tmp_path / "runs" / name
        base = training_config(study, "dictsr", None, schedule="ablation")
        for row in study.profile.ablations:
            assert training_config(study, "dictsr", row, schedule="ablation") != base, (name, row)
    paper = context("remedies-paper", root=tmp_path, device="cpu")
    assert training_config(paper, "dictsr", None, schedule="ablation").train.total_steps == 600


@pytest.mark.slow
def test_workbook_cli_names_a_missing_data_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dictsr_core", "workbook", "--profile", "smoke", "--data", str(tmp_path / "nope"),
                           "--run-root", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and f"--data {tmp_path / 'nope'}: no such folder" in done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_jupyterlab_starts_on_localhost_serves_the_workbook_kernel_and_stops_by_pid():
    command = lab_command(port=0)
    assert "--ip=127.0.0.1" in command and ("--allow-root" in command) == (os.geteuid() == 0)
    port, token = _free_port(), "dictsr-test-token"
    env = {**os.environ, "JUPYTER_TOKEN": token}
    lab = subprocess.Popen([shutil.which("dictsr") or sys.executable, *([] if shutil.which("dictsr") else ["-m", "dictsr_core"]),
                            "lab", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=ROOT, start_new_session=True)
    try:
        status = None
        for _ in range(120):
            try:
                status = _get(f"http://127.0.0.1:{port}/api/status", token)
                break
            except OSError:
                if lab.poll() is not None:
                    break
                time.sleep(0.5)
        assert status is not None, lab.stdout.read().decode()[-3000:] if lab.poll() is not None else "no answer"
        assert "started" in status
        specs = _get(f"http://127.0.0.1:{port}/api/kernelspecs", token)
        assert KERNEL_NAME in specs["kernelspecs"]
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs", timeout=5)
    finally:
        os.kill(lab.pid, signal.SIGTERM)  # `dictsr lab` exec()s JupyterLab: its PID is the server's
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
    assert lab.returncode is not None


def test_preparable_data_folders_and_the_loud_sample_fallback(tmp_path, monkeypatch, capsys):
    from dictsr_core.data.sources import photos
    from dictsr_core.workbook import runner
    from dictsr_core.workbook.profiles import preparable

    assert preparable("data/photos-ntire") == ("photos", "ntire")
    assert preparable("data/sample-aim") == ("sample", "aim")
    assert preparable("data/mine") is None and preparable("data/photos-blur") is None

    def no_apt(*args, **kwargs):
        raise photos.PhotosUnavailable("`apt-get` was not found")

    monkeypatch.setattr(photos, "photos_plan", no_apt)
    import dictsr_core.data.prepare as prepare_module

    monkeypatch.setattr(prepare_module, "photos_plan", no_apt)
    ctx = context("cpu", root=tmp_path, device="cpu")
    chosen = runner._with_data(ctx, explicit=False, run_root=None, figure_dir=None)
    out = capsys.readouterr().out
    assert "WARNING: falling back to the bundled sample data" in out and "NOT evidence" in out
    assert chosen.data_dir == tmp_path / "data" / "sample-aim" and (chosen.data_dir / "val_hr").is_dir()
    assert chosen.run_root == tmp_path / "runs" / "cpu-sample-aim"
    # asked for the photos explicitly: an error that names the folder, no silent fallback
    explicit = context("cpu", root=tmp_path, device="cpu", data_dir=tmp_path / "data" / "photos-ntire")
    with pytest.raises(WorkbookError, match="photos-ntire"):
        runner._with_data(explicit, explicit=True, run_root=None, figure_dir=None)


def test_a_photos_dataset_from_an_older_catalogue_is_made_again_and_a_current_one_is_kept(tmp_path, monkeypatch, capsys):
    from dictsr_core.data.sources.photos import CATALOGUE
    from dictsr_core.workbook import stages

    data_dir = tmp_path / "data" / "photos-aim"
    for split in stages.SPLITS:
        (data_dir / split).mkdir(parents=True)
        (data_dir / split / "a.png").write_bytes(b"")  # listed, never read

    def manifest(**fields):
        (data_dir / "manifest.json").write_text(json.dumps({"made_by": "dictsr prepare", **fields}))

    made = []
    monkeypatch.setattr("dictsr_core.data.prepare.prepare_dataset", lambda out, **kwargs: made.append((out, kwargs)))
    ctx = context("cpu", root=tmp_path, device="cpu", data_dir=data_dir)
    cases = [({}, True),  # whole validation photos, before crops
             ({"val_crops": {"per_photo": 4, "side": 256}, "source_notes": {}}, True),  # catalogue 1: 40 pairs
             ({"val_crops": {"per_photo": 4, "side": 256}, "source_notes": {"catalogue": CATALOGUE}}, False)]
    for fields, remade in cases:
        manifest(**fields)
        made.clear()
        assert stages.prepare_data(ctx) == data_dir
        assert bool(made) == remade, fields
        if remade:
            assert made[0][1]["source"] == "photos" and "older photo catalogue" in capsys.readouterr().out
    # a folder the user prepared from their own photos is never remade for this
    manifest(val_crops=None, source="folder")
    made.clear()
    assert stages._older_protocol(data_dir, "folder") is False


@pytest.mark.slow
def test_the_training_stage_makes_the_l1_only_model_beside_its_run_and_reuses_both(tiny_data, tmp_path, capsys):
    from dictsr_core.config import get_config
    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.workbook.profiles import context
    from dictsr_core.workbook.stages import train_run

    ctx = context("smoke", data_dir=tiny_data, run_root=tmp_path / "runs", figure_dir=tmp_path / "figures", device="cpu")
    cfg = get_config("tiny", overrides={"train.perceptual_weight": 0.1, "train.perceptual_from": 0.5})
    result = train_run(ctx, "dictsr", cfg, live=False, l1_run="dictsr-l1")
    l1 = load_checkpoint(ctx.run_dir("dictsr-l1") / "checkpoints" / "last.pt")
    assert result["summary"]["l1_run"] == "dictsr-l1" and l1["step"] == cfg.train.perceptual_start == 10
    assert "the L1-only model, dictsr at step 10" in capsys.readouterr().out
    train_run(ctx, "dictsr", cfg, live=False, l1_run="dictsr-l1")  # finished: reused, and the L1 run is up to date
    out = capsys.readouterr().out
    assert "is finished (20 steps); reusing it" in out and "L1-only" not in out


@pytest.mark.slow
def test_a_finished_run_of_another_config_is_moved_aside_not_deleted(tiny_data, tmp_path, capsys):
    from dictsr_core.config import get_config
    from dictsr_core.training.checkpoint import load_checkpoint
    from dictsr_core.workbook.profiles import context
    from dictsr_core.workbook.stages import train_run

    ctx = context("smoke", data_dir=tiny_data, run_root=tmp_path / "runs", figure_dir=tmp_path / "figures", device="cpu")
    before = get_config("tiny")
    train_run(ctx, "dictsr", before, live=False)
    capsys.readouterr()
    after = get_config("tiny", overrides={"train.lr": 5e-4})
    train_run(ctx, "dictsr", after, live=False)
    out = capsys.readouterr().out
    aside = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("dictsr.replaced-")]
    assert len(aside) == 1 and f"moved to {aside[0]}" in out
    assert load_checkpoint(aside[0] / "checkpoints" / "last.pt")["config"].to_dict() == before.to_dict()
    assert load_checkpoint(ctx.run_dir("dictsr") / "checkpoints" / "last.pt")["config"].to_dict() == after.to_dict()


def test_a_notebook_opened_by_hand_runs_the_profiles_rows_and_writes_no_tracked_figure(tmp_path):
    from dictsr_core.workbook import stages

    ctx = context("cpu", root=tmp_path, device="cpu")
    assert ctx.figure_dir == ctx.run_root / "figures"  # ignored by git, unlike figures/cpu: make main's too
    committed = context("cpu", root=tmp_path, device="cpu", untracked_figures=False).figure_dir
    assert committed == tmp_path / "figures" / "cpu"  # what --readme links, and --figure-dir figures/cpu asks
    assert stages.profile_default(ctx, "04_ablations", "variants") == list(ctx.profile.ablations)
    assert stages.profile_default(ctx, "04_ablations", "variants", ["A1"]) == ["A1"]  # given wins
    # Fig. 3 shows the model `dictsr sr` uses beside the paper's method and the peers, as make main does
    assert stages.profile_default(ctx, "06_qualitative", "runs") == [
        "dictsr-c8g", "paper-cpu", "plain-realesrgan-deg", "plain-noise-injection"]
    assert "dictsr-c8g" in stages.profile_default(ctx, "03_evaluate", "runs")
    with pytest.raises(WorkbookError, match="runs no 09_nothing"):
        stages.profile_default(ctx, "09_nothing", "runs")


def _notebook_defaults(name: str) -> dict:
    book = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    namespace = {}
    exec(cell.source, namespace)  # noqa: S102 - our own tracked notebook's literal assignments
    return {key: value for key, value in namespace.items() if not key.startswith("__")}


@pytest.mark.parametrize("profile", ["cpu", "gpu", "smoke"])
def test_every_parameter_make_main_passes_is_a_notebook_parameter_whose_default_means_the_same(profile, tmp_path):
    """papermill only warns about a name the notebook does not define; and a notebook opened by hand must make what
    make main made: 02_train's derived runs default to "profile", which train_run resolves to these same values."""
    from dictsr_core.workbook.plan import derived_runs, plan, training_config

    ctx = context(profile, root=tmp_path, device="cpu")
    for stage in plan(ctx):
        defaults = _notebook_defaults(stage.notebook)
        assert set(stage.parameters) <= set(defaults), (stage.key, set(stage.parameters) - set(defaults))
    train = next(stage for stage in plan(ctx) if stage.key == "02_train-dictsr")
    derived = derived_runs(ctx, "dictsr", training_config(ctx, "dictsr"))
    assert {key: train.parameters[key] for key in derived} == derived
    defaults = _notebook_defaults("02_train")
    assert all(defaults[key] == "profile" for key in derived) and defaults["run_name"] == defaults["method"] == "dictsr"
    if profile == "cpu":
        assert derived["gated_run"] == "dictsr-c8g" and derived["l1_run"] == "dictsr-l1"


def test_train_run_resolves_profile_defaults_to_the_derived_runs_of_make_main(tiny_data, tmp_path, monkeypatch):
    from dictsr_core.config import get_config
    from dictsr_core.workbook import stages

    ctx = context("smoke", data_dir=tiny_data, run_root=tmp_path / "runs", figure_dir=tmp_path / "figures", device="cpu")
    cfg = get_config("tiny", overrides={"train.perceptual_weight": 0.1, "train.perceptual_from": 0.5})
    asked = []
    monkeypatch.setattr(stages, "derived_runs", lambda c, run, config, force=False: asked.append(run)
                        or {"l1_run": "dictsr-l1"})
    profile = dict.fromkeys(("l1_run", "coarse_run", "coarse_entries", "coarse_restarts", "split_run",
                             "coarse_lookup_blurs", "gated_run", "coarse_gates", "gate_lookup_blurs"), "profile")
    result = stages.train_run(ctx, "dictsr", cfg, live=False, **profile)
    assert asked == ["dictsr"] and result["summary"]["l1_run"] == "dictsr-l1"
    assert (ctx.run_dir("dictsr-l1") / "checkpoints" / "last.pt").is_file()
    assert not [p for p in ctx.run_root.iterdir() if "-c" in p.name]  # no coarse run: the profile makes none


@pytest.mark.parametrize("profile", ["cpu", "smoke"])
def test_everything_make_main_writes_by_default_is_ignored_by_git(profile):
    """A fresh clone's `make main` (and a notebook run by hand) leaves `git status` clean: every output of every
    stage of the default plan, the report and the executed notebooks lie where .gitignore keeps them."""
    from dictsr_core.workbook.plan import plan

    ctx = context(profile, device="cpu")  # the project's own folders, as make main has them
    paths = [ctx.run_root / "report.md", ctx.run_root / "notebooks" / "01_data.ipynb", ctx.data_dir / "manifest.json"]
    for stage in plan(ctx):
        paths += list(stage.outputs) + list(stage.inputs) + [run_dir / "checkpoints" / "last.pt" for run_dir, _ in
                                                           stage.runs]
    relative = sorted({str(Path(p).resolve().relative_to(ROOT)) for p in paths})
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *relative], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert sorted(set(relative) - set(ignored)) == []


def test_make_mains_evaluation_scores_the_test_split_only_and_draws_it(tmp_path, monkeypatch):
    """Profile cpu's 03_evaluate (validation=False) makes no validation record or table; its figure shows test."""
    import dictsr_core.evaluation.results as results_module
    from dictsr_core.workbook import stages

    data = tmp_path / "photos-aim"
    (data / "test_lr").mkdir(parents=True)
    (data / "val_lr").mkdir()  # a prepared folder
    ctx = context("cpu", data_dir=data, run_root=tmp_path / "runs", device="cpu")
    test_records = [json.loads((ROOT / "results" / "test" / "photos-aim" / f"{run}.json").read_text(encoding="utf-8"))
                    for run in ("bicubic", "dictsr-c8g", "plain-noise-injection")]
    validation_calls = []
    monkeypatch.setattr(results_module, "collect_records", lambda *a, **k: validation_calls.append(k) or test_records)
    monkeypatch.setattr(stages, "evaluate_test", lambda c, runs, table_dir, **k: {
        "test_records": test_records, "test_markdown": "| test table |\n"})
    monkeypatch.setattr(stages, "recipe_targets", lambda *a, **k: None)
    shown = []
    import dictsr_core.analysis.figures.results as figures

    monkeypatch.setattr(figures, "metric_bars", lambda records, title: shown.append((records, title)) or title)
    monkeypatch.setattr(type(ctx), "save", lambda self, figure, name: None)
    out = stages.evaluate_runs(ctx, ["dictsr-c8g", "plain-noise-injection"], validation=False)
    assert validation_calls == [] and out["records"] is None and out["test_records"] is test_records
    assert out["markdown"].startswith("**Test split**") and "| test table |" in out["markdown"]
    assert shown == [(test_records, "Test metrics on photos-aim (cpu profile)")]
    assert not (ctx.table_dir / "table1.md").exists()
    out = stages.evaluate_runs(ctx, ["dictsr-c8g", "plain-noise-injection"], validation=True)
    assert len(validation_calls) == 1 and out["records"] is test_records and (ctx.table_dir / "table1.md").is_file()
    assert shown[-1][1] == "Validation metrics on photos-aim (cpu profile)"
    (data / "test_lr").rmdir()  # no test split: validation is scored whatever was asked
    out = stages.evaluate_runs(ctx, ["dictsr-c8g"], validation=False)
    assert len(validation_calls) == 2 and out["test_records"] is None


def test_a_test_split_is_read_from_the_prepared_folder_and_from_the_source_before_it(tmp_path):
    from dictsr_core.workbook.profiles import context

    photos = context("cpu", data_dir=tmp_path / "photos", run_root=tmp_path / "runs", device="cpu")
    assert photos.has_test_split  # not prepared yet: photos sources make a test split
    (tmp_path / "photos" / "val_lr").mkdir(parents=True)
    assert not photos.has_test_split  # prepared without one (a folder source, or an older preparation)
    (tmp_path / "photos" / "test_lr").mkdir()
    assert photos.has_test_split
    sample = context("smoke", data_dir=tmp_path / "sample", run_root=tmp_path / "runs", device="cpu")
    assert not sample.has_test_split
