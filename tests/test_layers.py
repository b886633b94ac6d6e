"""The layers of `utils/`, read from the source with `ast` (every import at any depth: inside functions, under
`if TYPE_CHECKING:`, `importlib.import_module("...")` with a literal name, relative imports resolved):

    utils.core       imports nothing from utils.training, utils.tasks, utils.serving
    utils.training   imports nothing from utils.tasks, utils.serving
    utils.tasks      imports nothing from utils.serving; a task package imports nothing from another task package
    utils.serving    imports nothing from utils.training; from utils.tasks only utils.tasks.registry (the one list
                     of tasks)
    and no module imports itself through others (no import circles, at any depth)

and the rules that keep them honest: no file over 400 lines, no shared module (core, training, serving) that compares
a task's name or identity, and every `.backward(` / optimizer `.step(` inside utils/training. Each failure names the
file, the line and the import or expression that breaks the rule."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

UTILS = ROOT / "utils"
MAX_LINES = 400
REGISTRY = "utils.tasks.registry"
SHARED_LAYERS = ("utils.core", "utils.training", "utils.serving")


@dataclass(frozen=True)
class Import:
    file: str  # relative to the checkout, e.g. utils/core/data.py
    line: int
    target: str  # the absolute module imported, e.g. utils.tasks.ner.data
    source: str  # the statement as written

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.source}  (-> {self.target})"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module under utils/, by dotted name."""
    return {module_name(path): path for path in sorted(UTILS.rglob("*.py")) if ".venv" not in path.parts}


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def imports(path: Path, parsed: ast.Module | None = None) -> list[Import]:
    """Every module `path` (or `parsed`, read as if it were `path`) imports, wherever the statement stands."""
    name, known = module_name(path), modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(parsed or tree(path)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from utils.tasks import registry` imports the module utils.tasks.registry; `from x import name`, x
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in known else base)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ast.unparse(node.func) in {"importlib.import_module", "import_module", "__import__"}
        ):
            targets = [node.args[0].value]
        found += [Import(relative(path), node.lineno, target, ast.unparse(node)) for target in dict.fromkeys(targets)]
    return sorted(found, key=lambda item: item.line)


def layer_modules(package: str) -> dict[str, Path]:
    chosen = {name: path for name, path in modules().items() if within(name, package)}
    assert chosen, f"no modules under {package}: the layer test is reading the wrong tree ({UTILS})"
    return chosen


def task_packages() -> list[str]:
    packages = sorted(module_name(path.parent) for path in (UTILS / "tasks").glob("*/__init__.py"))
    assert {"utils.tasks.ner", "utils.tasks.classification"} <= set(packages), packages
    return packages


def broken(package: str, forbidden, allowed=frozenset()) -> list[str]:
    """The imports of `package`'s modules whose target is `forbidden` (a predicate) and not in `allowed`."""
    return [
        str(found)
        for path in layer_modules(package).values()
        for found in imports(path)
        if forbidden(found.target) and found.target not in allowed
    ]


def report(rule: str, violations: list[str]) -> str:
    return f"{rule}; {len(violations)} violation(s):\n  " + "\n  ".join(violations)


# ---------------------------------------------------------------- the import rules


def test_the_import_reader_sees_every_form_of_import():
    """The reader itself: nested and relative imports, `from package import submodule`, import_module."""
    path = UTILS / "tasks" / "ner" / "data.py"
    targets = {found.target for found in imports(path)}
    assert {"utils.core.conll", "utils.tasks.ner.iob", "utils.core.errors"} <= targets, targets
    sample = ast.parse(
        "def f():\n    from ..classification import data\n    from . import iob\n"
        "    from .. import ner\n    from utils.tasks.ner.data import DataError\n"
        "    import importlib\n    importlib.import_module('utils.serving.inputs')\n"
    )
    found = imports(path, sample)
    assert [(item.line, item.target) for item in found] == [
        (2, "utils.tasks.classification.data"),
        (3, "utils.tasks.ner.iob"),
        (4, "utils.tasks.ner"),
        (5, "utils.tasks.ner.data"),
        (6, "importlib"),
        (7, "utils.serving.inputs"),
    ]
    assert str(found[0]) == (
        "utils/tasks/ner/data.py:2: from ..classification import data  (-> utils.tasks.classification.data)"
    )


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("utils.core", ("utils.training", "utils.tasks", "utils.serving")),
        ("utils.training", ("utils.tasks", "utils.serving")),
        ("utils.tasks", ("utils.serving",)),
    ],
)
def test_a_layer_imports_nothing_above_it(package, forbidden):
    violations = broken(package, lambda target: any(within(target, above) for above in forbidden))
    assert not violations, report(f"{package} must import nothing from {', '.join(forbidden)}", violations)


def test_a_task_package_imports_nothing_from_another_task():
    packages = task_packages()
    violations = []
    for package in packages:
        others = [other for other in packages if other != package]
        violations += broken(
            package,
            lambda target, others=others: within(target, REGISTRY) or any(within(target, other) for other in others),
        )
    assert not violations, report(
        f"a task package ({', '.join(packages)}) must import nothing from another task "
        f"package (nor {REGISTRY}, which imports them all)",
        violations,
    )


def test_serving_imports_nothing_from_training():
    """Serving loads saved models; what it shares with training (packing, ordering) lives in utils.core."""
    violations = broken("utils.serving", lambda target: within(target, "utils.training"))
    assert not violations, report("utils.serving must import nothing from utils.training", violations)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules under utils/ it imports (a package import counts as its `__init__`)."""
    known = modules()
    return {
        name: {found.target for found in imports(path) if found.target in known and found.target != name}
        for name, path in known.items()
    }


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted: a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(circles)


def test_the_circle_finder_finds_circles():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    circles = import_circles(import_graph())
    assert not circles, report(
        "no module under utils/ may import itself through others (imports inside functions count)",
        [" <-> ".join(circle) for circle in circles],
    )


def test_serving_reaches_the_tasks_only_through_the_registry():
    violations = broken("utils.serving", lambda target: within(target, "utils.tasks"), allowed={REGISTRY})
    assert not violations, report(f"utils.serving must import from utils.tasks only {REGISTRY}", violations)


# ---------------------------------------------------------------- size, task names, the training loop


def test_no_module_is_longer_than_400_lines():
    lengths = {relative(path): len(path.read_text(encoding="utf-8").splitlines()) for path in modules().values()}
    too_long = [f"{file}: {n} lines" for file, n in sorted(lengths.items()) if n > MAX_LINES]
    assert not too_long, report(f"no file under utils/ may be longer than {MAX_LINES} lines", too_long)


@cache
def task_identities() -> tuple[frozenset[str], frozenset[str]]:
    """The tasks' names (`Task(name="ner", ...)`) and the constants that hold them (`NER_TASK = Task(...)`), read
    from every task package's source."""
    names, constants = set(), set()
    for package in task_packages():
        for path in layer_modules(package).values():
            for node in ast.walk(tree(path)):
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Call)
                    and ast.unparse(node.value.func).split(".")[-1] == "Task"
                ):
                    constants |= {target.id for target in node.targets if isinstance(target, ast.Name)}
                    names |= {
                        keyword.value.value
                        for keyword in node.value.keywords
                        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)
                    }
    assert {"ner", "classification"} <= names and {"NER_TASK", "CLASSIFICATION_TASK"} <= constants, (names, constants)
    return frozenset(names), frozenset(constants)


def names_a_task(node: ast.expr) -> bool:
    """A task's name as a literal (also inside a tuple/list/set), a task constant, or `<...task...>.name`."""
    names, constants = task_identities()
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(names_a_task(element) for element in node.elts)
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.Attribute):
        return node.attr in constants or (node.attr == "name" and "task" in ast.unparse(node.value).lower())
    return False


def task_name_comparisons(path: Path, parsed: ast.Module | None = None) -> list[str]:
    """Comparisons (==, !=, is, in, ...), `match` cases and lookups that tell one task from another by name."""
    found = []
    for node in ast.walk(parsed or tree(path)):
        if isinstance(node, ast.Compare) and any(names_a_task(side) for side in [node.left, *node.comparators]):
            found.append(f"{relative(path)}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.match_case) and any(
            isinstance(pattern, ast.MatchValue) and names_a_task(pattern.value) for pattern in ast.walk(node.pattern)
        ):
            found.append(f"{relative(path)}:{node.pattern.lineno}: case {ast.unparse(node.pattern)}")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Attribute) and names_a_task(node.slice):
            found.append(f"{relative(path)}:{node.lineno}: {ast.unparse(node)} (a lookup keyed on the task's name)")
    return sorted(found, key=lambda item: int(item.split(":")[1]))


@pytest.mark.parametrize("package", SHARED_LAYERS)
def test_shared_modules_never_compare_a_task_name(package):
    violations = [found for path in layer_modules(package).values() for found in task_name_comparisons(path)]
    assert not violations, report(
        f"{package} must reach what a task knows through its Task record, never by "
        "comparing the task's name or identity",
        violations,
    )


def test_the_name_comparison_reader_finds_each_form():
    sample = ast.parse(
        'a = task.name == "ner"\nb = spec.task.name != other\nc = t is NER_TASK\n'
        'd = x in ("classification", "y")\ne = path.name == "config.json"\nf = TABLE[task.name]\n'
        'match kind:\n    case "ner":\n        pass\ng = t is not self.CLASSIFICATION_TASK\n'
    )
    found = task_name_comparisons(UTILS / "core" / "task.py", sample)
    # path.name is a file's name, not a task's
    assert [int(item.split(":")[1]) for item in found] == [1, 2, 3, 4, 6, 8, 10], found
    assert found[0] == "utils/core/task.py:1: task.name == 'ner'"


def training_loop_calls(path: Path) -> list[str]:
    return [
        f"{relative(path)}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"backward", "step"}
    ]  # ast.walk goes by depth: sorted below


def test_only_utils_training_runs_a_training_loop():
    outside = {name: path for name, path in modules().items() if not within(name, "utils.training")}
    violations = [
        found
        for path in outside.values()
        for found in sorted(training_loop_calls(path), key=lambda item: int(item.split(":")[1]))
    ]
    # the same search as text, so a call spelled another way (getattr, a continuation line) is not missed
    for path in outside.values():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if (".backward(" in code or ".step(" in code) and not any(
                found.startswith(f"{relative(path)}:{number}:") for found in violations
            ):
                violations.append(f"{relative(path)}:{number}: {line.strip()}")
    assert not violations, report(
        "only utils/training may call .backward( or an optimizer/scheduler .step(: "
        "a task hands the pipeline its model, loss and data, never its own loop",
        violations,
    )


def test_the_trainer_overrides_only_private_methods_transformers_still_has():
    """`FinetuneTrainer` overrides a private `Trainer` method only where there is no public hook
    (`PRIVATE_OVERRIDES`, each with its reason); an upgrade of transformers that renames one, or changes its
    parameters, fails here instead of silently bypassing the override."""
    import inspect

    from transformers import Trainer

    from utils.training.trainer import PRIVATE_OVERRIDES, FinetuneTrainer

    ours = {
        name
        for name, value in vars(FinetuneTrainer).items()
        if name.startswith("_") and not name.startswith("__") and callable(value)
    }
    assert ours == set(PRIVATE_OVERRIDES), (
        f"private overrides not listed (or listed, not made): {ours ^ set(PRIVATE_OVERRIDES)}"
    )
    for name in PRIVATE_OVERRIDES:
        assert hasattr(Trainer, name), f"transformers' Trainer no longer has {name}"
        upstream = list(inspect.signature(getattr(Trainer, name)).parameters)
        assert list(inspect.signature(getattr(FinetuneTrainer, name)).parameters) == upstream, name
        assert getattr(FinetuneTrainer, name).__doc__ and "Private" in getattr(FinetuneTrainer, name).__doc__, (
            f"{name}: say why no public hook does"
        )
