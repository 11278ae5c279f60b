"""Command line: ``pedlib rank`` and ``pedlib finetune`` (also ``python -m pedlib ...``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from .select import RECOMMENDED

RANK_HELP = f"""\
Rank candidate backbones for your labelled images without fine-tuning them.

DATA is an ImageFolder (one sub-folder per class) or a CSV of path,label. Each model's
features are extracted (cached in OUT/features, so an interrupted run resumes), scored with
METRIC without and with PED, and ranked. The table is printed and written to OUT as
ranking.csv, ranking.json and ranking.png.

Default: --metric {RECOMMENDED['metric']}, ranked {'with' if RECOMMENDED['ped'] else 'without'} PED
(both columns are always shown). Evidence: on the pocket study (17 models, 5 targets,
figures/pocket/wtau_linear_probe_all.md) this combination has the best mean weighted
Kendall's tau against the linear probe; see the README's results section.

Models: pocket zoo names (pedlib.models.list_models()), torchvision names (resnet50),
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
    rank.add_argument("--reference", metavar="DIR", help="generic images for PED's standardisation")
    rank.add_argument("--max-per-class", type=int, metavar="N", help="use at most N images per class")
    rank.add_argument("--out", default="ranking", metavar="DIR", help="output folder (default: %(default)s)")
    rank.add_argument("--batch-size", type=int, default=64)
    rank.add_argument("--device", default="cpu", help="cpu or cuda")
    rank.add_argument("--seed", type=int, default=0)
    rank.add_argument("--quiet", action="store_true", help="no progress bars")

    finetune = sub.add_parser("finetune", help="run a study's fine-tuning jobs",
                              description=FINETUNE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    finetune.add_argument("study", help="study name (params/<study>.yaml) or params file")
    action = finetune.add_mutually_exclusive_group()
    action.add_argument("--job", metavar="ID", help="run one job (skipped when its result is fresh)")
    action.add_argument("--list", action="store_true", help="list the jobs and whether each is done")
    action.add_argument("--makefile", metavar="PATH", help="write a Makefile of the pending jobs")
    action.add_argument("--collect", action="store_true", help="assemble finished jobs into the table")
    finetune.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


FINETUNE_HELP = """\
Run the fine-tuning ground truth of a study as independent jobs (see pedlib.finetune_stage):
one per (model, dataset) for the pocket study's protocol, one per (model, dataset, grid point)
plus one final retrain per seed for the paper studies' sweep. Without an action every pending
job runs here, one after the other, then the table is assembled. `make -j4 finetune
STUDY=...` runs them four at a time through --makefile.
"""


def _finetune(args) -> int:
    from .study import Study

    study = Study.load(args.study, progress=not args.quiet)
    if args.list:
        pending = {job.id for job in study.pending_finetune_jobs()}
        for job in study.finetune_jobs():
            print(f"{'pending' if job.id in pending else 'done   '}  {job.id}")
        print(f"{len(pending)} of {len(study.finetune_jobs())} jobs pending")
    elif args.makefile:
        pending, total = study.finetune_makefile(args.makefile)
        print(f"{args.makefile}: {pending} of {total} jobs pending")
    elif args.job:
        result = study.run_finetune_job(args.job)
        if isinstance(result, dict):
            score = next(result[k] for k in ("test_score", "val_score") if k in result)
            print(f"{args.job}: {result['metric']} {score:.4f} (lr {result['learning_rate']:g}, "
                  f"wd {result['weight_decay']:g})")
        else:
            print(result.to_string(index=False))
    else:
        table = study.finetune(recompute=True) if not args.collect else study.collect_finetune()
        print(f"{study.finetune_table_path()}: {len(table)} rows")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # also silences the image-decoding bars
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.command == "finetune":
        from .params import ParamsError

        try:
            return _finetune(args)
        except (ParamsError, KeyError, FileNotFoundError, RuntimeError, ValueError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            print(f"pedlib finetune: {message}", file=sys.stderr)
            return 2
    from . import select
    from .models.hub import WeightsUnavailable

    if args.max_per_class is not None and args.max_per_class < 2:
        print("pedlib rank: --max-per-class must be at least 2", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = select.rank_models(args.data, args.models, metric=args.metric,
                                        reference=args.reference, max_per_class=args.max_per_class,
                                        out=args.out, batch_size=args.batch_size, device=args.device,
                                        seed=args.seed, progress=not args.quiet,
                                        rank_by_ped=args.ped)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
    except (FileNotFoundError, KeyError, ValueError, WeightsUnavailable) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"pedlib rank: {message}", file=sys.stderr)
        return 2
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
