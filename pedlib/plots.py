"""The study's figures and tables (matplotlib; every function takes data frames and a path).

Each plot function draws one figure from the stage outputs and returns the matplotlib Figure;
:func:`pedlib.stages.figures.figures` writes all of them, plus Markdown/CSV tables, for a study.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: papermill and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import records  # noqa: E402
from .groundtruth import label as truth_label  # noqa: E402

__all__ = ["wtau_table", "wtau_bars", "score_scatter", "ped_trajectory", "sensitivity_heatmap",
           "runtime_table", "runtime_bars", "logme_definition_table", "trajectory_models", "models_ranked", "save_figure",
           "save_table"]

_PLAIN, _PED = "#8c8c8c", "#d95f02"


def _rows(evaluation: pd.DataFrame, groundtruth: str, pool: str, variants=("plain", "ped")) -> pd.DataFrame:
    return evaluation[(evaluation.groundtruth == groundtruth) & (evaluation.pool == pool)
                      & evaluation.variant.isin(variants)]


def wtau_table(evaluation: pd.DataFrame, groundtruth: str = "linear_probe", pool: str = "all",
               variants=("plain", "ped")) -> pd.DataFrame:
    """Weighted tau per method (rows) and dataset (columns, then ``mean``)."""
    rows = _rows(evaluation, groundtruth, pool, variants)
    table = rows.pivot_table(index=["metric", "method"], columns="dataset", values="weighted_tau",
                             sort=False)
    datasets = [d for d in dict.fromkeys(rows.dataset) if d != "mean"]
    return table.reindex(columns=datasets + (["mean"] if "mean" in table else [])).reset_index(level=0, drop=True)


def models_ranked(evaluation: pd.DataFrame, groundtruth: str, pool: str) -> int:
    """How many models the plain and PED rankings against ``groundtruth`` in ``pool`` rank (at most)."""
    rows = _rows(evaluation, groundtruth, pool)
    return int(rows.n_models.max()) if len(rows) else 0


def wtau_bars(evaluation: pd.DataFrame, groundtruth: str = "linear_probe", pool: str = "all"):
    """Weighted tau of each metric without (grey) and with PED (orange), one panel per target
    and one for the mean over targets; error bars are the bootstrap intervals over models
    (for the mean: models resampled jointly across targets). Baselines are hatched."""
    rows = _rows(evaluation, groundtruth, pool)
    datasets = list(dict.fromkeys(rows.dataset))
    metrics = list(dict.fromkeys(rows.metric))
    kinds = rows.drop_duplicates("metric").set_index("metric").get("kind", pd.Series(dtype=str))
    fig, axes = plt.subplots(1, len(datasets), figsize=(0.34 * len(metrics) * len(datasets) + 1.5, 3.6),
                             sharey=True, squeeze=False)
    x = np.arange(len(metrics))
    for ax, dataset in zip(axes[0], datasets):
        here = rows[rows.dataset == dataset].set_index(["metric", "variant"])
        for offset, variant, color, label in ((-0.2, "plain", _PLAIN, "metric"),
                                              (0.2, "ped", _PED, "metric + PED")):
            values = np.array([here.weighted_tau.get((m, variant), np.nan) for m in metrics])
            bars = ax.bar(x + offset, values, 0.4, color=color, label=label)
            for bar, metric in zip(bars, metrics):
                if kinds.get(metric) == "baseline":
                    bar.set_hatch("//")
                    bar.set_edgecolor("white")
            if "wtau_low" in here:
                low = np.array([here.wtau_low.get((m, variant), np.nan) for m in metrics])
                high = np.array([here.wtau_high.get((m, variant), np.nan) for m in metrics])
                # the interval itself, not value -/+ error: a percentile bootstrap interval
                # need not contain the estimate (weighted tau over few, tied models)
                shown = np.isfinite(low) & np.isfinite(high)
                ax.vlines((x + offset)[shown], low[shown], high[shown], color="black", linewidth=0.6)
                for end in (low, high):
                    ax.scatter((x + offset)[shown], end[shown], marker="_", s=12, color="black", linewidths=0.6)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, metrics, rotation=60, ha="right", fontsize=7)
        ax.set_title("mean over targets" if dataset == "mean" else dataset, fontsize=9)
        ax.set_ylim(-1.05, 1.05)
    axes[0][0].set_ylabel(f"weighted tau vs {truth_label(groundtruth)}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Does PED help? {models_ranked(evaluation, groundtruth, pool)} models (pool {pool}); "
                 "bars: 95% bootstrap CI over models; hatched: baselines", fontsize=9, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def score_scatter(scores: pd.DataFrame, accuracies: pd.DataFrame, metric: str = "logme",
                  groundtruth: str = "linear probe"):
    """Score (x) against ground-truth accuracy (y), one point per model, per target; top row
    plain, bottom row with PED; the top-scored and the most accurate model are named."""
    merged = scores[scores.metric == metric].merge(accuracies, on=["model", "dataset"])
    datasets = list(dict.fromkeys(merged.dataset))  # the targets the ground truth covers
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.0 * len(datasets), 5.8), squeeze=False)
    for col, dataset in enumerate(datasets):
        for row, (variant, color) in enumerate((("plain", _PLAIN), ("ped", _PED))):
            ax = axes[row][col]
            here = merged[(merged.dataset == dataset) & (merged.variant == variant)]
            ax.scatter(here.score, here.accuracy, s=14, color=color)
            named = pd.concat([here.nlargest(1, "score"), here.nlargest(1, "accuracy")]).drop_duplicates("model")
            for item in named.itertuples():
                ax.annotate(item.model, (item.score, item.accuracy), fontsize=6, xytext=(3, -8),
                            textcoords="offset points", ha="right" if item.score >= here.score.median() else "left",
                            annotation_clip=False)
            ax.set_title(f"{dataset}: {metric}{' + PED' if variant == 'ped' else ''} (n={len(here)})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel(f"{metric}{' + PED' if variant == 'ped' else ''} score", fontsize=7)
            if col == 0:
                ax.set_ylabel(f"{groundtruth} accuracy", fontsize=8)
    fig.tight_layout()
    return fig


def ped_trajectory(result, features: np.ndarray, labels: np.ndarray, reference=None, *,
                   title: str = "", class_names=None):
    """Class clusters before (left) and after PED (right) in the 2-D PCA plane of the
    standardised features; arrows show each class mean's displacement. Axis limits cover the
    1st-99th percentile of the points (an outlier does not squash the plot)."""
    from sklearn.decomposition import PCA

    basis = reference if reference is not None else features
    center, spread = basis.mean(axis=0), np.maximum(basis.std(axis=0), 1e-3)
    pca = PCA(n_components=2, random_state=0).fit((features - center) / spread)
    before = pca.transform((features - center) / spread)
    after = pca.transform((result.features - center) / spread)
    path = pca.transform(((result.class_means - center) / spread).reshape(-1, features.shape[1]))
    path = path.reshape(result.class_means.shape[0], result.class_means.shape[1], 2)
    codes = np.searchsorted(result.classes, labels)
    names = [str(c) for c in (class_names if class_names is not None else result.classes)]
    points = np.concatenate([before, after])
    low, high = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    margin = 0.08 * (high - low + 1e-12)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
    cmap = plt.get_cmap("tab20")
    share = pca.explained_variance_ratio_
    for ax, points_, name in ((axes[0], before, "before PED"), (axes[1], after, f"after PED ({result.steps} steps)")):
        ax.scatter(points_[:, 0], points_[:, 1], c=[cmap(c % 20) for c in codes], s=4, alpha=0.35)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)", fontsize=8)
        ax.set_xlim(low[0] - margin[0], high[0] + margin[0])
        ax.set_ylim(low[1] - margin[1], high[1] + margin[1])
    axes[0].set_ylabel(f"PC 2 ({share[1]:.0%} of variance)", fontsize=8)
    for c in range(path.shape[1]):
        color = cmap(c % 20)
        axes[0].scatter(path[0, c, 0], path[0, c, 1], color=color, edgecolor="black", s=28,
                        label=names[c] if c < len(names) else str(c))
        axes[1].plot(path[:, c, 0], path[:, c, 1], color=color, linewidth=1.0)
        axes[1].annotate("", xy=path[-1, c], xytext=path[0, c],
                         arrowprops=dict(arrowstyle="->", color="black", linewidth=0.8))
        axes[1].scatter(path[-1, c, 0], path[-1, c, 1], color=color, edgecolor="black", s=28)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=7, title="class",
               title_fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return fig


def sensitivity_heatmap(evaluation: pd.DataFrame, scores: pd.DataFrame, metric: str = "logme",
                        groundtruth: str = "linear_probe", pool: str = "all"):
    """Mean weighted tau over targets for each (nsigma, time_step) of PED with ``metric``."""
    rows = evaluation[(evaluation.groundtruth == groundtruth) & (evaluation.pool == pool)
                      & (evaluation.metric == metric) & (evaluation.dataset == "mean")]
    settings = scores[(scores.metric == metric) & (scores.variant.str.startswith("ped:nsigma")
                                                    | (scores.variant == "ped"))]
    settings = settings.drop_duplicates("method")[["method", "nsigma", "time_step"]]
    grid = rows.merge(settings, on="method").pivot_table(index="nsigma", columns="time_step",
                                                         values="weighted_tau")
    plain = rows[rows.variant == "plain"].weighted_tau
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    image = ax.imshow(grid.values, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
    for (i, j), value in np.ndenumerate(grid.values):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white", fontsize=8)
    ax.set_xlabel("time_step")
    ax.set_ylabel("nsigma")
    baseline = f"; without PED {plain.iloc[0]:.2f}" if len(plain) else ""
    ax.set_title(f"{metric} + PED: mean weighted tau{baseline}", fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


def runtime_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per score, by metric (rows), without and with PED (PED's own time included)."""
    main = scores[scores.variant.isin(["plain", "ped"])]
    return main.pivot_table(index="metric", columns="variant", values="seconds", aggfunc="median",
                            sort=False)


def runtime_bars(scores: pd.DataFrame):
    """:func:`runtime_table` as bars (log scale)."""
    table = runtime_table(scores)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table.get("plain", np.nan), 0.4, color=_PLAIN, label="metric")
    ax.bar(x + 0.2, table.get("ped", np.nan), 0.4, color=_PED, label="metric + PED")
    ax.set_xticks(x, table.index, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("median seconds per (model, target)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path, written: dict, name: str, caption: str = ""):
    records.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format=path.suffix[1:]))
    plt.close(fig)
    written[name] = (path, caption)


def save_table(frame: pd.DataFrame, stem: Path, written: dict, name: str, caption: str = "",
                digits: int = 3):
    records.write_csv(frame.reset_index() if frame.index.name else frame, stem.with_suffix(".csv"))
    text = frame.round(digits).to_markdown()
    records.atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(text + "\n"))
    written[name] = (stem.with_suffix(".md"), caption)


def logme_definition_table(evaluation: pd.DataFrame, scores: pd.DataFrame, groundtruth: str,
                           pool: str = "all") -> pd.DataFrame:
    """How much LogME's definition matters, per target: weighted tau of ``logme`` and of the
    reference code's ``logme_reference`` (plain and with PED), their difference, and Kendall's
    tau between the two scores' rankings of the models (1: they rank the models alike)."""
    from scipy.stats import kendalltau

    rows = evaluation[(evaluation.groundtruth == groundtruth) & (evaluation.pool == pool)
                      & evaluation.metric.isin(["logme", "logme_reference"])
                      & evaluation.variant.isin(["plain", "ped"])]
    wide = rows.pivot_table(index="dataset", columns="method", values="weighted_tau", sort=False)
    if wide.empty or not {"logme", "logme_reference"} <= set(wide.columns):
        return pd.DataFrame()
    table = pd.DataFrame(index=wide.index)
    table["logme"] = wide["logme"]
    table["logme_reference"] = wide["logme_reference"]
    table["difference"] = table.logme - table.logme_reference
    if {"logme+ped", "logme_reference+ped"} <= set(wide.columns):
        table["logme+ped"] = wide["logme+ped"]
        table["logme_reference+ped"] = wide["logme_reference+ped"]
        table["difference+ped"] = table["logme+ped"] - table["logme_reference+ped"]
    agreement = {}
    for dataset, group in scores[scores.variant == "plain"].groupby("dataset", sort=False):
        pair = group.pivot_table(index="model", columns="metric", values="score")
        if {"logme", "logme_reference"} <= set(pair.columns):
            agreement[dataset] = kendalltau(pair.logme, pair.logme_reference).statistic
    table["kendall_between_scores"] = pd.Series(agreement)
    table.loc["mean", "kendall_between_scores"] = np.nanmean(list(agreement.values())) if agreement else np.nan
    table.index.name = "dataset"
    return table


def trajectory_models(accuracies: pd.DataFrame, models, datasets):
    """(target, worst model, best model, models ranked) for the PED trajectory figures: the
    first of ``datasets`` the ground truth covers, and the least and most accurate of the
    study's ``models`` on it (a published ground truth may list models the study leaves out;
    ties go to the name). None when the ground truth covers none of the study's models."""
    truth = accuracies[accuracies.model.isin(list(models))]
    target = next((d for d in datasets if (truth.dataset == d).any()), None)
    if target is None:
        return None
    ranked = truth[truth.dataset == target].sort_values(["accuracy", "model"], kind="stable")
    return target, ranked.model.iloc[0], ranked.model.iloc[-1], len(ranked)
