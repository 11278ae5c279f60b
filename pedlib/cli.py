"""Command line: ``pedlib rank``, ``pedlib finetune``, ``pedlib notebooks`` and ``pedlib report``
(also ``python -m pedlib ...``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings

from ._extras import MissingExtra
from .metrics import RECOMMENDED

RANK_HELP = f"""\
Rank candidate backbones for your labelled images without fine-tuning them.

DATA is an ImageFolder (one sub-folder per class) or a CSV of path,label. Each model's
features are extracted (cached in OUT/features, so an interrupted run resumes), scored with
METRIC without and with PED, and ranked. The table is printed and written to OUT as
ranking.csv, ranking.json and ranking.png.

Default: --metric {RECOMMENDED['metric']}, ranked {'with' if RECOMMENDED['ped'] else 'without'} PED
(both columns are always shown). Evidence: on the pocket study (17 models, 5 targets,
figures/pocket/wtau_{{finetune,linear_probe}}_all.md) plain LogME has the best mean weighted
Kendall's tau against both fine-tuning and the linear probe, and PED lowers it; see the
docs/study.md.

--reference DIR: generic images (ImageFolder or CSV; labels unused), ideally from the models'
pretraining distribution; PED standardises each model's features with them. Without it, PED
uses the target's own statistics (not the paper's setting).

Models: pocket zoo names (`pedlib models` lists them), torchvision names (resnet50),
timm:<name>, or <architecture>=<checkpoint.pth>.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pedlib", description="pedlib: choose a pretrained model")
    sub = parser.add_subparsers(dest="command", required=True)
    rank = sub.add_parser("rank", help="rank models for a folder of labelled images",
                          description=RANK_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rank.add_argument("data", help="ImageFolder or CSV of path,label")
    rank.add_argument("--models", nargs="+", required=True, metavar="M", help="candidate models")
    rank.add_argument("--metric", default=RECOMMENDED["metric"], help="feature metric (default: %(default)s)")
    rank.add_argument("--ped", dest="ped", action="store_true", default=RECOMMENDED["ped"],
                      help="rank by the score with PED" + (" (default)" if RECOMMENDED["ped"] else ""))
    rank.add_argument("--no-ped", dest="ped", action="store_false",
                      help="rank by the plain score" + ("" if RECOMMENDED["ped"] else " (default)"))
    rank.add_argument("--reference", metavar="DIR",
                      help="generic images (ImageFolder or CSV, labels unused) for PED's standardisation")
    rank.add_argument("--max-per-class", type=int, metavar="N", help="use at most N images per class")
    rank.add_argument("--out", default="ranking", metavar="DIR", help="output folder (default: %(default)s)")
    rank.add_argument("--batch-size", type=int, default=64)
    rank.add_argument("--device", default="cpu", help="cpu or cuda (JPEGs are then decoded on the GPU)")
    rank.add_argument("--workers", type=int, metavar="N",
                      help="processes decoding images (default: one per core beyond the first, at most 8)")
    rank.add_argument("--seed", type=int, default=0)
    rank.add_argument("--quiet", action="store_true", help="no progress bars")

    sub.add_parser("models", help="list the model zoos and their names",
                   description="List the model zoos (pedlib.models.zoos()) and each zoo's model names. "
                   "`pedlib rank` also takes torchvision names, timm:<name> and <arch>=<checkpoint.pth>.")

    stages = sub.add_parser("stages", help="print the stage graph (with a study: its tables and whether they are made)",
                            description="Print the pipeline's stages, what each needs and makes (pedlib.pipeline); "
                            "with STUDY, the tables each stage caches for it and whether they are there.")
    stages.add_argument("study", nargs="?", help="study name (params/<study>.yaml) or params file")

    finetune = sub.add_parser("finetune", help="run a study's fine-tuning jobs",
                              description=FINETUNE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    finetune.add_argument("study", help="study name (params/<study>.yaml) or params file")
    action = finetune.add_mutually_exclusive_group()
    action.add_argument("--job", metavar="ID", help="run one job (skipped when its result is fresh)")
    action.add_argument("--list", action="store_true", help="list the jobs and whether each is done")
    action.add_argument("--makefile", metavar="PATH", help="write a Makefile of the pending jobs")
    action.add_argument("--collect", action="store_true", help="assemble finished jobs into the table")
    finetune.add_argument("--quiet", action="store_true", help="no progress bars")
    cluster = finetune.add_argument_group("cluster (with --executor; defaults from groundtruth.finetune.slurm)")
    cluster.add_argument("--executor", choices=["slurm", "local"],
                         help="submit the pending jobs through submitit: a SLURM job array, or local processes")
    cluster.add_argument("--wait", action="store_true", help="return when every submitted job has ended")
    cluster.add_argument("--partition", help="SLURM partition")
    cluster.add_argument("--time", type=int, metavar="MINUTES", dest="time_minutes", help="time limit per job")
    cluster.add_argument("--gpus", type=int, dest="gpus_per_task", help="GPUs per job")
    cluster.add_argument("--cpus", type=int, dest="cpus_per_task", help="CPUs per job")
    cluster.add_argument("--mem", type=float, metavar="GB", dest="mem_gb", help="memory per job")
    cluster.add_argument("--parallel", type=int, dest="array_parallelism", metavar="N",
                         help="at most N jobs running at once")

    notebooks = sub.add_parser("notebooks", help="run a study's pipeline notebooks headless",
                               description=NOTEBOOKS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    notebooks.add_argument("study", help="study name (params/<study>.yaml) or params file")
    notebooks.add_argument("names", nargs="*", metavar="NOTEBOOK",
                           help="notebooks to run (default: 01_groundtruth ... 05_figures)")
    report = sub.add_parser("report", help="join a study's executed notebooks into one HTML file")
    report.add_argument("study", help="study name (params/<study>.yaml) or params file")
    report.add_argument("--out", metavar="FILE", help="output file (default results/<study>/report.html)")
    verify = sub.add_parser("verify", help="compare a study's figures and tables with the committed ones",
                            description=VERIFY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("study", help="study name (params/<study>.yaml) or params file")
    verify.add_argument("--against", default="HEAD", metavar="REV", help="the commit to compare with "
                        "(default: %(default)s)")
    verify.add_argument("--no-fail", action="store_true", help="exit 0 whatever the verdict (make reproduce)")
    return parser


VERIFY_HELP = """\
Compare figures/<study>/ with the committed files (what `make verify` does): tables (CSV,
Markdown, LaTeX) number by number, figures (PDF, PNG) byte by byte. Prints one line per file
that is not identical and the verdict: identical, equal within the tolerance, or different.
Exits 1 when a file differs, is missing, or is new.
"""


NOTEBOOKS_HELP = """\
Run the pipeline notebooks of a study headless with papermill (what `make reproduce` does):
the params are checked first; each executed notebook lands in results/<study>/notebooks/
only when it completed (a failed or interrupted one is kept as <name>.failed.ipynb, its
traceback in results/<study>/logs/<name>.log); progress is printed here, one line per update.
"""


FINETUNE_HELP = """\
Run the fine-tuning ground truth of a study as independent jobs (see pedlib.stages.finetune):
one per (model, dataset) for the pocket study's protocol, one per (model, dataset, grid point)
plus one final retrain per seed for the paper studies' sweep. Without an action every pending
job runs here, one after the other, then the table is assembled. `make -j4 finetune
STUDY=...` runs them four at a time through --makefile.

On a cluster: `--executor slurm` submits the pending jobs as a SLURM job array (see
pedlib.cluster; settings from groundtruth.finetune.slurm, overridden by the options below);
run it again to resubmit only jobs without a fresh result, then --collect.
"""


def _finetune(args) -> int:
    from .study import Study

    study = Study.load(args.study, progress=not args.quiet)
    if args.list:
        status, note = study.finetuning.status()
        for state, job in status:
            print(f"{state:<8}  {job.id}")
        counts = {state: sum(s == state for s, _ in status) for state in dict.fromkeys(s for s, _ in status)}
        print(f"{len(status)} jobs: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
        if note:
            print(note)
    elif args.makefile:
        pending, total = study.finetuning.makefile(args.makefile)
        print(f"{args.makefile}: {pending} of {total} jobs pending")
    elif args.executor:
        from .cluster import executor_folder, submit

        if args.collect or args.makefile or args.list:
            raise ValueError("--executor submits jobs; run --list, --makefile or --collect on their own")
        overrides = {k: getattr(args, k) for k in ("partition", "time_minutes", "gpus_per_task",
                                                   "cpus_per_task", "mem_gb", "array_parallelism")}
        submission = submit(study, executor=args.executor, overrides=overrides, wait=args.wait)
        if not submission.count:
            print(f"nothing to submit: every fine-tuning job of {study.params.study} is done "
                  f"(`pedlib finetune {args.study} --collect` assembles the table)")
            return 0
        arrays = ", ".join(f"{str(jobs[0].job_id).split('_')[0]} ({len(jobs)} jobs)" for jobs in submission.arrays)
        print(f"submitted {submission.count} jobs to {args.executor}: {arrays}; logs in {executor_folder(study)}")
        if args.wait or args.executor == "local":
            failed = submission.wait()
            if failed:
                print(f"{len(failed)} job(s) failed, e.g. {failed[0]}; their logs are in "
                      f"{executor_folder(study)}; submit again to rerun them", file=sys.stderr)
                return 1
            print(f"all {submission.count} jobs ended; `pedlib finetune {args.study} --collect` assembles the table")
        else:
            print(f"when they have ended: `pedlib finetune {args.study} --collect` (submit again to rerun "
                  "any that failed or were preempted)")
    elif args.job:
        result = study.finetuning.run_job(args.job)
        if isinstance(result, dict):
            score = next(result[k] for k in ("test_score", "val_score") if k in result)
            print(f"{args.job}: {result['metric']} {score:.4f} (lr {result['learning_rate']:g}, "
                  f"wd {result['weight_decay']:g})")
        else:
            print(result.to_string(index=False))
    else:
        table = study.finetuning.table(recompute=True) if not args.collect else study.finetuning.collect()
        print(f"{study.finetuning.table_path()}: {len(table)} rows")
    return 0


def _notebooks(args) -> int:
    from .notebooks import PIPELINE, NotebookFailed, run_notebooks, write_report
    from .params import ParamsError

    try:
        if args.command == "report":
            print(f"report: {write_report(args.study, path=args.out)}")
            return 0
        run_notebooks(args.study, tuple(args.names) or PIPELINE)
    except (NotebookFailed, ParamsError, FileNotFoundError) as error:
        print(f"pedlib {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pedlib {args.command}: interrupted; the unfinished notebook is kept as "
              "results/<study>/notebooks/<name>.failed.ipynb", file=sys.stderr)
        return 130
    return 0


def _verify(args) -> int:
    from .params import ParamsError, load_params
    from .study import find_params
    from .verify import verify

    try:
        verdict = verify(load_params(find_params(args.study)).figures_dir, against=args.against)
    except (ParamsError, FileNotFoundError, RuntimeError) as error:
        print(f"pedlib verify: {error}", file=sys.stderr)
        return 2
    print(verdict.report())
    return 0 if verdict.ok or args.no_fail else 1


class _MessageFormatter(logging.Formatter):
    """``pedlib: warning: ...``: one style for every message pedlib prints."""

    def format(self, record: logging.LogRecord) -> str:
        return f"pedlib: {record.levelname.lower()}: {record.getMessage()}"


class _OwnLineHandler(logging.StreamHandler):
    """Writes each message on a line of its own, also while a progress bar is drawn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _say_warning(message) -> None:
    from tqdm import tqdm

    tqdm.write(f"pedlib: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _one_message_style():
    """Log records and Python warnings in one style, each on its own line, for the command's
    duration; third-party INFO chatter (pooch, TensorFlow Lite) stays below WARNING."""
    handler = _OwnLineHandler()
    handler.setFormatter(_MessageFormatter())
    root = logging.getLogger()
    saved = root.handlers[:], root.level, warnings.showwarning
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    warnings.showwarning = lambda message, category, *rest, **kw: _say_warning(message)
    try:
        yield
    finally:
        root.handlers[:], level, warnings.showwarning = saved
        root.setLevel(level)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    saved = os.environ.get("TQDM_DISABLE")
    if getattr(args, "quiet", False):
        os.environ["TQDM_DISABLE"] = "1"  # also silences the image-decoding bars
    try:
        with _one_message_style():
            return _main(args)
    except MissingExtra as missing:
        print(f"pedlib {args.command}: {missing}", file=sys.stderr)
        return 2
    finally:  # a caller in this process (a test, a notebook) keeps its own setting
        if saved is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved


def _main(args) -> int:
    if args.command == "models":
        from . import models

        for zoo in models.zoos():
            print(f"{zoo}: {' '.join(models.list_models(zoo=zoo))}")
        return 0
    if args.command == "stages":
        from . import pipeline
        from .context import StudyContext
        from .params import ParamsError

        try:
            study = StudyContext.load(args.study, progress=False) if args.study else None
        except ParamsError as error:
            print(f"pedlib stages: {error}", file=sys.stderr)
            return 2
        print(pipeline.describe(study))
        return 0
    if args.command in ("notebooks", "report"):
        return _notebooks(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "finetune":
        from .params import ParamsError

        try:
            return _finetune(args)
        except (ParamsError, KeyError, FileNotFoundError, RuntimeError, ValueError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            print(f"pedlib finetune: {message}", file=sys.stderr)
            return 2
    from . import rank as ranking
    from .models.hub import WeightsUnavailable
    from .safe_files import UnsafeFile

    if args.max_per_class is not None and args.max_per_class < 2:
        print("pedlib rank: --max-per-class must be at least 2", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = ranking.rank_models(args.data, args.models, metric=args.metric,
                                        reference=args.reference, max_per_class=args.max_per_class,
                                        out=args.out, batch_size=args.batch_size, device=args.device,
                                        seed=args.seed, progress=not args.quiet,
                                        rank_by_ped=args.ped, workers=args.workers)
        for warning in caught:
            _say_warning(warning.message)
    except (FileNotFoundError, KeyError, ValueError, WeightsUnavailable, UnsafeFile) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"pedlib rank: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # features done so far are saved (see extract_shared)
        print(f"pedlib rank: {interrupt or 'interrupted; rerun to resume'}", file=sys.stderr)
        return 130
    table = result.table.copy()  # already in rank order
    table.insert(0, "#", range(1, len(table) + 1))
    skipped = len(result.source.skipped)
    print(f"{len(result.indices)} images, {len(set(result.source.labels[result.indices]))} classes"
          f"{f', {skipped} unreadable skipped' if skipped else ''}"
          f"{f', dropped single-image classes {result.dropped_classes}' if result.dropped_classes else ''}; "
          f"ranked by {args.metric}{' + PED' if args.ped else ''}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("written: " + ", ".join(str(p) for p in result.paths.values()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
