"""Code versions derived from the import graph: an edit makes stale exactly the stages whose
code imports the edited module, directly or not; no cache key rests on a list of modules."""

import ast
import re
import shutil
from pathlib import Path

import pytest

from pedlib import codegraph

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pedlib"


def test_the_graph_sees_lazy_and_typing_imports_and_the_cycle_finder_finds_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .c import g\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                                  "def g():\n    pass\n")
    graph = codegraph.import_graph(package)
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert codegraph.find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert codegraph.import_graph(package, typing=False)["pkg.c"] == set()
    assert codegraph.closure(graph, "pkg.b") == ["pkg.a", "pkg.b", "pkg.c"]


def _stage_versions(package: Path) -> dict[str, str]:
    from pedlib.pipeline import STAGES

    return {name: codegraph.code_version(stage.module.replace("pedlib", package.name, 1), package=package)
            for name, stage in STAGES.items()}


@pytest.mark.parametrize("edited", ["pedlib/ped.py", "pedlib/plots.py", "pedlib/groundtruth/linear_probe.py",
                                    "pedlib/models/port_check.py", "pedlib/context.py", "pedlib/stages/score.py"])
def test_editing_one_module_makes_stale_exactly_the_stages_that_import_it(tmp_path, edited):
    """In a copy of the package, append a comment to one module: the stages whose module imports
    it, directly or not (read independently here: by walking the copied sources' import
    statements), change code version; every other stage keeps its own."""
    copy = tmp_path / "pedlib"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = _stage_versions(copy)
    (copy / edited[len("pedlib/"):]).write_text((PACKAGE / edited[len("pedlib/"):]).read_text() + "\n# edited\n")
    codegraph._cached_graph.cache_clear()
    codegraph._hash_files.cache_clear()
    after = _stage_versions(copy)
    from pedlib.pipeline import STAGES

    module = edited[:-3].replace("/", ".").removesuffix(".__init__")
    importers = {name for name, stage in STAGES.items() if module in _reachable(stage.module)}
    assert importers, f"no stage imports {module}: pick a module a stage uses"
    stale = {name for name in STAGES if before[name] != after[name]}
    assert stale == importers
    # and by hand, for two edits whose reach a reader knows
    if module == "pedlib.plots":
        assert stale == {"figures"}
    if module == "pedlib.groundtruth.linear_probe":
        assert "linear_probe" in stale and not {"score", "ports"} & stale


def _reachable(module: str) -> set[str]:
    """Modules ``module`` imports, transitively, by a plain regex over the sources (a second
    reading of the graph, not the one under test)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = PACKAGE.parent / Path(*name.split("."))
        file = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for dots, target, names in re.findall(r"^\s*from (\.+)([\w.]*) import ([^\n(]*(?:\([^)]*\))?)",
                                             file.read_text(), re.M):
            base = package.split(".")[:len(package.split(".")) - len(dots) + 1]
            prefix = ".".join(base + ([target] if target else []))
            for alias in re.findall(r"\w+(?= as |\s*,|\s*\)|\s*$)", names.replace("\n", " ")):
                candidate = f"{prefix}.{alias}"
                todo.append(candidate if _exists(candidate) else prefix)
    return {m for m in seen if _exists(m) and m != "pedlib"}


def _exists(module: str) -> bool:
    path = PACKAGE.parent / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_cache_key_names_a_list_of_modules():
    """Code versions come from codegraph.code_version of a module's own name, never from a
    hand-kept tuple of module names."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "code_version":
                if path.name != "codegraph.py" and not (len(node.args) == 1 and ast.unparse(node.args[0]) in ("__name__", "stage.module")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_code_version_names_an_unknown_module():
    with pytest.raises(ValueError, match="no pedlib module 'pedlib.nonexistent'"):
        codegraph.code_version("nonexistent")
    assert codegraph.code_version("ped") != codegraph.code_version("metrics")
