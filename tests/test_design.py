"""The package's shape (docs/design.md): no import cycle, no class over 300 lines, one
module per stage, notebooks paired with their jupytext source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pedlib"


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.with_suffix("").relative_to(package.parent).parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside functions
    (a lazy import is still a dependency); ``if TYPE_CHECKING:`` blocks are left out. The
    package's own ``__init__`` (a facade of lazy names) is not a node."""
    modules = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        typing_only = {id(n) for node in ast.walk(tree)
                       if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = here.split(".")[:len(here.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:  # `from . import x` imports the module x; `from .x import f`, x
                    deps.update([f"{target}.{alias.name}"] if f"{target}.{alias.name}" in modules
                                else [target] if target in modules else [])
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in modules)
        deps.discard(name)
        deps.discard(package.name)
        graph[name] = deps
    graph.pop(package.name, None)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_the_cycle_finder_finds_a_cycle_and_the_graph_sees_lazy_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .c import g\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                                  "def g():\n    from pkg import a\n")
    graph = import_graph(package)
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_pedlib_has_no_import_cycle():
    graph = import_graph()
    assert "pedlib.study" in graph and "pedlib.stages.score" in graph["pedlib.study"]
    assert find_cycles(graph) == []


def test_no_class_is_longer_than_300_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_each_stage_is_a_module_that_does_not_import_the_study():
    stages = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert {"ports", "extract", "groundtruth", "finetune", "score", "evaluate", "figures"} <= stages
    graph = import_graph()
    assert not any("pedlib.study" in graph[f"pedlib.stages.{stage}"] for stage in stages)
    assert "pedlib.study" not in graph["pedlib.cluster"]
    assert "pedlib.cluster" not in graph["pedlib.params"]


@pytest.mark.parametrize("notebook", sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_each_notebook_is_in_sync_with_its_jupytext_pair(notebook):
    jupytext = pytest.importorskip("jupytext")
    import nbformat

    ipynb = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4)
    paired = jupytext.read(ROOT / "notebooks" / f"{notebook}.py")
    assert [(c.cell_type, c.source) for c in paired.cells] == [(c.cell_type, c.source) for c in ipynb.cells], \
        f"notebooks/{notebook}.py and .ipynb differ: run `.venv/bin/jupytext --sync notebooks/{notebook}.ipynb`"
    assert ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    ids = [cell.id for cell in ipynb.cells]
    assert len(set(ids)) == len(ids)
    assert sum("parameters" in c.metadata.get("tags", []) for c in ipynb.cells) == 1
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in ipynb.cells if c.cell_type == "code"), "commit notebooks without outputs"
