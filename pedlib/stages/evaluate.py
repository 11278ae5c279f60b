"""Stage: per ground truth, pool, target and method, the weighted tau of the method's
ranking (with bootstrap intervals for the plain and main-PED rankings) and the other
correlations, plus the mean over targets; ``results/<study>/evaluation.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import evaluate as correlations, metrics, records
from . import groundtruth

if TYPE_CHECKING:
    from ..study import Study

__all__ = ["evaluate", "ped_effect", "paired_differences", "paper_comparison", "COMPARISONS"]

#: The comparisons between methods that a reader of the study asks about, (A, B): B minus A.
COMPARISONS = (("logme", "logme+ped"), ("logme", "knn"), ("logme", "nleep"), ("nleep", "knn"))

_NUMERIC = ["weighted_tau", "kendall_tau", "pearson", "spearman", "top1_relative_accuracy"]


def _tie_saturated(group: pd.DataFrame) -> pd.DataFrame:
    """One (dataset, method)'s scores with every *saturated* score (flagged by the score stage:
    within ``SATURATION_RTOL`` of the metric's maximum) set to the largest of them, so that they
    tie exactly. Saturated scores differ only by rounding, and by more than ``TIE_RTOL`` from one
    CPU instruction set to another (H-score + PED of C - 1 = 9 on MNIST-5k); ranking by those
    bits would make the evaluation depend on the machine."""
    flagged = group.saturated.astype(bool).to_numpy() if "saturated" in group else None
    if flagged is None or not flagged.any():
        return group
    return group.assign(score=np.where(flagged, group.score[flagged].max(), group.score))


def _inputs(study: "Study", scores: pd.DataFrame | None, name: str, accuracies: dict | None = None):
    """(scores, accuracies, ``results/<study>/<name>.csv``, its key) of an evaluation table:
    it depends on the scores, the ground truths, the evaluation settings, the pools, the
    models, the seed and this code. Scores and accuracies are read unless given."""
    if scores is None:
        scores = records.read_csv(study.output / "scores.csv")
    if accuracies is None:
        accuracies = groundtruth.accuracies(study)
    key = records.content_key(name, records.content_key(scores.to_csv()),
                              {n: records.content_key(t.to_csv()) for n, t in accuracies.items()},
                              study.params.evaluation, study.params.pools, study.models, study.params.seed,
                              records.code_version("evaluate", "stages.evaluate"))
    return scores, accuracies, study.output / f"{name}.csv", key


def _evaluation_row(scores: dict, accuracies: dict, options: dict, interval: bool) -> dict:
    return correlations.evaluation_row(scores, accuracies, interval=interval, **options)


def _mean_interval(pairs: dict, options: dict) -> tuple[float, float]:
    return correlations.bootstrap_mean_ci(pairs, **options)


def evaluate(study: "Study", scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per ground truth, pool, dataset and method: weighted tau (with a bootstrap interval
    over models for the plain and main-PED rankings) and the other correlations; plus the
    mean over datasets, whose interval resamples models jointly across datasets
    (:func:`pedlib.evaluate.bootstrap_mean_ci`). NaN scores (a metric that failed on a cell)
    leave that model out of that ranking. Rows run in ``processes`` processes."""
    scores, accuracies, path, key = _inputs(study, scores, "evaluation")
    ev = study.params.evaluation
    if records.is_fresh(path, key):
        table = records.read_csv(path)
        if ev.paper_table:
            paper_comparison(study, table)
        ped_effect(study, scores, accuracies)
        return table
    labels, jobs, means = [], [], {}
    options = dict(n_boot=ev.bootstrap, level=ev.level, seed=study.params.seed)
    groups = [(group_key, _tie_saturated(group))  # once, not once per ground truth and pool
              for group_key, group in scores.groupby(["dataset", "method"], sort=False)]
    for truth_name, truth in accuracies.items():
        accuracy = {(r.model, r.dataset): r.accuracy for r in truth.itertuples()}
        for pool in study.params.pools:
            members = set(study.pool(pool))
            for (dataset, method), group in groups:
                s = {r.model: r.score for r in group.itertuples()
                     if r.model in members and (r.model, dataset) in accuracy and np.isfinite(r.score)}
                if len(s) < ev.min_models:
                    continue
                a = {m: accuracy[(m, dataset)] for m in s}
                first = group.iloc[0]
                main = first.variant in ("plain", "ped")  # intervals for the main comparison only
                labels.append(dict(groundtruth=truth_name, pool=pool, dataset=dataset, method=method,
                                   metric=first.metric, variant=first.variant,
                                   kind=metrics.info(first.metric).kind))
                jobs.append((s, a))
                if main:
                    means.setdefault((truth_name, pool, method), {})[dataset] = (s, a)
    rows = study.map(_evaluation_row, [(s, a, options, lab["variant"] in ("plain", "ped"))
                                       for (s, a), lab in zip(jobs, labels)],
                     desc="evaluate", unit="rankings", with_study=False)
    table = pd.DataFrame([{**lab, **row} for lab, row in zip(labels, rows)])
    if not table.empty:
        numeric = [*_NUMERIC, *[c for c in table.columns if c.endswith("_recall")], "n_models"]
        mean = (table.groupby(["groundtruth", "pool", "method", "metric", "variant", "kind"], sort=False)
                [numeric].mean().reset_index().assign(dataset="mean"))
        # the interval of a mean covers the targets the mean averages: a target whose
        # ranking is undefined (every score tied, e.g. saturated) is left out of both
        undefined = {(lab["groundtruth"], lab["pool"], lab["method"], lab["dataset"])
                     for lab, row in zip(labels, rows) if not np.isfinite(row["weighted_tau"])}
        means = {group: {d: pair for d, pair in pairs.items() if (*group, d) not in undefined}
                 for group, pairs in means.items()}
        intervals = study.map(_mean_interval, [(pairs, options) for pairs in means.values()]
                              if ev.bootstrap else [], desc="evaluate (means)", unit="rankings",
                              with_study=False)
        bounds = dict(zip(means, intervals))
        missing = (np.nan, np.nan)
        mean["wtau_low"] = [bounds.get((r.groundtruth, r.pool, r.method), missing)[0] for r in mean.itertuples()]
        mean["wtau_high"] = [bounds.get((r.groundtruth, r.pool, r.method), missing)[1] for r in mean.itertuples()]
        table = pd.concat([table, mean], ignore_index=True)
    records.write_csv(table, path)
    records.write_record(path, key, params=study.record_params(), seed=study.params.seed)
    if ev.paper_table:
        paper_comparison(study, table)
    ped_effect(study, scores, accuracies)
    paired_differences(study, scores, accuracies)
    return table


def _paired_rows(triples: dict, options: dict) -> dict:
    return correlations.ped_effect(triples, **options)


def _paired_table(study: "Study", labels: list[dict], jobs: list[dict], label_columns: list[str], desc: str,
                  unit: str) -> pd.DataFrame:
    """One row per (label, target) and per label's mean: each job's paired differences of
    weighted tau (:func:`pedlib.evaluate.ped_effect`, in the worker processes)."""
    ev = study.params.evaluation
    options = dict(n_boot=ev.bootstrap, level=ev.level, seed=study.params.seed)
    results = study.map(_paired_rows, [(triples, options) for triples in jobs], desc=desc, unit=unit,
                        with_study=False)
    rows = []
    for label, result in zip(labels, results):
        for dataset, (delta, low, high, n) in result["per_target"].items():
            rows.append(dict(label, dataset=dataset, delta=delta, delta_low=low, delta_high=high, n_models=n,
                             n_targets=1))
        delta, low, high, n = result["mean"]
        rows.append(dict(label, dataset="mean", delta=delta, delta_low=low, delta_high=high,
                         n_models=max((r[3] for r in result["per_target"].values()), default=0), n_targets=n))
    return pd.DataFrame(rows, columns=[*label_columns, "dataset", "delta", "delta_low", "delta_high", "n_models",
                                       "n_targets"])


def ped_effect(study: "Study", scores: pd.DataFrame | None = None,
               accuracies: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """What PED changes: per ground truth, pool, metric and target, the weighted tau with PED
    minus without, on the models both score, with a paired bootstrap interval over models;
    plus the mean over the targets where both rankings are defined (models resampled jointly
    across targets). ``results/<study>/ped_effect.csv``
    (:func:`pedlib.evaluate.ped_effect`)."""
    scores, accuracies, path, key = _inputs(study, scores, "ped_effect", accuracies)
    ev = study.params.evaluation
    if records.is_fresh(path, key):
        return records.read_csv(path)
    main = scores[scores.variant.isin(["plain", "ped"])]
    tied = {k: _tie_saturated(g) for k, g in main.groupby(["dataset", "method"], sort=False)}
    per_metric = {}
    for (dataset, _), group in tied.items():
        first = group.iloc[0]
        per_metric.setdefault(first.metric, {}).setdefault(dataset, {})[first.variant] = group
    labels, jobs = [], []
    for truth_name, truth in accuracies.items():
        accuracy = {(r.model, r.dataset): r.accuracy for r in truth.itertuples()}
        for pool in study.params.pools:
            members = set(study.pool(pool))
            for metric, datasets in per_metric.items():
                triples = {}
                for dataset, variants in datasets.items():
                    if not {"plain", "ped"} <= set(variants):
                        continue
                    plain, ped = ({r.model: r.score for r in variants[v].itertuples()
                                   if r.model in members and (r.model, dataset) in accuracy and np.isfinite(r.score)}
                                  for v in ("plain", "ped"))
                    if len(set(plain) & set(ped)) >= ev.min_models:
                        triples[dataset] = (plain, ped, {m: accuracy[(m, dataset)] for m in set(plain) | set(ped)})
                if triples:
                    labels.append(dict(groundtruth=truth_name, pool=pool, metric=metric,
                                       kind=metrics.info(metric).kind))
                    jobs.append(triples)
    table = _paired_table(study, labels, jobs, ["groundtruth", "pool", "metric", "kind"], "PED effect", "metrics")
    records.write_csv(table, path)
    records.write_record(path, key, params=study.record_params(), seed=study.params.seed)
    return table


def paired_differences(study: "Study", scores: pd.DataFrame | None = None,
                       accuracies: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Paired differences of weighted tau, all models, per ground truth: PED's change of every
    metric under each of its references (``comparison`` ``ped``: the method with PED minus
    without), and the differences between the methods of :data:`COMPARISONS` (``comparison``
    ``methods``). Per target and the mean over targets, each with a paired bootstrap interval
    over models (the same draw for both rankings, jointly across targets for the mean;
    :func:`pedlib.evaluate.ped_effect`). ``results/<study>/paired_differences.csv``."""
    scores, accuracies, path, key = _inputs(study, scores, "paired_differences", accuracies)
    if records.is_fresh(path, key):
        return records.read_csv(path)
    ev = study.params.evaluation
    by_method = {}
    for (dataset, method), group in scores.groupby(["dataset", "method"], sort=False):
        group = _tie_saturated(group)
        by_method.setdefault(method, {})[dataset] = {r.model: r.score for r in group.itertuples()
                                                     if np.isfinite(r.score)}
    plain = scores[scores.variant == "plain"].drop_duplicates("metric")
    references = ["ped"] + [f"ped:ref={m}" for m in study.params.reference.ablation]
    pairs = [("ped", r, m, f"{m}+ped" if r == "ped" else f"{m}+ped[{r.removeprefix('ped:')}]")
             for m in plain.metric for r in references]
    pairs += [("methods", "", a, b) for a, b in COMPARISONS if a in by_method and b in by_method]
    members = set(study.pool("all") if "all" in study.params.pools else study.models)
    labels, jobs = [], []
    for truth_name, truth in accuracies.items():
        accuracy = {(r.model, r.dataset): r.accuracy for r in truth.itertuples()}
        for comparison, variant, a, b in pairs:
            if b not in by_method:
                continue
            triples = {}
            for dataset in study.datasets:
                first, second = ({m: s for m, s in by_method[name].get(dataset, {}).items()
                                  if m in members and (m, dataset) in accuracy} for name in (a, b))
                if len(set(first) & set(second)) >= ev.min_models:
                    triples[dataset] = (first, second, {m: accuracy[(m, dataset)] for m in set(first) | set(second)})
            if triples:
                labels.append(dict(groundtruth=truth_name, comparison=comparison, variant=variant, a=a, b=b))
                jobs.append(triples)
    table = _paired_table(study, labels, jobs, ["groundtruth", "comparison", "variant", "a", "b"],
                          "paired differences", "pairs")
    records.write_csv(table, path)
    records.write_record(path, key, params=study.record_params(), seed=study.params.seed,
                         inputs={"comparisons": [list(c) for c in COMPARISONS]})
    return table


def paper_comparison(study: "Study", evaluation: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our weighted tau next to the paper's (``evaluation.paper_table``), per method and
    dataset, with the difference and a mean row (over the datasets both have)."""
    from ..groundtruth.published import load_published_wtau

    if evaluation is None:
        evaluation = records.read_csv(study.output / "evaluation.csv")
    paper = load_published_wtau(Path(study.params.root) / study.params.evaluation.paper_table)
    truth = "published" if "published" in set(evaluation.groundtruth) else evaluation.groundtruth.iloc[0]
    ours = evaluation[(evaluation.groundtruth == truth) & (evaluation.pool == "all")
                      & (evaluation.dataset != "mean")][["method", "dataset", "weighted_tau"]]
    table = ours.merge(paper, on=["method", "dataset"], how="outer", suffixes=("_ours", "_paper"))
    table = table.rename(columns={"weighted_tau_ours": "ours", "weighted_tau_paper": "paper"})
    table = table[table.method.isin(set(paper.method)) | table.method.isin([f"{m}+ped" for m in paper.method])]
    table["difference"] = table.ours - table.paper
    both = table.dropna(subset=["ours", "paper"])
    mean = both.groupby("method", sort=False)[["ours", "paper", "difference"]].mean().reset_index()
    table = pd.concat([table, mean.assign(dataset="mean")], ignore_index=True)
    path = study.output / "paper_comparison.csv"
    records.write_csv(table, path)
    records.write_record(path, records.content_key(table.to_csv()), params=study.record_params(),
                         seed=study.params.seed, inputs={"paper_table": study.params.evaluation.paper_table})
    return table
