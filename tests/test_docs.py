"""The documentation holds together: every relative link in README.md and docs/*.md resolves, every #anchor names a
heading of its target (GitHub's slug rule), the README stays a short user page, and every folder under results/ is
cited somewhere. Text only: no torch, no data, a fraction of a second.

Each check is a function that returns the problems it finds, so the tests below run it on the repository (no
problems) and on small documents made to fail (so a check that cannot fail would show)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
# results/ folders kept whatever cites them (the test records, the two validation datasets)
RESULTS_ALWAYS_KEPT = ("test", "photos-aim", "photos-ntire")
# where a results/ folder counts as cited
CITING_GLOBS = ("README.md", "docs/*.md", "notebooks/*.ipynb", "tests/*.py", "dictsr_core/**/*.py", "scripts/*",
                "experiments/*", "Makefile")
# a link to a file git does not track (runs/..., figures made on demand) is fine only where the text says what makes it
MADE_BY = re.compile(r"(made|written|generated|rewritten)\s+by|`(dictsr|make|python|\.venv/bin/\w+)\s", re.IGNORECASE)

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than '-' and '_' removed, each
    space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def prose(text: str) -> str:
    """The text with fenced code blocks blanked (line count kept): links and headings live outside them."""
    out, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs (a repeated slug gets -1, -2, ...) and HTML anchors."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")).split("\n"):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[tuple[str, str]]:
    """(target, its paragraph) for every Markdown link and image outside code."""
    text = prose(path.read_text(encoding="utf-8"))
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        visible = INLINE_CODE.sub(lambda m: re.sub(r"[\[\]()]", " ", m.group(0)), paragraph)
        for match in LINK.finditer(visible):
            found.append((match.group(1), paragraph))
    return found


def git_ignored(root: Path, relative: str) -> bool:
    try:
        done = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "--no-index", relative],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode in (0, 1):
        return done.returncode == 0
    return relative.startswith(("runs/", "results/tmp/", "data/"))  # no git here: the ignore file's big ones


def link_problems(files: list[Path], root: Path = ROOT) -> list[str]:
    """Broken relative links and anchors in these Markdown files (http(s) and mailto links are not checked)."""
    problems = []
    cache: dict[Path, set[str]] = {}
    for path in files:
        name = path.relative_to(root).as_posix()
        for target, paragraph in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path.resolve()
            try:
                relative = dest.relative_to(root.resolve()).as_posix()
            except ValueError:
                problems.append(f"{name}: {target} points outside the repository")
                continue
            if file_part and git_ignored(root, relative):
                if not MADE_BY.search(paragraph):
                    problems.append(f"{name}: {target} is not in git, and the text around it does not say what "
                                    "makes it")
                continue
            if not dest.exists():
                problems.append(f"{name}: {target} does not exist")
                continue
            if anchor and dest.suffix == ".md":
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if anchor not in cache[dest]:
                    problems.append(f"{name}: {target}: no heading with the anchor #{anchor} in {relative}")
    return problems


def readme_too_long(readme: Path, limit: int = README_MAX_LINES) -> list[str]:
    count = readme.read_text(encoding="utf-8").count("\n")
    return [f"{readme.name} has {count} lines, more than {limit}"] if count > limit else []


def uncited_results(root: Path = ROOT) -> list[str]:
    """Folders directly under results/ (git-ignored ones aside) that no document, notebook, test or code file cites."""
    results = root / "results"
    folders = sorted(p.name for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
    folders = [f for f in folders if not git_ignored(root, f"results/{f}/")]
    this = Path(__file__).resolve()
    texts = []
    for pattern in CITING_GLOBS:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and path.resolve() != this:
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    corpus = "\n".join(texts)
    problems = []
    for folder in folders:
        if folder in RESULTS_ALWAYS_KEPT:
            continue
        if not re.search(rf"results/{re.escape(folder)}(?![\w.-])", corpus):
            problems.append(f"results/{folder}/ is cited nowhere (README.md, docs/, notebooks/, tests/, code)")
    return problems


# ---- the repository --------------------------------------------------------------------------------------------

def test_relative_links_and_anchors_resolve():
    assert link_problems(doc_files()) == []


def test_readme_is_short():
    assert readme_too_long(ROOT / "README.md") == []


def test_every_results_folder_is_cited():
    assert uncited_results() == []


def test_readme_keeps_the_verdict_block_under_does_it_work():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- dictsr verdict: start -->", "<!-- dictsr verdict: end -->"
    assert text.count(start) == 1 and text.count(end) == 1
    heading = text.index("## Does it work?")
    assert heading < text.index(start) < text.index(end)
    assert text[:heading].count("\n") < 40  # on the first screen


# ---- the checks can fail ---------------------------------------------------------------------------------------

def test_github_slugs():
    assert github_slug("3. The degradation moves the code") == "3-the-degradation-moves-the-code"
    assert github_slug("Results on `photos-aim`") == "results-on-photos-aim"
    assert github_slug("The `cpu` recipe's departures") == "the-cpu-recipes-departures"
    assert github_slug("2. D_hr collapses") == "2-d_hr-collapses"
    assert github_slug("Ablations (paper Tables 3 and 4)") == "ablations-paper-tables-3-and-4"


def test_link_check_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Same\n\n## Same\n\n```\n## Not a heading\n```\n")
    (tmp_path / "README.md").write_text(
        "# Top\n\n"
        "[ok](docs/a.md#same-1) [ok](#top) [ok](https://example.org/x#y) `[code](nowhere.md)`\n\n"
        "[missing file](docs/b.md) [bad anchor](docs/a.md#same-2) [fenced](docs/a.md#not-a-heading)\n\n"
        "[bad local](#nowhere) [out](../outside.md)\n")
    problems = link_problems(doc_files(tmp_path), tmp_path)
    assert len(problems) == 5, problems
    for needle in ("docs/b.md", "#same-2", "#not-a-heading", "#nowhere", "outside the repository"):
        assert any(needle in p for p in problems), (needle, problems)


def test_link_check_reads_links_across_lines_and_duplicate_headings(tmp_path):
    (tmp_path / "README.md").write_text("# T\n\n## Item\n\n## Item\n\nsee [the second\nitem](#item-1), "
                                        "not [a third](#item-2)\n")
    problems = link_problems([tmp_path / "README.md"], tmp_path)
    assert problems == ["README.md: #item-2: no heading with the anchor #item-2 in README.md"]


def test_readme_length_check(tmp_path):
    short, long = tmp_path / "short.md", tmp_path / "long.md"
    short.write_text("line\n" * README_MAX_LINES)
    long.write_text("line\n" * (README_MAX_LINES + 1))
    assert readme_too_long(short) == []
    assert readme_too_long(long) != []


def test_citation_check_finds_an_uncited_folder(tmp_path):
    for folder in ("cited-study", "forgotten-study", "test"):
        (tmp_path / "results" / folder).mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("Records: `results/cited-study/`; `results/cited-study-2` is another.\n")
    assert uncited_results(tmp_path) == ["results/forgotten-study/ is cited nowhere (README.md, docs/, notebooks/, "
                                         "tests/, code)"]
