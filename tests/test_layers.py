"""The package's shape: layers import only downward, modules stay small, no import cycles.

Layers, lowest first: ``grouputils/core/`` < ``grouputils/outputs/`` <
``grouputils/run/`` < ``grouputils/teaching/`` < the root (``__init__``,
``__main__``, ``cli``, ``settings_doc``). A module may import its own layer and
lower ones. Every ``import`` counts, wherever it is: at module level, inside a
function (a lazy import is still a dependency) and under ``TYPE_CHECKING``.
The cycle check follows the imports that run (``TYPE_CHECKING`` blocks left
out), lazy ones included. The checker is plain ``ast`` over the source files
(nothing is imported), and is itself tested on a small fake package.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "grouputils"

#: Sub-package -> layer rank (a module may import ranks <= its own).
LAYERS = {"core": 0, "outputs": 1, "run": 2, "teaching": 3}
ROOT = 4
LAYER_NAMES = {**{v: k for k, v in LAYERS.items()}, ROOT: "root"}
MAX_LINES = 500


@dataclasses.dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` (both dotted module names) at ``line``."""

    source: str
    target: str
    line: int
    type_only: bool  # inside ``if TYPE_CHECKING:``


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` (a package's ``__init__`` is its name)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer(name: str, mods: dict[str, Path]) -> int | None:
    """Layer rank of module ``name``; ``None`` for a sub-package that is no layer."""
    parts = name.split(".")
    if len(parts) == 1:
        return ROOT
    if parts[1] in LAYERS:
        return LAYERS[parts[1]]
    is_root_module = len(parts) == 2 and mods[name].name != "__init__.py"
    return ROOT if is_root_module else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_by_call(node: ast.AST) -> str | None:
    """The module a call ``import_module("a.b")`` / ``__import__("a.b")`` names, if constant."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    arg = node.args[0]
    if called in {"import_module", "__import__"} and isinstance(arg, ast.Constant):
        return arg.value if isinstance(arg.value, str) else None
    return None


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree`` and whether it sits under ``if TYPE_CHECKING:``."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append((node, type_only))
        name = _imported_by_call(node)
        if name is not None:  # importlib.import_module("grouputils.x"): an import all the same
            out.append((ast.Import(names=[ast.alias(name=name)], lineno=node.lineno), type_only))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return out


def edges(package: Path) -> tuple[dict[str, Path], list[Edge]]:
    """The package's modules and every import from one of them to another."""
    mods = modules(package)
    top = package.name
    out = []
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]  # the package relative imports start at
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, type_only in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports the module pkg.mod; `from pkg import name` pkg
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                if t == top or t.startswith(top + "."):
                    # `import grouputils.core.tiles.Tile`-like names: the longest module prefix
                    while t not in mods and "." in t:
                        t = t.rpartition(".")[0]
                    if t != name:
                        out.append(Edge(name, t, node.lineno, type_only))
    return mods, out


def upward_imports(package: Path) -> list[str]:
    """``"a (layer) imports b (layer) at line n"`` for every import that goes up a layer."""
    mods, es = edges(package)
    problems = [
        f"{n}: not in a layer (sub-packages are {sorted(LAYERS)})"
        for n in mods
        if layer(n, mods) is None
    ]
    for e in es:
        a, b = layer(e.source, mods), layer(e.target, mods)
        if a is None or b is None:
            continue
        if b > a:
            problems.append(
                f"{e.source} ({LAYER_NAMES[a]}) imports {e.target} ({LAYER_NAMES[b]}) "
                f"at line {e.line}"
            )
    return problems


def long_modules(package: Path, limit: int = MAX_LINES) -> list[str]:
    """``"module: n lines"`` for every module over ``limit`` lines."""
    out = []
    for name, path in modules(package).items():
        n = len(path.read_text().splitlines())
        if n > limit:
            out.append(f"{name}: {n} lines")
    return out


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strong(v: str) -> None:  # recursion depth is bounded by the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on_stack.discard(comp[-1])
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return components


def _cycle_through(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest cycle ``[start, ..., start]`` inside ``members`` (breadth first)."""
    prev: dict[str, str] = {start: start}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            if start in graph[v]:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            for w in sorted(graph[v] & members):
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is on no cycle of {sorted(members)}")


def import_cycles(package: Path) -> list[list[str]]:
    """The import cycles among the modules (imports that run; lazy ones included).

    Each strongly connected component of more than one module is reported as
    one shortest cycle through its first module.
    """
    mods, es = edges(package)
    graph: dict[str, set[str]] = {n: set() for n in mods}
    for e in es:
        if not e.type_only:
            graph[e.source].add(e.target)
    return [_cycle_through(graph, set(c), c[0]) for c in _components(graph)]


# ------------------------------------------------------------------ the real package
def test_imports_only_go_downward():
    """core < outputs < run < teaching < root; lazy and TYPE_CHECKING imports count too."""
    problems = upward_imports(PACKAGE)
    assert not problems, "imports that go up a layer:\n" + "\n".join(problems)


def test_no_module_over_500_lines():
    problems = long_modules(PACKAGE)
    assert not problems, f"modules over {MAX_LINES} lines:\n" + "\n".join(problems)


def test_no_import_cycle():
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_the_whole_package():
    """The checks are not vacuous: every layer has modules and imports are found."""
    mods, es = edges(PACKAGE)
    ranks = {layer(n, mods) for n in mods}
    assert set(LAYERS.values()) | {ROOT} <= ranks
    assert {"grouputils.cli", "grouputils.settings_doc", "grouputils.__main__"} <= set(mods)
    # run imports core at least (the state and the steps build on the settings and tiles)
    assert any(
        layer(e.source, mods) == LAYERS["run"] and layer(e.target, mods) == LAYERS["core"]
        for e in es
    )


# ------------------------------------------------------------------ the checker itself
def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "grouputils"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


_CLEAN = {
    "__init__.py": "def __getattr__(name):\n    import importlib\n"
    "    return importlib.import_module('grouputils.run.steps')\n",
    "__main__.py": "from grouputils.cli import main\n",
    "cli.py": "from grouputils.run import steps\nimport grouputils.teaching.course\n",
    "settings_doc.py": "from grouputils.core.config import Config\n",
    "core/__init__.py": "",
    "core/config.py": "from .tiles import Tile\nimport numpy\n",
    "core/tiles.py": "import math\n",
    "core/staging/__init__.py": "from grouputils.core.staging.parts import write_parts\n",
    "core/staging/parts.py": "from ..tiles import Tile\nfrom grouputils.core import config\n",
    "outputs/__init__.py": "",
    "outputs/catalog.py": "from grouputils.core.tiles import Tile\n",
    "run/__init__.py": "",
    "run/steps.py": "from grouputils.outputs import catalog\nfrom . import state\n",
    "run/state.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
    "    from grouputils.run.steps import Step\n",
    "teaching/__init__.py": "",
    "teaching/course.py": "def f():\n    from grouputils.run.steps import run\n",
}


def test_checker_passes_a_clean_package(tmp_path):
    pkg = _write(tmp_path, _CLEAN)
    mods, es = edges(pkg)
    assert "grouputils.core.staging" in mods and "grouputils.core.staging.parts" in mods
    found = {(e.source, e.target) for e in es}
    assert ("grouputils.core.config", "grouputils.core.tiles") in found  # relative
    assert ("grouputils.core.staging.parts", "grouputils.core.tiles") in found  # `..`
    assert (
        "grouputils.core.staging.parts",
        "grouputils.core.config",
    ) in found  # from pkg import mod
    assert ("grouputils.run.steps", "grouputils.run.state") in found  # `from . import`
    assert ("grouputils.teaching.course", "grouputils.run.steps") in found  # lazy
    assert upward_imports(pkg) == []
    assert long_modules(pkg) == []
    # steps <-> state only under TYPE_CHECKING: not a cycle
    assert import_cycles(pkg) == []


@pytest.mark.parametrize(
    ("rel", "text", "expected"),
    [
        # a lazy upward import inside a function
        (
            "core/tiles.py",
            "def f():\n    from grouputils.run.state import RunState\n",
            "grouputils.core.tiles (core) imports grouputils.run.state (run)",
        ),
        # an upward relative import
        (
            "outputs/catalog.py",
            "from ..teaching import course\n",
            "grouputils.outputs.catalog (outputs) imports grouputils.teaching.course (teaching)",
        ),
        # the lazy package root, from below
        (
            "teaching/course.py",
            "import grouputils\n",
            "grouputils.teaching.course (teaching) imports grouputils (root)",
        ),
        # a root module, from below, under TYPE_CHECKING
        (
            "run/state.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from grouputils import cli\n",
            "grouputils.run.state (run) imports grouputils.cli (root)",
        ),
        # by name, through importlib
        (
            "core/tiles.py",
            "import importlib\nmod = importlib.import_module('grouputils.outputs.catalog')\n",
            "grouputils.core.tiles (core) imports grouputils.outputs.catalog (outputs)",
        ),
        # a sub-package that is no layer
        ("extras/thing.py", "", "grouputils.extras.thing: not in a layer"),
    ],
)
def test_checker_finds_an_upward_import(tmp_path, rel, text, expected):
    pkg = _write(tmp_path, {**_CLEAN, rel: text})
    problems = upward_imports(pkg)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_checker_finds_a_long_module(tmp_path):
    pkg = _write(tmp_path, {**_CLEAN, "run/state.py": "x = 1\n" * (MAX_LINES + 1)})
    assert long_modules(pkg) == [f"grouputils.run.state: {MAX_LINES + 1} lines"]
    pkg = _write(tmp_path, {**_CLEAN, "run/state.py": "x = 1\n" * MAX_LINES})
    assert long_modules(pkg) == []


def test_checker_finds_an_import_cycle(tmp_path):
    # plotting -> profiling at module level, profiling -> plotting lazily: a cycle
    pkg = _write(
        tmp_path,
        {
            **_CLEAN,
            "teaching/plotting.py": "from grouputils.teaching.profiling import Profile\n",
            "teaching/profiling.py": "def plot():\n    from . import plotting\n",
        },
    )
    assert upward_imports(pkg) == []
    assert import_cycles(pkg) == [
        [
            "grouputils.teaching.plotting",
            "grouputils.teaching.profiling",
            "grouputils.teaching.plotting",
        ]
    ]


def test_checker_finds_a_longer_cycle_through_a_package(tmp_path):
    # the package imports its module, which imports the package's own name back via a third one
    pkg = _write(
        tmp_path,
        {
            **_CLEAN,
            "core/staging/parts.py": "from grouputils.core.tiles import Tile\n",
            "core/tiles.py": "from grouputils.core.staging import write_parts\n",
        },
    )
    cycles = import_cycles(pkg)
    assert len(cycles) == 1
    assert set(cycles[0]) == {
        "grouputils.core.staging",
        "grouputils.core.staging.parts",
        "grouputils.core.tiles",
    }
    assert cycles[0][0] == cycles[0][-1] and len(cycles[0]) == 4
