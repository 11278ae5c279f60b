"""Stage: per ground truth, pool, target and method, the weighted tau of the method's
ranking (with bootstrap intervals for the plain and main-PED rankings) and the other
correlations, plus the mean over targets (``results/<study>/evaluation.csv``); what PED changes
(``ped_effect.csv``), paired differences between methods (``paired_differences.csv``) and, for a
paper study, the paper's weighted tau beside ours (``paper_comparison.csv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import correlations, metrics, records
from ..context import StudyContext
from .declaration import Stage
from .groundtruth import by_truth

__all__ = ["STAGE", "evaluate", "evaluation", "ped_effect", "paired_differences", "paper_comparison", "COMPARISONS"]

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


def _key(study: StudyContext, inputs) -> str:
    """What the stage's tables depend on besides its code: the scores, the ground truths, the
    evaluation settings, the pools, the models and the seed."""
    return records.content_key(records.content_key(inputs["score"]["scores"].to_csv()),
                               records.content_key(inputs["groundtruth"]["accuracies"].to_csv()),
                               study.params.evaluation, study.params.pools, study.models, study.params.seed)


def evaluate(study: StudyContext, inputs) -> dict[str, pd.DataFrame]:
    """Every table of the stage from the score and groundtruth stages' results."""
    scores = inputs["score"]["scores"]
    accuracies = by_truth(inputs["groundtruth"]["accuracies"])
    tables = {"evaluation": evaluation(study, scores, accuracies)}
    tables["ped_effect"] = ped_effect(study, scores, accuracies)
    tables["paired_differences"] = paired_differences(study, scores, accuracies)
    if study.params.evaluation.paper_table:
        tables["paper_comparison"] = paper_comparison(study, tables["evaluation"])
    return tables


def _outputs(study: StudyContext) -> dict[str, str]:
    names = ["evaluation", "ped_effect", "paired_differences"] + \
        (["paper_comparison"] if study.params.evaluation.paper_table else [])
    return {name: f"{name}.csv" for name in names}


def _evaluation_row(scores: dict, accuracies: dict, options: dict, interval: bool) -> dict:
    return correlations.evaluation_row(scores, accuracies, interval=interval, **options)


def _mean_interval(pairs: dict, options: dict) -> tuple[float, float]:
    return correlations.bootstrap_mean_ci(pairs, **options)


def evaluation(study: StudyContext, scores: pd.DataFrame, accuracies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per ground truth, pool, dataset and method: weighted tau (with a bootstrap interval
    over models for the plain and main-PED rankings) and the other correlations; plus the
    mean over datasets, whose interval resamples models jointly across datasets
    (:func:`pedlib.correlations.bootstrap_mean_ci`). NaN scores (a metric that failed on a cell)
    leave that model out of that ranking. Rows run in ``processes`` processes."""
    ev = study.params.evaluation
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
    return table


def _paired_rows(triples: dict, options: dict) -> dict:
    return correlations.ped_effect(triples, **options)


def _paired_table(study: StudyContext, labels: list[dict], jobs: list[dict], label_columns: list[str], desc: str,
                  unit: str) -> pd.DataFrame:
    """One row per (label, target) and per label's mean: each job's paired differences of
    weighted tau (:func:`pedlib.correlations.ped_effect`, in the worker processes)."""
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


def ped_effect(study: StudyContext, scores: pd.DataFrame, accuracies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What PED changes: per ground truth, pool, metric and target, the weighted tau with PED
    minus without, on the models both score, with a paired bootstrap interval over models;
    plus the mean over the targets where both rankings are defined (models resampled jointly
    across targets). ``results/<study>/ped_effect.csv``
    (:func:`pedlib.correlations.ped_effect`)."""
    ev = study.params.evaluation
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
    return _paired_table(study, labels, jobs, ["groundtruth", "pool", "metric", "kind"], "PED effect", "metrics")


def paired_differences(study: StudyContext, scores: pd.DataFrame, accuracies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Paired differences of weighted tau, all models, per ground truth: PED's change of every
    metric under each of its references (``comparison`` ``ped``: the method with PED minus
    without), and the differences between the methods of :data:`COMPARISONS` (``comparison``
    ``methods``). Per target and the mean over targets, each with a paired bootstrap interval
    over models (the same draw for both rankings, jointly across targets for the mean;
    :func:`pedlib.correlations.ped_effect`). ``results/<study>/paired_differences.csv``."""
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
    return _paired_table(study, labels, jobs, ["groundtruth", "comparison", "variant", "a", "b"],
                         "paired differences", "pairs")


def paper_comparison(study: StudyContext, evaluation: pd.DataFrame) -> pd.DataFrame:
    """Our weighted tau next to the paper's (``evaluation.paper_table``), per method and
    dataset, with the difference and a mean row (over the datasets both have)."""
    from ..groundtruth.published import load_published_wtau

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
    return pd.concat([table, mean.assign(dataset="mean")], ignore_index=True)


STAGE = Stage("evaluate", needs=("score", "groundtruth"), make=evaluate, key=_key, outputs=_outputs,
              notebook="04", describes="rank correlations of every method against every ground truth")
