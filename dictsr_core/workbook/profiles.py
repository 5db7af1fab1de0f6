"""Workbook profiles (how big a study `dictsr workbook` runs) and the context every notebook resolves first.

A profile fixes the data source, the training preset of the main runs, the ablation variants and their
schedule, and figure sizes. Notebooks take `profile` plus optional path overrides as papermill
parameters and call `context(...)` so that run interactively or headless they use the same folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dictsr_core.peers.names import EQUAL_BUDGET_METHODS


# the paired baselines and the equal-budget peers (PlainSR on Real-ESRGAN's degradation and on noise injection from
# the LR photos), all on the baselines' schedule (peers issue)
PEER_BASELINES = ("paired-bicubic", "oracle", *EQUAL_BUDGET_METHODS)
# the ablation rows that test the recipe's departures from the paper (config.ABLATIONS R*), each removed on its own,
# then the two that left the recipe on 2026-12-07 (R9 index consistency, R10 the weight average; docs/recipe.md item
# 19), each added back; R10 is made from Ours' checkpoint, not trained. R5 is an addition never in the recipe, R8 an
# alternative to the coarse code (cpu-full)
RECIPE_ABLATIONS = ("R1", "R3", "R4", "R9", "R10")
# the method issue's remedies for a code the degradation moves (config.ABLATIONS Q*), each added on its own; on the
# paper's method Q6 (JPEG in the consistency term's copies: it has none) and Q9 (no restarts: it has none) change nothing
# Q12 is Q1 and Q4 together (the two that helped on their own on the recipe, docs/recipe.md item 16)
REMEDY_ABLATIONS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9", "Q12")
# ... and Q10, Q11: the recipe's HR-branch gradient and entry learning rate, which the paper's run lacks (recipe item 17)
PAPER_REMEDY_ABLATIONS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q7", "Q8", "Q10", "Q11", "Q12")


class WorkbookError(RuntimeError):
    """A workbook stage that cannot run or failed; the message names the notebook, stage or file."""


@dataclass(frozen=True)
class Profile:
    name: str
    preset: str  # config preset of the main DictSR run and the paired baselines
    source: str = "sample"  # `dictsr prepare --source`
    degradation: str = "aim"
    overrides: dict = field(default_factory=dict)  # `--set` overrides for every training run of the profile
    baselines: tuple[str, ...] = ("paired-bicubic", "oracle")
    ablations: tuple[str, ...] = ()
    ablation_overrides: dict = field(default_factory=dict)  # the ablation schedule (the "Ours" row uses it too)
    # the paired baselines' schedule: PlainSR's step is cheaper than DictSR's three branches, so the same
    # training budget (wall clock) buys it more steps
    baseline_overrides: dict = field(default_factory=dict)
    # size the baselines' steps to the main DictSR run's wall clock measured on this machine (workbook/budget.py;
    # RUN_ROOT/budget.json), keeping baseline_overrides' schedule shape; False: baseline_overrides as written
    equal_budget: bool = False
    # beside the main DictSR run, also that run with its code coarsened to this many entries (`dictsr derive
    # --coarsen`), scored in Table 1 as `dictsr-c<N>`; None: not made
    coarse_entries: int | None = None
    # that many k-means draws of the coarse code, the one kept chosen on the training images (`dictsr derive
    # --restarts`: the lowest LPIPS-Alex on the noisy training photos among the draws whose training index
    # agreement reaches 0.5); 1: the first draw
    coarse_restarts: int = 1
    # also that code grown by greedy splits while its training agreement holds (`dictsr derive --split`), scored
    # as `dictsr-c<N>s`: the model the recipe ends with where set
    coarse_split: bool = False
    # both coarse codes derived once per LR lookup blur of this list (model.lookup_blur, `dictsr derive --lookup-blur`),
    # the one with the lowest training LPIPS-Alex among those whose training agreement reaches 0.5 kept; None: the
    # run's own lookup
    coarse_lookup_blurs: tuple[float, ...] | None = None
    # also a texture-gated code (`dictsr derive --coarsen N --restarts R --gate ...`, model/texture_gate.py): flat LR
    # cells choose among a k-means draw of N entries, textured ones among all; every draw x lookup blur of
    # gate_lookup_blurs x roughness threshold here scored on the training photos, the lowest LPIPS-Alex among those
    # whose training agreement reaches 0.5 kept. Scored as `dictsr-c<N>g`, the recipe's model where made; None: not made
    coarse_gates: tuple[float, ...] | None = None
    gate_lookup_blurs: tuple[float, ...] | None = None
    umap_points: int = 2000  # validation patch embeddings in Fig. 4's map
    atlas_atoms: int = 256
    crop: int = 96  # Fig. 3 crop side (HR pixels)
    cell_timeout_s: int | None = 4 * 3600  # a notebook cell running longer fails its stage instead of blocking forever
    # the paper's method at this profile's budget (a preset of config.PRESETS, trained as a run of that name, its steps
    # sized to the DictSR run's wall clock): reported on test whatever it scores (method issue); None: not trained
    paper_run: str | None = None
    # 03_evaluate scores the validation pairs too (Table 1 of validation) where the data has a test split; False: the
    # test split only, as the verdict reports (validation is for choices: the ablation rows, the derivations' training
    # images), to keep make main's time (`validation=True` in the notebook, or profile cpu-full, adds it back)
    validation_table: bool = True
    run_folder: str = ""  # runs/<run_folder> (and figures/): another profile's, to add rows beside its runs; "": its name
    about: str = ""


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", preset="tiny", ablations=("A1", "C1", "R6"), umap_points=300, atlas_atoms=64, crop=48, cell_timeout_s=600,
        baselines=PEER_BASELINES, paper_run="paper-tiny",
        about="seconds of training on the tiny preset: checks that every notebook runs (CI); numbers mean nothing",
    ),
    "cpu": Profile(
        # R10 is not trained: its steps are Ours' steps, so it is made from Ours' checkpoint (the power-function
        # average it tracks; config.DERIVED_ABLATIONS)
        "cpu", preset="cpu", source="photos", ablations=RECIPE_ABLATIONS,
        # the verdict's peers only (docs/evaluation.md); paired-bicubic, oracle, A1 and dictsr-c8s: profile cpu-full
        baselines=EQUAL_BUDGET_METHODS, paper_run="paper-cpu", validation_table=False,
        # 600 steps, the last 100 with the perceptual term (R10's length-aware average fits them as it fits 600)
        ablation_overrides={"train.epochs": 1},
        # the baselines' schedule shape: 7 epochs, the lr halved after 5, the same 600 perceptual steps as DictSR's at
        # the end (the length written here matched the 8400-step DictSR run's wall clock before equal_budget sized it)
        baseline_overrides={"train.epochs": 7, "train.steps_per_epoch": 2160, "train.halve_every": 5,
                            "train.perceptual_from": 121 / 126},
        # ... and then sized to DictSR's measured wall clock here, each baseline at its own loader's step time:
        # Real-ESRGAN's degradation makes a step 2x the paired one's (peers issue)
        equal_budget=True,
        # the fine code coarsened to 8 entries, the k-means draw of the 8 chosen on the training images (docs/recipe.md
        # items 6 and 9): the model the recipe ends with (dictsr-c8)
        coarse_entries=8, coarse_restarts=8,
        # then grown where the training photos show a split helps and the training agreement stays >= 0.5 by 2
        # standard errors (docs/recipe.md item 12): dictsr-c8s, a row (the recipe's model until 15.);
        # dictsr-c8 stays as its ablation row
        coarse_split=False,  # dictsr-c8s: profile cpu-full
        # with the LR lookup embedding blurred (sigma 0.5 code cells) or not, as the training photos say (docs/recipe.md
        # item 13): on photos-ntire's sensor noise the blur keeps the agreement with a finer code
        coarse_lookup_blurs=(0.0, 0.5),
        # and the texture-gated code (docs/recipe.md item 14): the 8-entry code where the LR is flat, all 1024
        # entries where it is textured: dictsr-c8g, the recipe's model (docs/recipe.md item 15)
        coarse_gates=(3.0, 4.0, 6.0, 8.0), gate_lookup_blurs=(0.0, 0.5, 1.0),
        about="the README's main job on 2 CPU cores: real photos (photos-aim; sample-aim where apt cannot fetch them), "
              "cpu preset, the equal-budget peers, the recipe's departures as ablation rows, test split; cpu-full for "
              "the rest",
    ),
    "cpu-full": Profile(
        # R10 is not trained: its steps are Ours' steps, so it is made from Ours' checkpoint (config.DERIVED_ABLATIONS)
        "cpu-full", preset="cpu", source="photos", ablations=("A1", *RECIPE_ABLATIONS, "R8"),
        baselines=PEER_BASELINES, paper_run="paper-cpu",
        # 600 steps, the last 100 with the perceptual term (R10's length-aware average fits them as it fits 600)
        ablation_overrides={"train.epochs": 1},
        # the baselines' schedule shape: 7 epochs, the lr halved after 5, the same 600 perceptual steps as DictSR's at
        # the end (the length written here matched the 8400-step DictSR run's wall clock before equal_budget sized it)
        baseline_overrides={"train.epochs": 7, "train.steps_per_epoch": 2160, "train.halve_every": 5,
                            "train.perceptual_from": 121 / 126},
        # ... and then sized to DictSR's measured wall clock here, each baseline at its own loader's step time:
        # Real-ESRGAN's degradation makes a step 2x the paired one's (peers issue)
        equal_budget=True,
        # the fine code coarsened to 8 entries, the k-means draw of the 8 chosen on the training images (docs/recipe.md
        # items 6 and 9): the model the recipe ends with (dictsr-c8)
        coarse_entries=8, coarse_restarts=8,
        # then grown where the training photos show a split helps and the training agreement stays >= 0.5 by 2
        # standard errors (docs/recipe.md item 12): dictsr-c8s, a row (the recipe's model until 15.);
        # dictsr-c8 stays as its ablation row
        coarse_split=True,
        # with the LR lookup embedding blurred (sigma 0.5 code cells) or not, as the training photos say (docs/recipe.md
        # item 13): on photos-ntire's sensor noise the blur keeps the agreement with a finer code
        coarse_lookup_blurs=(0.0, 0.5),
        # and the texture-gated code (docs/recipe.md item 14): the 8-entry code where the LR is flat, all 1024
        # entries where it is textured: dictsr-c8g, the recipe's model (docs/recipe.md item 15)
        coarse_gates=(3.0, 4.0, 6.0, 8.0), gate_lookup_blurs=(0.0, 0.5, 1.0),
        run_folder="cpu",  # the cpu profile's runs (the same recipe and peers), and more rows beside them
        about="the cpu profile and everything its verdict does not need: the paired baselines (paired-bicubic, "
              "oracle), the paper's ablation A1, the split coarse code dictsr-c8s; about twice make main's time",
    ),
    "remedies": Profile(
        # 1200 steps, the last 86 with the perceptual term: the cpu preset's schedule before it was shortened to 3600
        # steps, and its index consistency and length-aware average, which left it the same day (2026-12-07): the
        # recipe these rows were trained and reported with (docs/recipe.md item 16)
        "remedies", preset="cpu", source="photos", ablations=REMEDY_ABLATIONS,
        ablation_overrides={"train.epochs": 2, "train.halve_every": 10, "train.perceptual_from": 13 / 14,
                            "train.consistency_weight": 10.0, "train.ema_sigma_rel": 0.2,
                            "train.ema_track_sigma_rel": (0.05, 0.1)},
        about="the method issue's remedies Q1-Q9 and Q12 (Q1 with Q4) added to the cpu recipe, as ablation rows on "
              "validation (`--only 04_ablations`; about 5 min a row on 2 CPU cores)",
    ),
    "remedies-paper": Profile(
        # one epoch of the paper-cpu schedule (600 steps, LPIPS-VGG on every step as the paper trains)
        "remedies-paper", preset="paper-cpu", source="photos", ablations=PAPER_REMEDY_ABLATIONS,
        ablation_overrides={"train.epochs": 1, "train.halve_every": 1},
        about="the method issue's remedies added to the paper's method at the cpu budget (paper-cpu), as ablation "
              "rows on validation (`--only 04_ablations`; about 8 min a row on 2 CPU cores)",
    ),
    "gpu": Profile(
        # the cpu recipe at the paper's widths, batch and crops (config.PRESETS["gpu"]); D1 is not among the
        # ablations: the preset already has one code per LR pixel. The paper's rows, then the recipe's (R10 made
        # from Ours' checkpoint, as in the cpu profile)
        "gpu", preset="gpu", source="photos",
        ablations=("A1", "B1", "B2", "C1", "C2", "D2", "E1", "G1", *RECIPE_ABLATIONS, "R8"),
        baselines=PEER_BASELINES,
        ablation_overrides={"train.epochs": 2}, equal_budget=True,
        coarse_entries=8, coarse_restarts=8, coarse_split=True, coarse_lookup_blurs=(0.0, 0.5),
        coarse_gates=(3.0, 4.0, 6.0, 8.0), gate_lookup_blurs=(0.0, 0.5, 1.0),
        about="the main job on one GPU: the cpu recipe at the paper's widths and batch, about 5 minutes per main run",
    ),
    "paper": Profile(
        "paper", preset="paper", source="photos",
        ablations=("A1", "B1", "B2", "C1", "C2", "D1", "D2", "E1", "F1", "F2", "F3", "F4", "G1"), cell_timeout_s=None,
        about="the paper's schedule (100 epochs) for every run: days on one GPU; point --data at AIM-RWSR",
    ),
}


def recipe_model_name(profile: Profile) -> str:
    """The run a profile's recipe ends with: its main DictSR run, or the code derived from it: the texture-gated
    code where the profile makes one (docs/recipe.md item 15), else the coarse code, grown where it splits."""
    if not profile.coarse_entries:
        return "dictsr"
    if profile.coarse_gates:
        return f"dictsr-c{profile.coarse_entries}g"
    return f"dictsr-c{profile.coarse_entries}" + ("s" if profile.coarse_split else "")


def _derived_models(profile: Profile) -> list[str]:
    """The runs a recipe may end with, newest recipe first: a run folder made by an older recipe lacks the newer."""
    if not profile.coarse_entries:
        return ["dictsr"]
    coarse = f"dictsr-c{profile.coarse_entries}"
    return list(dict.fromkeys([recipe_model_name(profile), coarse + ("s" if profile.coarse_split else ""), coarse,
                               "dictsr"]))


def resolve_profile(name: str) -> Profile:
    """`auto` is gpu when CUDA is available, else cpu."""
    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise WorkbookError(f"profile {name!r}: choose auto, {', '.join(PROFILES)}")
    return PROFILES[name]


def project_root(start=None) -> Path:
    """The folder holding `notebooks/` and `pyproject.toml`, searched upwards from `start` (default: the cwd,
    so a notebook opened in notebooks/ finds it); DICTSR_ROOT wins when set."""
    if os.environ.get("DICTSR_ROOT"):
        return Path(os.environ["DICTSR_ROOT"]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


@dataclass(frozen=True)
class Context:
    """Where a profile's data, runs, figures and tables live; every notebook builds one from its parameters."""

    profile: Profile
    root: Path
    data_dir: Path
    run_root: Path
    figure_dir: Path
    device: torch.device
    seed: int = 0

    @property
    def table_dir(self) -> Path:
        return self.run_root / "tables"

    @property
    def results_root(self) -> Path:
        return self.run_root / "results"

    @property
    def notebook_dir(self) -> Path:
        return self.run_root / "notebooks"

    def run_dir(self, name: str) -> Path:
        return self.run_root / name

    @property
    def has_test_split(self) -> bool:
        """Whether the data folder has a test split (data/sources/test_photos.py): where it is prepared, whether it
        holds test pairs; before 01_data has prepared it, whether the profile's source makes one (photos do)."""
        if (self.data_dir / "val_lr").is_dir():
            return (self.data_dir / "test_lr").is_dir()
        return self.profile.source == "photos"

    def save(self, figure, name: str) -> list[Path]:
        """Save a figure as FIGURE_DIR/NAME.png and .pdf (atomically) and close it; prints where."""
        from dictsr_core.analysis.figures.style import save_figure

        paths = save_figure(figure, self.figure_dir, name)
        print("saved " + ", ".join(str(p) for p in paths))
        return paths


def default_data_dir(profile: Profile, root) -> Path:
    return Path(root) / "data" / f"{profile.source}-{profile.degradation}"


def preparable(data_dir) -> tuple[str, str] | None:
    """(source, degradation) when a data folder's name says how `dictsr prepare` makes it (`photos-ntire`,
    `sample-aim`), else None: such a folder is prepared on first use."""
    from dictsr_core.data.degradations import DEGRADATIONS

    source, _, degradation = Path(data_dir).name.partition("-")
    return (source, degradation) if source in ("sample", "photos") and degradation in DEGRADATIONS else None


def context(profile: str = "smoke", data_dir=None, run_root=None, figure_dir=None, device: str = "auto",
            seed: int = 0, root=None, untracked_figures: bool = True) -> Context:
    """The Context for these notebook parameters; None means the profile's default folder under the project root.
    figure_dir None means RUN_ROOT/figures, ignored by git, so that neither `make main` nor a notebook run by hand
    changes a tracked file; the committed figures/<profile> change only when asked (`--figure-dir figures/cpu`).
    untracked_figures=False gives that committed folder as the default instead."""
    from dictsr_core.training.devices import pick_device

    chosen = resolve_profile(profile)
    root = Path(root).resolve() if root else project_root()
    data = Path(data_dir).resolve() if data_dir else default_data_dir(chosen, root)
    # another data folder than the profile's own gets its own runs and figures (runs/cpu-photos-ntire/)
    suffix = "" if data == default_data_dir(chosen, root) else f"-{data.name}"
    folder = chosen.run_folder or chosen.name
    runs = Path(run_root).resolve() if run_root else root / "runs" / f"{folder}{suffix}"
    figures = runs / "figures" if untracked_figures else root / "figures" / f"{folder}{suffix}"
    return Context(
        profile=chosen,
        root=root,
        data_dir=data,
        run_root=runs,
        figure_dir=Path(figure_dir).resolve() if figure_dir else figures,
        device=pick_device(None if device in (None, "auto") else device),
        seed=int(seed),
    )


def main_checkpoint(root=None) -> tuple[Path | None, list[Path]]:
    """(the DictSR checkpoint `dictsr main` trained, every place looked in): its profile's run on the default
    photos, or on the bundled sample it falls back to, the model the recipe ends with (recipe_model_name: its texture-gated
    code, dictsr-c8g, where the profile makes one; in a run folder made before it, dictsr-c8s, dictsr-c8) before the run
    it came from; the project folder is the cwd's (or DICTSR_ROOT),
    else the one this package is installed from."""
    if root is not None or os.environ.get("DICTSR_ROOT"):
        roots = [Path(root).resolve() if root else project_root()]
    else:
        roots = [project_root(), Path(__file__).resolve().parents[2]]
    looked: list[Path] = []
    for folder in dict.fromkeys(roots):
        for name in dict.fromkeys([resolve_profile("auto").name, "gpu", "cpu"]):
            profile = PROFILES[name]
            for data in (default_data_dir(profile, folder), folder / "data" / f"sample-{profile.degradation}"):
                # the recipe's model first; then, in a run folder made before it, the older codes or the run itself
                runs = _derived_models(profile)
                where = context(name, data_dir=data, root=folder, device="cpu")
                for run in runs:
                    ckpt = where.run_dir(run) / "checkpoints" / "last.pt"
                    if ckpt not in looked:
                        looked.append(ckpt)
    found = next((path for path in looked if path.is_file()), None)
    return found, looked
