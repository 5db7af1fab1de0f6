"""The package's shape, read from its source with `ast` (nothing is imported): no import circles between modules,
imports flowing one way down the wings (workbook/cli -> ... -> data/model/config), and a trainer of short functions.

Every import statement counts as an edge, at module level or inside a function, absolute or relative.
`import a.b.c` and `from a.b import c` are edges to the module they name (a.b.c when that is a module, else a.b),
not to the parent packages whose __init__ Python runs first: an __init__ that re-exports its submodules would
otherwise make every package a circle of its own.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dictsr_core"

# Each wing's layer: a module may import its own wing and the wings of lower layers, never a higher one.
LAYERS = {
    "config": 0, "atomic": 0,  # the base every wing uses: typed configuration, atomic file writes
    "data": 1, "model": 1, "perceptual": 1,  # images on disk, the network, the LPIPS network and its weights
    "inference": 2,  # tiled super_resolve, the fast paths, the colour fix, content index maps
    "training": 3,  # the trainer, losses, checkpoints, devices, DDP
    "performance": 4,  # bench, cost, the RRDBNet anchor
    "peers": 4,  # the published peers (ncnn weights -> RRDBNet) and the peers' method names
    "evaluation": 5,  # metrics, evaluate, result records, tables, comparisons, regions, index consistency
    "analysis": 6,  # dictionary analysis (Fig. 4), the explorer, the figures
    "workbook": 7,  # profiles, the plan, the notebooks' stages, the papermill runner
    "cli": 8, "__main__": 8, "": 8,  # the command line (and the package root)
}
LOWER_WINGS = ("config", "data", "model")  # the bottom of the one-way rule of issue #14
UPPER_WINGS = ("training", "inference", "evaluation", "analysis", "performance", "workbook", "cli")


def package_modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is a package __init__)} of every module of the package."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def imported_modules(source: str, module: str, is_package: bool, known) -> set[str]:
    """The package's modules that `source` (the text of `module`) imports, anywhere in it."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import x` / `from ..data import io`
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known and "." in name:  # `import a.b.C`-like: the longest known prefix
                name = name.rpartition(".")[0]
            if name in known and name != module:
                found.add(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {name: imported_modules(path.read_text(encoding="utf-8"), name, is_package, modules)
            for name, (path, is_package) in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (or a module importing itself)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):  # Tarjan, iterative so that deep graphs need no recursion limit
        work = [(node, iter(sorted(graph.get(node, ()))))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == current:
                            break
                    if len(component) > 1 or current in graph.get(current, ()):
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[current] = min(low[current], index[child])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def wing(module: str) -> str:
    """`dictsr_core.training.step` -> `training`; `dictsr_core.config` -> `config`; the package root -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def edges(graph):
    return sorted((a, b) for a, targets in graph.items() for b in targets)


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_import_walk_sees_every_kind_of_import(graph):
    known = package_modules()
    assert "dictsr_core.training.trainer" in graph["dictsr_core.cli"]  # inside a function
    assert "dictsr_core.atomic" in graph["dictsr_core.data.io"]  # at module level
    assert "dictsr_core.workbook.stages" in graph["dictsr_core.workbook"]  # `from package import submodule`
    relative = "from ..data import io\nfrom . import step\nfrom .losses import TERMS\nimport dictsr_core.model.blocks\n"
    assert imported_modules(relative, "dictsr_core.training.build", False, known) == {
        "dictsr_core.data.io", "dictsr_core.training.step", "dictsr_core.training.losses", "dictsr_core.model.blocks"}
    assert imported_modules("from .. import config\n", "dictsr_core.training", True, known) == {"dictsr_core.config"}


def test_the_cycle_finder_finds_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles(graph):
    found = cycles(graph)
    assert not found, "import circles (each a set of modules that import each other):\n" + "\n".join(map(str, found))


def test_every_module_lives_in_a_known_wing(graph):
    loose = [module for module in graph if wing(module) not in LAYERS]
    assert not loose, f"modules outside the wings {sorted(LAYERS)}: {loose} (add the folder to LAYERS, in its place)"


def test_data_model_and_config_import_nothing_above_them(graph):
    wrong = [(a, b) for a, b in edges(graph) if wing(a) in LOWER_WINGS and wing(b) in UPPER_WINGS]
    assert not wrong, f"imports from the bottom wings upwards: {wrong}"


def test_nothing_below_the_workbook_and_the_cli_imports_them(graph):
    wrong = [(a, b) for a, b in edges(graph)
             if wing(a) not in ("workbook", "cli", "__main__", "") and wing(b) in ("workbook", "cli")]
    assert not wrong, f"imports of the workbook or the cli from below them: {wrong}"


def test_imports_flow_down_the_wings(graph):
    upward = [f"{a} ({wing(a)}) -> {b} ({wing(b)})" for a, b in edges(graph) if LAYERS[wing(b)] > LAYERS[wing(a)]]
    assert not upward, "imports up the wing order:\n" + "\n".join(upward)


def test_no_function_in_training_is_longer_than_60_lines():
    long = []
    for path in sorted((ROOT / PACKAGE / "training").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "functions over 60 lines in training/:\n" + "\n".join(long)
