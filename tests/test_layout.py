"""The package's shape (docs/DESIGN.md): stage folders whose imports point one way, no circle between
modules, no logic in a package's __init__.py, short functions and modules. Read from the source with
ast, so lazy imports inside functions count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bertstudy"
# What each stage may import from, besides itself (the stage table of docs/DESIGN.md).
ALLOWED = {
    "base": set(),
    "model": set(),
    "corpus": {"base"},
    "pretraining": {"base", "corpus"},
    "training": {"base", "model", "pretraining", "corpus"},
    "recipe_search": {"base", "model", "pretraining", "training"},
    "analysis": {"base"},
    "charts": {"base", "analysis"},
    "downstream": {"base", "model", "corpus", "pretraining", "training", "analysis", "charts"},
    "monitor": {"base", "analysis", "training"},
    "across_models": {"base", "model", "corpus", "pretraining", "training", "recipe_search", "analysis", "charts",
                      "downstream"},
}
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 420
ISSUE_NUMBER = re.compile(r"\bissues? ?#?\d+", re.IGNORECASE)
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")  # a day of measurement: the docs carry those


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports (`from bertstudy.x import y` counts y when y is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bertstudy"):
            assert node.level == 0, f"{path}: relative import; the package imports by absolute name"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("bertstudy"))
    return out - {"bertstudy"}


def stage(module: str) -> str:
    return module.split(".")[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported_modules(path, set(found)) for name, path in found.items()}


def test_every_module_lives_in_a_stage():
    stray = [m for m in modules() if m != "bertstudy" and stage(m) not in ALLOWED]
    assert not stray, f"modules outside the stage folders: {stray}"


def test_no_module_name_in_two_stages():
    """`curves` in analysis and in charts reads as one module in a traceback or an import line."""
    stages_of = {}
    for module, path in modules().items():
        if module != "bertstudy" and path.name != "__init__.py":
            stages_of.setdefault(module.rsplit(".", 1)[-1], set()).add(stage(module))
    repeated = {name: sorted(found) for name, found in stages_of.items() if len(found) > 1}
    assert not repeated, f"module names used in more than one stage: {repeated}"


def test_the_recipe_search_lives_outside_training():
    """training/ trains one run; the search over many runs (recipe_search/) calls training.run.run_training
    with a TrainConfig, and nothing of training/ knows about it."""
    training = sorted((PACKAGE / "training").rglob("*.py"))
    assert not [p.name for p in training if p.stem in ("recipes", "recipe_table")]
    assert not [p.name for p in training if "run_search" in p.read_text(encoding="utf-8")]
    assert (PACKAGE / "recipe_search" / "recipes.py").is_file()


def test_imports_point_down_the_stages(graph):
    upward = [f"{m} imports {dep}" for m, deps in graph.items() if m != "bertstudy"
              for dep in deps if stage(dep) != stage(m) and stage(dep) not in ALLOWED[stage(m)]]
    assert not upward, "imports that run back up a stage:\n" + "\n".join(upward)


def test_no_import_circle(graph):
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_package_inits_hold_no_logic():
    for path in PACKAGE.rglob("__init__.py"):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        kinds = {type(node).__name__ for node in body}
        assert kinds <= {"Expr", "Assign", "ImportFrom"}, f"{path}: {kinds}"
        for node in body:
            if isinstance(node, ast.Expr):
                assert isinstance(node.value, ast.Constant), f"{path}: a call at import time"


def test_functions_and_modules_are_short():
    long_functions, long_modules = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_code_names_no_issue_numbers_or_dates():
    """Code and comments say what is true now and why; the tracker and git hold the history, the docs the
    figures measured on a given day."""
    root = PACKAGE.parent
    paths = [*PACKAGE.rglob("*.py"), *(root / "scripts").iterdir(), *root.glob("*.py"), root / "Makefile"]
    found = [f"{path.relative_to(root)}:{number}: {line.strip()}" for path in sorted(paths) if path.is_file()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if ISSUE_NUMBER.search(line) or DATE.search(line)]
    assert not found, "issue numbers or dates in the code:\n" + "\n".join(found)


@pytest.mark.parametrize("name", ["rolling_origin_forecast", "DOWNSTREAM_FORMAT"])
def test_defined_once(name):
    where = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in sorted(PACKAGE.rglob("*.py"))
             for node in ast.parse(path.read_text(encoding="utf-8")).body
             if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name)
             or (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets))]
    assert len(where) == 1, f"{name} defined {len(where)} times: {where}"


CONFIG_MAKERS = {"replace", "resume_config", "with_threads", "with_device_split", "resolve_batch_split", "split_for"}
CONFIG_RESOLVERS = {"config.py", "run_start.py", "batch_fit.py"}  # what resolve_run calls to settle the config


def _called_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", None) in ("os", "str", "text"):
        return None  # os.replace moves files; str.replace edits text
    return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)


def test_the_run_config_is_settled_once_by_resolve_run():
    """training.run_start.resolve_run settles the TrainConfig (threads, resume, batch split, precision);
    after it nothing in training/ makes a new one, sets a config on anything, or sets the trainer's fields
    from outside the Trainer."""
    found = []
    for path in sorted((PACKAGE / "training").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and path.name not in CONFIG_RESOLVERS and _called_name(node) in CONFIG_MAKERS:
                found.append(f"{path.name}:{node.lineno} calls {_called_name(node)}")
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                if not isinstance(target, ast.Attribute):
                    continue
                owner = target.value
                owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
                if target.attr == "config" and owner_name != "self":
                    found.append(f"{path.name}:{target.lineno} sets {owner_name}.config")
                if owner_name == "trainer" and path.name != "trainer.py":
                    found.append(f"{path.name}:{target.lineno} sets trainer.{target.attr} from outside")
    run_py = ast.parse((PACKAGE / "training" / "run.py").read_text(encoding="utf-8"))
    resolved = [node for node in ast.walk(run_py) if isinstance(node, ast.Call) and _called_name(node) == "resolve_run"]
    assert len(resolved) == 1, "run.py resolves the run exactly once"
    assert not found, "the config is changed after resolve_run:\n" + "\n".join(found)
