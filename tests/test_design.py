"""The package's shape (docs/design.md): no import cycle, no class over 300 lines, one
module per stage, notebooks paired with their jupytext source."""

import ast
from pathlib import Path

import pytest

from pedlib.codegraph import closure, find_cycles, import_graph

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pedlib"


def test_pedlib_has_no_import_cycle_even_through_type_checking_imports():
    graph = import_graph()  # imports under TYPE_CHECKING included
    assert "pedlib.stages.score" in graph["pedlib.pipeline"] and "pedlib.context" in graph["pedlib.stages.score"]
    assert find_cycles(graph) == []


def test_the_context_imports_no_stage_and_the_stages_no_study_or_runner():
    graph = import_graph()
    reach = {module: set(closure(graph, module)) for module in graph}
    assert not any(m.startswith("pedlib.stages") or m in ("pedlib.pipeline", "pedlib.study")
                   for m in reach["pedlib.context"])
    for stage in (m for m in graph if m.startswith("pedlib.stages.")):
        assert not {"pedlib.study", "pedlib.pipeline"} & reach[stage], stage
    assert "pedlib.study" not in graph["pedlib.cluster"]
    assert "pedlib.cluster" not in graph["pedlib.params"]


def test_no_module_imports_another_modules_private_name():
    """What modules share is public where it belongs: ``from .x import _name`` (or ``x._name``)
    across modules is refused."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   for alias in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pedlib")):
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")
                          and alias.name != "_require" and f"{node.module}" != "__future__"]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in modules and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert found == []


def test_no_function_is_longer_than_100_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 100:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_no_class_is_longer_than_300_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_each_stage_is_a_module_that_declares_itself():
    from pedlib.pipeline import STAGES

    helpers = {"__init__", "declaration", "feature_store", "variants"}
    modules = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - helpers
    assert {stage.module for stage in STAGES.values()} == {f"pedlib.stages.{m}" for m in modules}


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


def test_design_md_draws_the_graph_the_stages_declare():
    from pedlib.pipeline import graph_lines

    text = (ROOT / "docs" / "design.md").read_text()
    drawn = text.split("```mermaid\n", 1)[1].split("```", 1)[0].rstrip("\n").splitlines()
    assert drawn == graph_lines(), "docs/design.md: paste the output of pedlib.pipeline.graph_lines()"


def test_pedlib_stages_prints_the_graph_and_a_studys_tables(capsys, tmp_path):
    from pedlib.cli import main
    from pedlib.pipeline import STAGES

    assert main(["stages"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(STAGES)
    assert lines[-1].startswith("figures      needs ports, extract, groundtruth, score, evaluate")
    assert main(["stages", str(ROOT / "params" / "smoke.yaml")]) == 0
    out = capsys.readouterr().out
    assert "extract      needs ports" in out and "[caches its own files]" in out
    assert "-> scores.csv [" in out and "-> evaluation.csv, ped_effect.csv, paired_differences.csv [" in out
    assert main(["stages", "no-such-study"]) == 2
    assert "no study 'no-such-study'" in capsys.readouterr().err
