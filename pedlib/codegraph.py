"""Who imports whom in pedlib, and the code version of a module derived from it.

A result depends on the code that made it: the module that computes it and every pedlib
module that module imports, directly or not. :func:`code_version` hashes exactly that set, so
a cache key never rests on a hand-kept list of modules (a forgotten one would leave a result
silently stale) and an edit to a module makes stale exactly the results whose code imports it.

Imports are read from the source (:mod:`ast`), not by importing: at module level, inside
functions (a lazy import is still a dependency) and under ``if TYPE_CHECKING:`` (the code
behind a type is what runs). The package's ``__init__`` (a facade of lazy names) is not a node.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["import_graph", "find_cycles", "closure", "code_version", "PACKAGE_ROOT"]

PACKAGE_ROOT = Path(__file__).resolve().parent


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.with_suffix("").relative_to(package.parent).parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _typing_only(tree: ast.AST) -> set[int]:
    return {id(n) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}


def import_graph(package: Path = PACKAGE_ROOT, *, typing: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (``typing=False``: leaving out the
    imports under ``if TYPE_CHECKING:``)."""
    modules = {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skipped = set() if typing else _typing_only(tree)
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
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
    """Every import cycle a depth-first walk meets, each as [a, b, ..., a]."""
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


def closure(graph: dict[str, set[str]], *modules: str) -> list[str]:
    """``modules`` and every module they import, directly or not, sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return sorted(seen)


def _source_file(module: str, package: Path) -> Path:
    relative = Path(*module.split(".")[1:])
    file = package / relative.with_suffix(".py")
    return file if file.is_file() else package / relative / "__init__.py"


@lru_cache(maxsize=None)
def _cached_graph(package: Path) -> dict[str, set[str]]:
    return import_graph(package)


def code_version(*modules: str, package: Path = PACKAGE_ROOT) -> str:
    """The code version of ``modules`` (``"pedlib.stages.score"``, or relative to the package:
    ``"stages.score"``): the sha256 (16 hex digits) of the source of each and of every pedlib
    module they import, transitively."""
    graph = _cached_graph(package)
    names = [m if m.startswith(f"{package.name}.") else f"{package.name}.{m}" for m in modules]
    unknown = [m for m in names if m not in graph]
    if unknown:
        raise ValueError(f"code_version: no {package.name} module {unknown[0]!r}")
    return _hash_files(package, tuple(closure(graph, *names)))


@lru_cache(maxsize=None)
def _hash_files(package: Path, modules: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for module in modules:
        file = _source_file(module, package)
        digest.update(str(file.relative_to(package)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
