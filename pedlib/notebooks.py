"""Run the pipeline notebooks headless, as ``make reproduce`` does, and bundle them as a report.

``run_notebooks(study, names)`` executes ``notebooks/<name>.ipynb`` with papermill in the
project root, with the study's name as its parameter:

* the params file is validated first, so a typo stops the run before any kernel starts;
* each notebook is written to a temporary name and renamed to
  ``results/<study>/notebooks/<name>.ipynb`` only when every cell succeeded. A failed or
  interrupted run is kept as ``<name>.failed.ipynb``, marked as such in its first cell and
  its metadata, and its traceback is written to ``results/<study>/logs/<name>.log``; the
  run then ends with pedlib's one-line message (:class:`NotebookFailed`);
* the kernel talks to papermill over local IPC sockets (no TCP port, so no warning about
  unencrypted TCP), and pedlib's progress goes to the launching terminal, one line per
  update (``PEDLIB_PROGRESS=terminal``, see :mod:`pedlib.progress`).

``write_report(study)`` joins the executed notebooks into one self-contained HTML file
(figures embedded) that opens offline.
"""

from __future__ import annotations

from ._extras import require as _require

_require("study", "pedlib.notebooks")

import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["PIPELINE", "NotebookFailed", "run_notebooks", "write_report", "project_root"]

#: The pipeline notebooks, in order.
#: The PED paper's weighted tau (its README table), set beside a study's in the report.
PAPER_TABLE = "params/published/wtau_ped_paper_ssl.csv"

PIPELINE = ("01_groundtruth", "02_extract", "03_score", "04_evaluate", "05_figures")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NotebookFailed(RuntimeError):
    """A notebook stopped; the message is one line: which, why, and where the details are."""


def project_root() -> Path:
    """The checkout this pedlib runs from (the folder holding ``notebooks/``)."""
    return Path(__file__).resolve().parent.parent


def _kernel_manager():
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        """A kernel reached over local IPC sockets rather than TCP ports."""

        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return IPCKernelManager


def _mark(path: Path, status: str, message: str):
    """Say at the top of a notebook, and in its metadata, that it did not complete."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["pedlib"] = {"status": status, "message": message,
                                   "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    banner = nbformat.v4.new_markdown_cell(f"**This run {status}: it is incomplete.** {message}")
    banner.id = "pedlib-status"
    notebook.cells = [c for c in notebook.cells if c.get("id") != "pedlib-status"]
    notebook.cells.insert(0, banner)
    nbformat.write(notebook, path)


def _run_one(name: str, study: str, root: Path, source_dir: Path, out_dir: Path, log_dir: Path,
             parameters: dict) -> float:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = source_dir / f"{name}.ipynb"
    if not source.is_file():
        raise NotebookFailed(f"no notebook {source}")
    done, failed = out_dir / f"{name}.ipynb", out_dir / f"{name}.failed.ipynb"
    # the process's own name: two runs of one study at once each write their own
    running = out_dir / f".{name}.running-{os.getpid()}.ipynb"
    for stale in (done, failed, *_orphans(out_dir, name)):  # a result of this run, or nothing
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(running), parameters={"study": study, **parameters},
                                   cwd=str(root), progress_bar=False, log_output=False,
                                   kernel_name="python3", kernel_manager_class=_kernel_manager())
    except PapermillExecutionError as error:
        log = log_dir / f"{name}.log"
        log.write_text(_ANSI.sub("", "\n".join(error.traceback)) + "\n")
        first = str(error.evalue).strip().splitlines()[0] if str(error.evalue).strip() else ""
        message = f"{error.ename}: {first}" if first else error.ename
        if running.exists():
            _mark(running, "failed", f"{message} (traceback: {log})")
            os.replace(running, failed)
        raise NotebookFailed(f"{name} failed: {message} [traceback: {_relative(log, root)}; "
                             f"notebook: {_relative(failed, root)}]") from None
    except KeyboardInterrupt:
        if running.exists():
            _mark(running, "was interrupted", "Stopped by the user (Ctrl-C) before its last cell.")
            os.replace(running, failed)
        raise
    os.replace(running, done)
    return time.perf_counter() - started


def _orphans(out_dir: Path, name: str) -> list[Path]:
    """Running copies of ``name`` left by processes that no longer exist (killed runs)."""
    orphans = []
    for path in out_dir.glob(f".{name}.running-*.ipynb"):
        try:
            os.kill(int(path.name.rsplit("-", 1)[1].split(".")[0]), 0)
        except ProcessLookupError:
            orphans.append(path)
        except (ValueError, PermissionError):  # not ours to judge
            pass
    return orphans


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def run_notebooks(study: str, names=PIPELINE, *, notebooks: Path | None = None,
                  parameters: dict | None = None, stream=None) -> dict[str, float]:
    """Execute ``names`` in order for ``study`` (a name looked up as ``params/<study>.yaml``
    from the current folder up, or a params file); returns seconds per notebook.

    The kernels run in the study's project folder (the one holding ``params/``); the notebooks
    come from ``notebooks`` (default: this checkout's ``notebooks/``). Raises
    :class:`NotebookFailed` (after writing the log and the marked notebook) on the first
    failing notebook, :class:`~pedlib.params.ParamsError` for a bad params file before any
    notebook starts, and KeyboardInterrupt when interrupted.
    """
    from .progress import format_seconds
    from .study import Study

    source_dir = Path(notebooks or project_root() / "notebooks")
    stream = stream or sys.stderr
    unknown = [n for n in names if not (source_dir / f"{n}.ipynb").is_file()]
    if unknown:
        raise NotebookFailed(f"no notebook {unknown[0]!r} in {source_dir}; the pipeline is "
                             f"{', '.join(PIPELINE)}")
    run = Study.load(study, progress=False)  # validates the params before any kernel starts
    root = Path(run.params.root).resolve()
    study = str(Path(run.params_path).resolve())
    out_dir = run.output / "notebooks"
    log_dir = run.output / "logs"
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("PEDLIB_PROGRESS")
    os.environ["PEDLIB_PROGRESS"] = "terminal" if saved != "off" else "off"
    times = {}
    try:
        for name in names:
            stream.write(f"==> {name} (study {run.params.study})\n")
            stream.flush()
            times[name] = _run_one(name, study, root, source_dir, out_dir, log_dir, dict(parameters or {}))
            stream.write(f"==> {name} done in {format_seconds(times[name])}\n")
            stream.flush()
        if len(times) > 1:
            each = ", ".join(f"{n} {format_seconds(t)}" for n, t in times.items())
            stream.write(f"==> {len(times)} notebooks in {format_seconds(sum(times.values()))} ({each})\n")
            stream.flush()
    finally:
        if saved is None:
            os.environ.pop("PEDLIB_PROGRESS", None)
        else:
            os.environ["PEDLIB_PROGRESS"] = saved
    return times


def write_report(study: str, *, path: Path | None = None) -> Path:
    """Join the study's executed notebooks (``results/<study>/notebooks``) into one HTML file
    with every figure embedded, readable offline; returns its path (default
    ``results/<study>/report.html``)."""
    import nbformat
    from nbconvert import HTMLExporter

    from . import records
    from .study import Study

    run = Study.load(study, progress=False)
    executed = [run.output / "notebooks" / f"{name}.ipynb" for name in PIPELINE]
    present = [p for p in executed if p.is_file()]
    if not present:
        raise NotebookFailed(f"no executed notebooks in {run.output / 'notebooks'}; run `make reproduce "
                             f"STUDY={run.params.study}` first")
    missing = [p.stem for p in executed if not p.is_file()]
    report = nbformat.v4.new_notebook()
    report.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    report.cells.append(nbformat.v4.new_markdown_cell(_report_front(run, present, missing)))
    for notebook_path in present:
        notebook = nbformat.read(notebook_path, as_version=4)
        report.cells.extend(c for c in notebook.cells if "parameters" not in c.get("metadata", {}).get("tags", [])
                            and "injected-parameters" not in c.get("metadata", {}).get("tags", []))
    for i, cell in enumerate(report.cells):
        cell.id = f"report-{i:03d}"
        for output in cell.get("outputs", []):
            _image_with_alt_text(output)
    exporter = HTMLExporter(template_name="lab", embed_images=True, exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.mathjax_url = ""  # no formula needs it, and it would be fetched from the network
    body, _ = exporter.from_notebook_node(
        report, resources={"metadata": {"name": f"pedlib: the {run.params.study} study"}})
    # RequireJS only serves JavaScript widget outputs, which these notebooks do not have; its
    # tag would be the one thing the page fetches from the network.
    body = body.replace(f'<script src="{exporter.require_js_url}"></script>', "")
    target = Path(path) if path else run.output / "report.html"
    records.atomic_write(target, lambda tmp: tmp.write_text(body, encoding="utf-8"))
    return target


def _report_front(run, present: list[Path], missing: list[str]) -> str:
    """The report's first cell: the study, its headline figure with its caption, and the
    evaluation's conclusion, before the notebooks that made them."""
    import base64

    from . import records, summary
    from .stages.figures import HEADLINE, figure_index

    parts = [f"# The `{run.params.study}` study", run.params.description.strip(),
             f"{len(run.models)} models; targets {', '.join(run.datasets)}."]
    index = figure_index(run).set_index("name")
    if HEADLINE in index.index and (run.figures_dir / index.loc[HEADLINE, "file"]).is_file():
        caption = index.loc[HEADLINE, "caption"]
        data = base64.b64encode((run.figures_dir / index.loc[HEADLINE, "file"]).read_bytes()).decode()
        parts += ["## Does PED help?", _img(data, caption), f"*{caption}*"]
    evaluation, paired = run.output / "evaluation.csv", run.output / "paired_differences.csv"
    if evaluation.is_file():
        parts.append(summary.evaluation(records.read_csv(evaluation),
                                        paired=records.read_csv(paired) if paired.is_file() else None))
        published = Path(run.params.root) / PAPER_TABLE
        if published.is_file():
            parts += ["## The paper beside this study",
                      "Mean weighted tau without PED → with PED (docs/paper-vs-study.md: what differs between "
                      "the two settings and what the study measured about it).",
                      summary.paper_beside(records.read_csv(evaluation), records.read_csv(published))]
    parts.append("The executed notebooks follow (" + ", ".join(p.stem for p in present) + "), as run by "
                 f"`make reproduce STUDY={run.params.study}`"
                 + (f"; not run yet: {', '.join(missing)}" if missing else "")
                 + f". Every figure and table is in `{run.figures_dir.relative_to(run.params.root)}/`, "
                 "listed with its caption in `index.md`.")
    return "\n\n".join(part for part in parts if part)


def _image_with_alt_text(output) -> None:
    """Give a PNG output its alternative text: the ``alt`` its cell set (the figures
    notebook sets each figure's caption), else a generic one. nbconvert writes no alt text of
    its own for a PNG output."""
    data = output.get("data", {})
    if "image/png" not in data:
        return
    alt = (output.get("metadata", {}).get("image/png", {}) or {}).get("alt") or "A figure of the study"
    output["data"] = {"text/html": _img(data["image/png"].replace("\n", ""), alt)}


def _img(png_base64: str, alt: str) -> str:
    """An HTML image of a base64 PNG, with its alternative text, as wide as the page allows."""
    import html

    return f'<img src="data:image/png;base64,{png_base64}" alt="{html.escape(alt)}" style="max-width: 100%">'

