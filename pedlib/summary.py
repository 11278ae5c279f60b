"""Conclusions in words, written from the numbers a stage just computed (the notebooks' last
cells). Every function returns Markdown; none prints, reads files or computes anything new,
so what a conclusion says is exactly what the table above it shows.
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.summary", ("pandas",))

from pathlib import Path

import numpy as np
import pandas as pd

from .groundtruth import label

__all__ = ["groundtruth", "ports", "features", "scores", "evaluation", "figures", "signed"]


def signed(value: float, digits: int = 3) -> str:
    """``-0.168`` / ``+0.012`` (a difference), with a true minus sign."""
    return f"{value:+.{digits}f}".replace("-", "\u2212")


def _names(items, limit: int = 6) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def collapsed_seeds(finetune: pd.DataFrame, classes: dict[str, int]) -> pd.DataFrame:
    """The fine-tuning seeds that collapsed: a seed whose test accuracy is below twice chance
    (1 / classes) in a (model, target) whose best seed is above four times chance. Columns
    model, dataset, seed, test_accuracy, others (the cell's other seeds' accuracies)."""
    rows = []
    for (model, dataset), cell in finetune.groupby(["model", "dataset"], sort=False):
        chance = 1 / classes.get(dataset, np.inf)
        if cell.test_accuracy.max() <= 4 * chance:
            continue
        for row in cell[cell.test_accuracy < 2 * chance].itertuples():
            others = cell[cell.seed != row.seed].test_accuracy.round(3).tolist()
            rows.append(dict(model=model, dataset=dataset, seed=row.seed, test_accuracy=row.test_accuracy,
                             others=others))
    return pd.DataFrame(rows, columns=["model", "dataset", "seed", "test_accuracy", "others"])


def groundtruth(accuracies: dict[str, pd.DataFrame], finetune: pd.DataFrame | None = None,
                classes: dict[str, int] | None = None) -> str:
    """Which ground truths there are, the best model per target, the seeds' spread, the seeds
    that collapsed (``finetune``: the per-seed table; ``classes``: each target's class count),
    and how alike two ground truths rank the models (Kendall's tau per target)."""
    from scipy.stats import kendalltau

    lines = []
    for name, table in accuracies.items():
        wide = table.pivot_table(index="model", columns="dataset", values="accuracy", sort=False)
        best = {d: f"{wide[d].idxmax()} ({wide[d].max():.3f})" for d in wide.columns}
        lines.append(f"- **{label(name)}**: {wide.shape[0]} models x {wide.shape[1]} targets; "
                     "best per target: " + "; ".join(f"{d} {b}" for d, b in best.items()) + ".")
        spread = table.accuracy_std.dropna()
        if len(spread):
            lines.append(f"  Over seeds the accuracy varies by a median standard deviation of "
                         f"{spread.median():.4f} (largest {spread.max():.4f}).")
        if name == "finetune" and finetune is not None and classes:
            collapsed = collapsed_seeds(finetune, classes)
            for row in collapsed.itertuples():
                lines.append(f"  **A collapsed seed:** {row.model} on {row.dataset}, seed {row.seed}: test "
                             f"accuracy {row.test_accuracy:.3f} (chance {1 / classes[row.dataset]:.3f}) against "
                             f"{', '.join(f'{a:.3f}' for a in row.others)} for its other seeds; the cell's mean "
                             "(the ground truth) carries it.")
    names = list(accuracies)
    if len(names) >= 2:
        a, b = (accuracies[n].set_index(["model", "dataset"]).accuracy for n in names[:2])
        common = a.index.intersection(b.index)
        taus = {d: kendalltau(a[common][a[common].index.get_level_values(1) == d],
                              b[common][b[common].index.get_level_values(1) == d]).statistic
                for d in dict.fromkeys(common.get_level_values(1))}
        taus = {d: t for d, t in taus.items() if np.isfinite(t)}
        if taus:
            lines.append(f"- {label(names[0]).capitalize()} and {label(names[1])} rank the "
                         f"common models with a Kendall tau of {np.mean(list(taus.values())):.2f} on "
                         "average (" + ", ".join(f"{d} {t:.2f}" for d, t in taus.items()) + "): "
                         + ("they largely agree." if np.mean(list(taus.values())) > 0.6 else
                            "they disagree often enough that the choice of ground truth matters."))
    return "**Conclusion.**\n\n" + "\n".join(lines)


def ports(table: pd.DataFrame | None) -> str:
    """The port check in words: who meets which bar, and why a quantized original may not."""
    from .models.port_check import MIN_COSINE, MIN_TOP1

    if table is None or table.empty:
        return "**Conclusion.** This study has no ported model (or `ports: null`); nothing to check."
    exact = table[(table.cosine_min > 0.99999) & ((table.top1_agreement == 1.0) | table.top1_agreement.isna())]
    below = table[table.top1_agreement < MIN_TOP1]
    text = (f"**Conclusion.** All {len(table)} ports reach the median-cosine bar of {MIN_COSINE} "
            f"(lowest {table.cosine_median.min():.3f}, {table.loc[table.cosine_median.idxmin(), 'model']}). "
            f"{len(exact)} reproduce their original exactly (cosine 1.000"
            + (", top-1 100%" if len(exact) else "") + f"): {_names(exact.model)}.")
    if len(below):
        text += (f" {len(below)} stay below the top-1 bar of {MIN_TOP1:.2f}: "
                 + "; ".join(f"{r.model} {r.top1_agreement:.2f}" for r in below.itertuples())
                 + ". Their originals are quantized: uint8/int8 activations shift near-tied logits on "
                 "images where the source classifier is unsure (most pocket targets are far from "
                 "ImageNet), while the features agree. The port is the float network those files "
                 "approximate, and it is what every stage uses.")
    return text


def features(summary: pd.DataFrame) -> str:
    """The extraction summary in words, and where N < D makes LogME's definition matter."""
    computed = int((~summary.cached).sum())
    sets = summary[summary.part != "reference"]
    wide = sets[sets.dim.astype(float) > sets.n.astype(float)]
    text = (f"**Conclusion.** {len(summary)} feature sets of {summary.model.nunique()} models "
            f"({computed} computed now, {len(summary) - computed} from the cache); feature dimensions "
            f"{int(summary.dim.min())} to {int(summary.dim.max())}.")
    if len(wide):
        text += (f" {len(wide)} train/test sets have more dimensions than images (N < D), where the "
                 "reference LogME (`logme_reference`) leaves out D - N terms of the evidence and so "
                 "differs from `logme`.")
    return text


def scores(table: pd.DataFrame) -> str:
    """PED's motion, saturated scores and failed metrics, from the scores table."""
    ped_rows = table[table.variant == "ped"].drop_duplicates(["model", "dataset"])
    moved = ped_rows[ped_rows.ped_steps > 0]
    text = (f"**Conclusion.** {table.metric.nunique()} metrics on {len(ped_rows)} (model, target) cells. "
            f"PED moved the classes in {len(moved)} of {len(ped_rows)} cells"
            + (f" (median {int(moved.ped_steps.median())} steps)" if len(moved) else "") + ".")
    if "saturated" in table:
        saturated = table[table.saturated.astype(bool) & (table.variant == "plain")]
        if len(saturated):
            per_metric = "; ".join(
                f"{metric} on {len(rows)} cells ({_names(f'{r.model} / {r.dataset}' for r in rows.itertuples())})"
                for metric, rows in saturated.groupby("metric", sort=False))
            text += (f" Saturated scores (at the metric's maximum, so they cannot tell models apart; "
                     f"without PED): {per_metric}. The evaluation treats equal scores as ties.")
    failed = table[table.score.isna()]
    if len(failed):
        text += (f" {len(failed)} scores failed and are NaN (left out of their rankings): "
                 + _names(f"{r.method} on {r.model}/{r.dataset}" for r in failed.drop_duplicates(['model', 'dataset', 'metric']).itertuples()) + ".")
    return text


def evaluation(table: pd.DataFrame, pool: str = "all", paired: pd.DataFrame | None = None) -> str:
    """Does PED help, against each ground truth (mean weighted tau over targets, pool
    ``pool``); do the baselines beat the metrics; does LogME's definition matter? With
    ``paired`` (the evaluate stage's paired differences), what the paired intervals show."""
    lines = []
    means = table[(table.dataset == "mean") & (table.pool == pool)]
    for truth, rows in means.groupby("groundtruth", sort=False):
        wide = rows[rows.variant.isin(["plain", "ped"])].pivot_table(
            index="metric", columns="variant", values="weighted_tau", sort=False)
        kinds = rows.drop_duplicates("metric").set_index("metric").kind
        n_models = int(rows.n_models.max())
        n_targets = table[(table.groundtruth == truth) & (table.pool == pool) & (table.dataset != "mean")].dataset.nunique()
        name = label(truth)
        real = wide[[kinds.get(m) == "metric" for m in wide.index]].dropna()
        if "ped" in real and len(real):
            gain = (real.ped - real.plain).sort_values()
            lowered, raised = int((gain < -1e-9).sum()), int((gain > 1e-9).sum())
            counts = [f"lowers the mean weighted tau of {lowered}", f"raises it for {raised}"]
            if len(gain) - lowered - raised:
                counts.append(f"leaves {len(gain) - lowered - raised} unchanged")
            lines.append(f"- **Against {name}** ({n_models} models, mean over {n_targets} targets): of {len(gain)} "
                         f"metrics, PED {', '.join(counts)}: "
                         + ", ".join(f"{m} {signed(g)} ({real.plain[m]:.3f} -> {real.ped[m]:.3f})"
                                     for m, g in gain.items()) + ".")
            best = wide.plain.idxmax()
            lines.append(f"  The best ranking without PED is {best} ({wide.plain.max():.3f}); with PED, "
                         f"{wide.ped.idxmax()} ({wide.ped.max():.3f}).")
        baselines = [m for m in wide.index if kinds.get(m) == "baseline"]
        for baseline in baselines:
            plain = wide.plain[baseline]
            beaten = [m for m in real.index if real.plain[m] < plain]
            beaten_ped = [m for m in real.index if "ped" in real and real.ped[m] < plain]
            lines.append(f"  Baseline **{baseline}** ({plain:.3f}) beats {len(beaten)} of {len(real)} metrics "
                         f"without PED and {len(beaten_ped)} with PED"
                         + (f" ({_names(beaten)})" if beaten else "") + ".")
        if {"logme", "logme_reference"} <= set(wide.index):
            per_target = table[(table.groundtruth == truth) & (table.pool == pool) & (table.dataset != "mean")
                               & table.method.isin(["logme", "logme_reference"])]
            pivot = per_target.pivot_table(index="dataset", columns="method", values="weighted_tau", sort=False)
            changed = pivot[(pivot.logme - pivot.logme_reference).abs() > 1e-9]
            lines.append(f"  LogME's definition: `logme` {wide.plain['logme']:.3f} vs the reference code's "
                         f"`logme_reference` {wide.plain['logme_reference']:.3f} (mean weighted tau); their "
                         f"rankings differ on {len(changed)} of {len(pivot)} targets"
                         + (f" ({', '.join(f'{d} {signed(r.logme - r.logme_reference)}' for d, r in changed.iterrows())})"
                            if len(changed) else "") + ".")
    if paired is not None and len(paired):
        lines += _paired_lines(paired)
    intervals = table[(table.pool == pool) & table.wtau_low.notna() & (table.dataset != "mean")]
    if len(intervals):
        width = (intervals.wtau_high - intervals.wtau_low).median()
        lines.append(f"- One target's unpaired interval is wide (median width {width:.2f}); two methods are "
                     "compared on the same resampled models, by the paired intervals"
                     + (" above." if paired is not None and len(paired) else " (paired_differences.csv)."))
    return "**Conclusion.**\n\n" + "\n".join(lines) if lines else "**Conclusion.** Nothing to evaluate."


def _paired_lines(paired: pd.DataFrame) -> list[str]:
    """PED's change of each metric's mean (its default reference) and the comparisons between
    methods, each with its paired interval, per ground truth; what the intervals exclude."""
    lines = []
    means = paired[paired.dataset == "mean"]
    for truth, rows in means.groupby("groundtruth", sort=False):
        ped = rows[(rows.comparison == "ped") & (rows.variant == "ped") & ((rows.delta_low != 0) | (rows.delta_high != 0))]
        if len(ped):
            excludes = ped[(ped.delta_high < 0) | (ped.delta_low > 0)]
            lines.append(f"- **Paired, against {label(truth)}** (mean over targets, PED's default reference): PED "
                         f"changes {len(ped)} methods' weighted tau; the paired interval excludes zero for "
                         f"{len(excludes)} of them ("
                         + ", ".join(f"{r.a} {signed(r.delta)} [{signed(r.delta_low)}, {signed(r.delta_high)}]"
                                     for r in excludes.itertuples()) + ")"
                         + ("" if len(excludes) == len(ped) else "; for the others it includes zero") + ".")
        methods = rows[rows.comparison == "methods"]
        for r in methods.itertuples():
            verdict = "orders them" if r.delta_high < 0 or r.delta_low > 0 else "does not order them"
            lines.append(f"  {r.b} minus {r.a}: {signed(r.delta)} [{signed(r.delta_low)}, {signed(r.delta_high)}], "
                         f"which {verdict}.")
    return lines


def paper_beside(evaluation: pd.DataFrame, published: pd.DataFrame, pool: str = "all") -> str:
    """A Markdown table of the paper's mean weighted tau (``published``: the PED README's table,
    methods by dataset) beside this study's, without -> with PED, for the metrics both have
    (docs/paper-vs-study.md discusses the differences)."""
    table = published.set_index("method").drop(columns=["reference"], errors="ignore")
    paper = table.mean(axis=1)
    means = evaluation[(evaluation.dataset == "mean") & (evaluation.pool == pool)]
    truth = "finetune" if "finetune" in set(means.groundtruth) else means.groundtruth.iloc[0]
    ours = means[means.groundtruth == truth].set_index("method").weighted_tau

    def pair(values, metric):
        return (f"{values[metric]:.3f} → " + (f"{values[metric + '+ped']:.3f}" if metric + "+ped" in values else "—")
                if metric in values else "—")

    metrics = [m for m in paper.index if "+" not in m]
    lines = [f"| metric | the paper (mean over its {table.shape[1]} datasets) | this study ({label(truth)}, "
             f"pool {pool}) |", "|:--|--:|--:|"]
    lines += [f"| {m} | {pair(paper, m)} | {pair(ours, m)} |" for m in metrics]
    return "\n".join(lines)


def figures(index: pd.DataFrame) -> str:
    """What the figures stage wrote."""
    tables = index.file.str.endswith(".md")
    formats = sorted({Path(f).suffix[1:].upper() for files in index.files[~tables] for f in files})
    return (f"**Conclusion.** {len(index)} figures and tables written: {int((~tables).sum())} figures "
            f"({', '.join(formats)}) and {int(tables.sum())} tables; `index.md` in the same folder "
            "lists each with its caption.")
