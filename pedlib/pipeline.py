"""The stage graph of a study and the one runner that runs it.

Each stage module of :mod:`pedlib.stages` declares a :class:`Stage`: its name, the stages it
needs, the tables it makes (under ``results/<study>/``) and one function that makes them from
the study's context and its needs' results. :func:`run` resolves the graph and owns the cache
idiom for every table a stage declares: a table whose record matches the stage's key (its
inputs, params and code, :func:`stage_key`) is read back without running the stages it needs
(beyond those its key reads); else those run first (each once) and the stage makes the table,
which the runner writes atomically with its record and reads back.
A stage's code version is derived from the modules it imports, transitively
(:func:`pedlib.codegraph.code_version`): no stage keeps a list of the modules it depends on.

Two stages own many files rather than a few tables and cache them one by one with the same
records (:mod:`pedlib.records`): ``extract`` (a feature file per model, target and part) and
``finetune`` (a result file per fine-tuning job, resumable on a cluster). The runner calls
them every time; they return at once when every file is fresh.

>>> from pedlib.context import StudyContext
>>> study = StudyContext.load("pocket")           # doctest: +SKIP
>>> scores = run(study, "score")                  # doctest: +SKIP   (ports, extract, score)
>>> print(describe(study))                        # doctest: +SKIP   (the graph, fresh or stale)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


from . import records
from .codegraph import code_version
from .context import StudyContext
from .stages.declaration import Stage
from .stages import feature_store
from .stages import evaluate, extract, figures, finetune, groundtruth, linear_probe, ports, score

__all__ = ["Stage", "STAGES", "run", "order", "stage_key", "keys", "describe", "graph_lines"]


#: Every stage, in the order the notebooks show them.
STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    ports.STAGE, extract.STAGE, linear_probe.STAGE, finetune.STAGE, groundtruth.STAGE, score.STAGE,
    evaluate.STAGE, figures.STAGE)}


def order(target: str | None = None) -> list[Stage]:
    """The stages ``target`` needs, directly or not, and ``target`` last, each after its needs
    (every stage with ``target=None``)."""
    if target is not None and target not in STAGES:
        raise KeyError(f"no stage {target!r}; stages: {', '.join(STAGES)}")
    done: dict[str, Stage] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"the stages need each other: {' -> '.join(path + (name,))}")
        if name in done:
            return
        for need in STAGES[name].needs:
            visit(need, path + (name,))
        done[name] = STAGES[name]

    for name in ([target] if target else STAGES):
        visit(name, ())
    return list(done.values())


def stage_key(study: StudyContext, stage: Stage, inputs: Mapping[str, Any]) -> str:
    """The key of ``stage``'s outputs: its own key of the inputs and params, and the code
    version of its module and everything that module imports."""
    return records.content_key(stage.name, stage.key(study, inputs), code_version(stage.module))


def _paths(study: StudyContext, stage: Stage) -> dict[str, Path]:
    return {name: study.output / path for name, path in stage.outputs(study).items()}


def _fresh(study: StudyContext, stage: Stage, paths: Mapping[str, Path], key: str) -> dict | None:
    """The outputs read back when every one's record matches ``key`` (and the files they
    list are there), else None."""
    if not all(records.is_fresh(path, key) for path in paths.values()):
        return None
    tables = {name: records.read_csv(path) for name, path in paths.items()}
    return tables if stage.intact is None or stage.intact(study, tables) else None


def _result(study: StudyContext, name: str, results: dict, options: Mapping[str, Any]) -> Any:
    """``name``'s result, computed once into ``results``: a stage whose tables are fresh is read
    back without running its needs (beyond those its key reads); a stale one runs them first."""
    if name in results:
        return results[name]
    stage = STAGES[name]
    mine = options.get(name, {})

    def inputs(needs) -> dict:
        return {need: _result(study, need, results, options) for need in needs}

    if stage.key is None:  # a stage that caches its own files
        results[name] = stage.make(study, inputs(stage.needs), **mine)
        return results[name]
    paths = _paths(study, stage)
    if not paths:  # nothing to make for this study
        results[name] = None
        return None
    key_needs = stage.needs if stage.key_needs is None else stage.key_needs
    given = inputs(key_needs)
    key = stage_key(study, stage, given)
    tables = _fresh(study, stage, paths, key)
    if tables is None:
        tables = stage.make(study, {**given, **inputs(n for n in stage.needs if n not in given)}, **mine)
        record = dict(params=study.record_params(), seed=study.params.seed)
        for table, path in paths.items():
            records.write_csv(tables[table], path)
            records.write_record(path, key, **record, extra={"stage": stage.name})
        # what the next stages take is what a rerun would read: the tables as written
        tables = {table: records.read_csv(path) for table, path in paths.items()}
    results[name] = tables
    return tables


def run(study: StudyContext, target: str, *, results: dict | None = None, **options) -> Any:
    """``target``'s result, after every stage it needs that is stale (each once, in order; a
    stage whose tables are fresh is read back without running what it needs). ``options`` go to
    ``target``'s ``make``; ``results``, a dict, receives every stage's result. Holds the study's
    lock (:meth:`StudyContext.locked`)."""
    results = {} if results is None else results
    for stage in order(target):  # what a study cannot do is said before any stage works
        if stage.check is not None and stage.name not in results:
            stage.check(study)
    with study.locked():
        return _result(study, target, results, {target: options})


def keys(study: StudyContext) -> dict[str, str]:
    """The content key of every result the stages make from the data alone, computed without
    doing any work: features, linear probe, port check, score cells and fine-tuning jobs (the
    tables after those are keyed by their content). A key depends on inputs, params and code
    only, never on the process (tested under two hash seeds)."""
    found = {f"features/{m}/{d}-{part}": feature_store.key(study, m, d, part)
             for m, d, part in feature_store.feature_jobs(study)}
    found["groundtruth/linear_probe"] = linear_probe.linear_probe_key(study)
    if ports.ported_models(study):
        found["ports"] = stage_key(study, ports.STAGE, {})
    found.update({f"scores/{m}/{d}": score.cell_key(study, m, d) for d in study.datasets for m in study.models})
    if study.params.groundtruth.finetune.enabled:
        jobs = finetune.finetuning(study)
        found.update({f"finetune/{job.id}": jobs.job_key(job) for job in jobs.jobs()})
    return found


def describe(study: StudyContext | None = None) -> str:
    """The graph, one stage per line with what it needs and makes; with a study, its tables and
    whether they are there (``made``; a made table is still recomputed when its key changed)."""
    lines = []
    for stage in order():
        needs = ", ".join(stage.needs) or "-"
        line = f"{stage.name:<12} needs {needs:<34} {stage.describes}"
        if study is not None:
            paths = _paths(study, stage)
            made = all(records.read_record(path) for path in paths.values())
            line += (f" -> {', '.join(str(p.relative_to(study.output)) for p in paths.values())}"
                     f" [{'made' if made else 'not made'}]" if paths else " [caches its own files]")
        lines.append(line)
    return "\n".join(lines)


def graph_lines() -> list[str]:
    """The graph as Mermaid lines (docs/design.md draws it)."""
    lines = ["flowchart LR"]
    for stage in order():
        lines += [f"    {need} --> {stage.name}" for need in stage.needs]
    return lines
