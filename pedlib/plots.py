"""The study's figures and tables (matplotlib; every function takes data frames).

Each plot function draws one figure from the stage outputs in the style of
:mod:`pedlib.plotstyle` and returns the matplotlib Figure; each table function returns a
DataFrame. :func:`pedlib.stages.figures.figures` writes all of them for a study: figures as
PDF and PNG (:func:`save_figure`), tables as Markdown, CSV and, for a paper, LaTeX
(:func:`save_table`, :func:`latex_table`).
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.plots", ("matplotlib", "pandas"))

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import records
from .groundtruth import label as truth_label
from .plotstyle import (COLUMN, PAGE, PED, PLAIN, class_styles, dataset_label, method_color, method_label, plt,
                        save, style)

__all__ = ["wtau_table", "wtau_forest", "ped_effect_table", "ped_effect_forest", "ped_effect_limits",
           "ped_effect_headline",
           "method_comparison_table", "score_scatter", "ped_trajectory",
           "sensitivity_heatmap", "runtime_table", "runtime_bars", "logme_definition_table", "trajectory_models",
           "models_ranked", "latex_table", "latex_width_cm", "latex_escape", "save_figure", "save_table",
           "COLUMN_WIDTH_CM", "TEXT_WIDTH_CM"]

#: nsigma and time_step of the paper (Li et al., ICCV 2023), marked on the sensitivity map.
PAPER_SETTING = (0.6, 0.1)


def _rows(evaluation: pd.DataFrame, groundtruth: str, pool: str, variants=("plain", "ped")) -> pd.DataFrame:
    return evaluation[(evaluation.groundtruth == groundtruth) & (evaluation.pool == pool)
                      & evaluation.variant.isin(variants)]


def wtau_table(evaluation: pd.DataFrame, groundtruth: str = "linear_probe", pool: str = "all",
               variants=("plain", "ped"), column: str = "weighted_tau") -> pd.DataFrame:
    """Weighted tau (or ``column``, e.g. ``wtau_low``) per method (rows) and dataset (columns,
    then ``mean``)."""
    rows = _rows(evaluation, groundtruth, pool, variants)
    table = rows.pivot_table(index=["metric", "method"], columns="dataset", values=column, sort=False)
    datasets = [d for d in dict.fromkeys(rows.dataset) if d != "mean"]
    return table.reindex(columns=datasets + (["mean"] if "mean" in table else [])).reset_index(level=0, drop=True)


def models_ranked(evaluation: pd.DataFrame, groundtruth: str, pool: str) -> int:
    """How many models the plain and PED rankings against ``groundtruth`` in ``pool`` rank (at most)."""
    rows = _rows(evaluation, groundtruth, pool)
    return int(rows.n_models.max()) if len(rows) else 0


def _metric_order(rows: pd.DataFrame) -> tuple[list[str], int]:
    """The metrics in the study's order, baselines last, and how many are baselines."""
    kinds = rows.drop_duplicates("metric").set_index("metric").get("kind", pd.Series(dtype=str))
    metrics = list(dict.fromkeys(rows.metric))
    baselines = [m for m in metrics if kinds.get(m) == "baseline"]
    return [m for m in metrics if m not in baselines] + baselines, len(baselines)


def _panels(n_panels: int, n_rows: int, sharex: bool = True):
    """A page-wide grid of panels sharing a y axis of ``n_rows`` methods (first at the top)."""
    columns = n_panels if n_panels <= 3 else 3 if n_panels <= 6 else 4
    lines = math.ceil(n_panels / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(PAGE, lines * (0.15 * n_rows + 0.55) + 0.45),
                             sharex=sharex, sharey=True, squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    for ax in axes.flat[max(0, n_panels - columns):n_panels]:
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig, list(axes.flat[:n_panels]), columns


def _method_axis(ax, metrics: list[str], baselines: int) -> np.ndarray:
    y = np.arange(len(metrics))[::-1].astype(float)
    ax.set_yticks(y, [method_label(m) for m in metrics])
    ax.set_ylim(-0.7, len(metrics) - 0.3)
    if baselines and baselines < len(metrics):
        ax.axhline(baselines - 0.5, color="0.6", linewidth=0.5, linestyle=":")
    ax.axvline(0, color="0.6", linewidth=0.5, zorder=0)
    ax.tick_params(axis="y", length=0)
    return y


def _finish_forest(fig, axes: list, columns: int, xlabel: str, handles: list) -> None:
    """The x label under the bottom panels (of a grid ``columns`` wide), the legend under the
    figure, the layout."""
    for ax in axes[-min(len(axes), columns):]:
        ax.set_xlabel(xlabel)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.05, 1, 1), h_pad=0.8, w_pad=0.6)


def _marker(label: str, filled: bool = True, marker: str = "o"):
    return plt.Line2D([], [], marker=marker, color="0.3", markerfacecolor="0.3" if filled else "white",
                      linestyle="none", markersize=3.6, label=label)


def _note(ax, y: float, text: str) -> None:
    ax.text(0, y, text, ha="center", va="center", fontsize=6, color="0.35", style="italic")


def _mean_title(covered: dict[str, int], n_targets: int) -> str:
    """The mean panel's title; † marks the methods whose mean covers fewer targets."""
    fewer = any(k < n_targets for k in covered.values())
    return f"mean over {n_targets} targets" + (" (†: fewer)" if fewer else "")


def wtau_forest(evaluation: pd.DataFrame, groundtruth: str = "linear_probe", pool: str = "all",
                scores: pd.DataFrame | None = None):
    """Does PED help? Weighted tau of each method without (open) and with PED (filled), one
    panel per target and one for the mean over targets, with the bootstrap intervals over
    models (for the mean: models resampled jointly across targets).

    Marked: a ranking whose scores all tie ("all scores tied": no ranking, left out of the
    mean), one with no row (too few models scored), a ranking where some scores are saturated
    (diamonds; ``scores`` needed), and a mean over fewer targets than the panel says (†).
    """
    rows = _rows(evaluation, groundtruth, pool)
    datasets = list(dict.fromkeys(rows.dataset))
    targets = [d for d in datasets if d != "mean"]
    metrics, baselines = _metric_order(rows)
    saturated = set()
    if scores is not None and "saturated" in scores:
        flagged = scores[scores.saturated.astype(bool) & scores.variant.isin(["plain", "ped"])]
        saturated = set(zip(flagged.dataset, flagged.metric, flagged.variant))
    defined = rows[rows.dataset != "mean"].dropna(subset=["weighted_tau"])
    covered = defined.groupby(["metric", "variant"]).dataset.nunique().groupby("metric").min().to_dict()
    with style():
        fig, axes, columns = _panels(len(datasets), len(metrics))
        for ax, dataset in zip(axes, datasets):
            here = rows[rows.dataset == dataset].set_index(["metric", "variant"])
            y = _method_axis(ax, metrics, baselines)
            for i, metric in enumerate(metrics):
                color = method_color(metric)
                shown = False
                for offset, variant in ((0.17, "plain"), (-0.17, "ped")):
                    if (metric, variant) not in here.index:
                        continue
                    row = here.loc[(metric, variant)]
                    if not np.isfinite(row.weighted_tau):
                        continue
                    shown = True
                    if np.isfinite(row.get("wtau_low", np.nan)):
                        # the interval itself, not value -/+ error: a percentile bootstrap
                        # interval need not contain the estimate (few, tied models)
                        ax.hlines(y[i] + offset, row.wtau_low, row.wtau_high, color=color, linewidth=0.9)
                    marker = "D" if (dataset, metric, variant) in saturated else "o"
                    ax.plot(row.weighted_tau, y[i] + offset, marker=marker, markersize=3.6, color=color,
                            markerfacecolor=color if variant == "ped" else "white", markeredgewidth=0.9)
                if not shown:
                    present = any((metric, v) in here.index for v in ("plain", "ped"))
                    _note(ax, y[i], "all scores tied" if present else "too few models")
                if dataset == "mean" and covered.get(metric, len(targets)) < len(targets):
                    ax.text(1.0, y[i], f"† {covered.get(metric, 0)}", ha="left", va="center", fontsize=6,
                            transform=ax.get_yaxis_transform())
            n = int(here.n_models.max()) if len(here) else 0
            ax.set_title(_mean_title(covered, len(targets)) if dataset == "mean" else f"{dataset} ({n} models)")
            ax.set_xlim(-1.05, 1.05)
            ax.set_xticks([-1, -0.5, 0, 0.5, 1], ["−1", "−0.5", "0", "0.5", "1"])
        handles = [_marker("without PED", filled=False), _marker("with PED"),
                   plt.Line2D([], [], color="0.3", linewidth=0.9, label="95% bootstrap CI over models")]
        if saturated:
            handles.append(_marker("some scores saturated (tied)", filled=False, marker="D"))
        _finish_forest(fig, axes, columns, f"weighted τ vs {truth_label(groundtruth)}", handles)
    return fig


def ped_effect_table(effect: pd.DataFrame, groundtruth: str, pool: str, column: str = "delta") -> pd.DataFrame:
    """PED's effect (``delta``: weighted tau with PED minus without; or ``delta_low`` /
    ``delta_high``) per metric (rows) and dataset (columns, then ``mean``)."""
    rows = effect[(effect.groundtruth == groundtruth) & (effect.pool == pool)]
    table = rows.pivot_table(index="metric", columns="dataset", values=column, sort=False, dropna=False)
    datasets = [d for d in dict.fromkeys(rows.dataset) if d != "mean"]
    return table.reindex(columns=datasets + (["mean"] if "mean" in table else []))


def ped_effect_limits(effect: pd.DataFrame) -> tuple[tuple[float, float], tuple[float, float]]:
    """The x limits every PED-effect figure of a study shares: (the target panels', the mean
    panel's), each spanning zero and every interval of its panels in ``effect`` (all ground
    truths and pools), with a 5% margin."""
    def span(rows: pd.DataFrame) -> tuple[float, float]:
        values = pd.concat([rows.delta_low, rows.delta_high, rows.delta]).astype(float)
        values = values[np.isfinite(values)]
        low, high = min(values.min(), 0.0) if len(values) else -0.1, max(values.max(), 0.0) if len(values) else 0.1
        pad = 0.05 * max(high - low, 0.02)
        return low - pad, high + pad

    return span(effect[effect.dataset != "mean"]), span(effect[effect.dataset == "mean"])


def ped_effect_forest(effect: pd.DataFrame, groundtruth: str, pool: str, limits=None):
    """What PED changes: weighted tau with PED minus without per metric, one panel per target
    and one for the mean, with paired bootstrap intervals over models, thick where the interval
    excludes zero. The target panels share one x axis and the mean panel has its own, zoomed to
    its smaller intervals; ``limits`` (:func:`ped_effect_limits`) gives both, so that every
    PED-effect figure of a study has the same axes (default: from ``effect``)."""
    rows = effect[(effect.groundtruth == groundtruth) & (effect.pool == pool)]
    target_limits, mean_limits = limits or ped_effect_limits(effect)
    datasets = list(dict.fromkeys(rows.dataset))
    targets = [d for d in datasets if d != "mean"]
    metrics, baselines = _metric_order(rows)
    covered = rows[rows.dataset == "mean"].set_index("metric").n_targets.to_dict()
    with style():
        fig, axes, columns = _panels(len(datasets), len(metrics), sharex=False)
        for ax, dataset in zip(axes, datasets):
            here = rows[rows.dataset == dataset].set_index("metric")
            y = _method_axis(ax, metrics, baselines)
            ax.set_xlim(*(mean_limits if dataset == "mean" else target_limits))
            for i, metric in enumerate(metrics):
                if metric not in here.index or not np.isfinite(here.delta.get(metric)):
                    _note(ax, y[i], "all scores tied" if metric in here.index else "too few models")
                    continue
                row = here.loc[metric]
                color = method_color(metric)
                excludes = np.isfinite(row.delta_low) and (row.delta_low > 0 or row.delta_high < 0)
                if np.isfinite(row.delta_low):
                    ax.hlines(y[i], row.delta_low, row.delta_high, color=color, linewidth=2.2 if excludes else 0.8)
                ax.plot(row.delta, y[i], marker="o", markersize=3.6, color=color, markeredgewidth=0.9)
                if dataset == "mean" and covered.get(metric, len(targets)) < len(targets):
                    ax.text(1.0, y[i], f"† {int(covered[metric])}", ha="left", va="center", fontsize=6,
                            transform=ax.get_yaxis_transform())
            n = int(here.n_models.max()) if len(here) else 0
            ax.set_title(_mean_title(covered, len(targets)) + " (own axis)" if dataset == "mean"
                         else f"{dataset_label(dataset)} ({n} models)")
        handles = [plt.Line2D([], [], color="0.3", linewidth=2.2, label="95% paired CI excludes 0"),
                   plt.Line2D([], [], color="0.3", linewidth=0.8, label="includes 0")]
        _finish_forest(fig, axes, columns, f"Δ weighted τ vs {truth_label(groundtruth)}", handles)
    return fig


#: PED's references in the headline figure: variant -> (label, marker).
_REFERENCE_MARKERS = {"ped": ("own source data (default)", "o"), "ped:ref=others": ("other targets pooled", "s"),
                      "ped:ref=none": ("the target itself", "^")}


def ped_effect_headline(paired: pd.DataFrame, groundtruths: Sequence[str]):
    """Does PED help? One column-wide figure: for each metric (rows) and ground truth
    (panels), the mean over targets of weighted tau with PED minus without, under each of
    PED's references (marker shapes), with its 95% paired bootstrap interval over models. A
    thick interval excludes zero; the axis spans the intervals."""
    rows = paired[(paired.comparison == "ped") & (paired.dataset == "mean")
                  & paired.variant.isin(list(_REFERENCE_MARKERS))]
    rows = rows[rows.groundtruth.isin(groundtruths)]
    from . import metrics as registry

    kinds = {m: registry.info(m).kind for m in rows.a}
    constant = {m for m, g in rows.groupby("a") if (g.delta_low == 0).all() and (g.delta_high == 0).all()}
    metrics = [m for m in dict.fromkeys(rows.a) if m not in constant]
    metrics = [m for m in metrics if kinds[m] == "metric"] + [m for m in metrics if kinds[m] == "baseline"]
    baselines = sum(kinds[m] == "baseline" for m in metrics)
    shown = rows[rows.a.isin(metrics)]
    low = min(shown.delta_low.min(), shown.delta.min(), 0.0)
    high = max(shown.delta_high.max(), shown.delta.max(), 0.0)
    pad = 0.06 * (high - low or 1.0)
    offsets = dict(zip(_REFERENCE_MARKERS, (0.27, 0.0, -0.27)))
    with style():
        fig, axes = plt.subplots(1, len(groundtruths), figsize=(COLUMN, 0.3 * len(metrics) + 1.05), sharey=True,
                                 squeeze=False)
        for ax, truth in zip(axes[0], groundtruths):
            here = shown[shown.groundtruth == truth].set_index(["a", "variant"])
            y = _method_axis(ax, metrics, baselines)
            for i, metric in enumerate(metrics):
                color = method_color(metric)
                for variant, (_, marker) in _REFERENCE_MARKERS.items():
                    if (metric, variant) not in here.index:
                        continue
                    row = here.loc[(metric, variant)]
                    excludes = row.delta_low > 0 or row.delta_high < 0
                    at = y[i] + offsets[variant]
                    ax.hlines(at, row.delta_low, row.delta_high, color=color, linewidth=1.8 if excludes else 0.6)
                    ax.plot(row.delta, at, marker=marker, markersize=3.2, color=color, markerfacecolor="white",
                            markeredgewidth=0.8, linestyle="none")
            ax.set_xlim(low - pad, high + pad)
            ax.set_title(truth_label(truth))
        handles = [_marker(label, filled=False, marker=marker) for label, marker in _REFERENCE_MARKERS.values()]
        handles += [plt.Line2D([], [], color="0.3", linewidth=1.8, label="95% CI excludes 0"),
                    plt.Line2D([], [], color="0.3", linewidth=0.6, label="includes 0")]
        fig.legend(handles=handles, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0), columnspacing=0.8,
                   handletextpad=0.3)
        fig.tight_layout(rect=(0, 0.19, 1, 1), w_pad=0.4)
        fig.supxlabel("Δ mean weighted τ, with PED − without", y=0.13, fontsize=plt.rcParams["axes.labelsize"])
    return fig


def method_comparison_table(paired: pd.DataFrame, groundtruth: str) -> pd.DataFrame:
    """The paired differences between methods (``comparison == "methods"``), mean over the
    targets: B minus A with its 95% paired bootstrap interval, one row per pair."""
    rows = paired[(paired.comparison == "methods") & (paired.dataset == "mean") & (paired.groundtruth == groundtruth)]
    return pd.DataFrame({"comparison": [f"{method_label(b)} − {method_label(a)}" for a, b in zip(rows.a, rows.b)],
                         "difference": rows.delta.to_numpy(), "ci_low": rows.delta_low.to_numpy(),
                         "ci_high": rows.delta_high.to_numpy(), "targets": rows.n_targets.to_numpy()}
                        ).set_index("comparison")


def score_scatter(scores: pd.DataFrame, accuracies: pd.DataFrame, metric: str = "logme",
                  groundtruth: str = "linear probe"):
    """Score (x) against ground-truth accuracy (y), one point per model; one row per target,
    without PED (left) and with PED (right). The top-scored model is starred (none when several
    tie for the top) and the most accurate ringed, and both are named under the panel (never over
    the points); saturated scores (tied at the metric's maximum) are drawn as crosses and counted."""
    merged = scores[scores.metric == metric].merge(accuracies, on=["model", "dataset"])
    datasets = list(dict.fromkeys(merged.dataset))  # the targets the ground truth covers
    color = method_color(metric)
    with style():
        fig, axes = plt.subplots(len(datasets), 2, figsize=(PAGE, 1.75 * len(datasets) + 0.2), squeeze=False)
        for row, dataset in enumerate(datasets):
            for col, variant in enumerate(("plain", "ped")):
                ax = axes[row][col]
                here = merged[(merged.dataset == dataset) & (merged.variant == variant)].dropna(subset=["score"])
                flagged = here.saturated.astype(bool) if "saturated" in here else pd.Series(False, index=here.index)
                ax.scatter(here.score[~flagged], here.accuracy[~flagged], s=12, color=color,
                           facecolors=color if variant == "ped" else "white", linewidths=0.8, zorder=2)
                ax.scatter(here.score[flagged], here.accuracy[flagged], s=14, color=color, marker="x",
                           linewidths=0.8, zorder=2)
                name = f"{method_label(metric)}{' + PED' if variant == 'ped' else ''}"
                ax.set_title(f"{dataset_label(dataset)}: {name} score (x), {len(here)} models")
                ax.set_ylabel(f"{groundtruth} acc.")
                ax.margins(0.12)
                if here.empty:
                    continue
                leaders = here[np.isclose(here.score, here.score.max(), rtol=1e-9, atol=0) | (
                    flagged & flagged.get(here.score.idxmax(), False))]
                best = here.loc[here.accuracy.idxmax()]
                if len(leaders) == 1:  # a tie has no top-scored model to star
                    top = leaders.iloc[0]
                    ax.scatter([top.score], [top.accuracy], marker="*", s=70, color="black", zorder=3)
                ax.scatter([best.score], [best.accuracy], marker="o", s=70, facecolors="none", edgecolors="black",
                           linewidths=0.8, zorder=3)
                # the names go in the x label's place, which the layout keeps clear of everything
                lines = [f"★ top-scored: {leaders.iloc[0].model}" if len(leaders) == 1
                         else f"no single top score: {len(leaders)} models tie at the highest",
                         f"○ most accurate: {best.model}"]
                if flagged.any():
                    lines.append(f"× saturated: {int(flagged.sum())} models tied at the maximum")
                ax.set_xlabel("\n".join(lines), fontsize=6, loc="left", labelpad=2)
        fig.tight_layout(h_pad=1.0, w_pad=1.5)
    return fig


def ped_trajectory(result, features: np.ndarray, labels: np.ndarray, reference=None, *,
                   title: str = "", class_names=None):
    """Class clusters before (left) and after PED (middle) in the 2-D PCA plane of the
    standardised features, every point shown (the axes cover the 0.5-99.5th percentiles; a
    point beyond them sits on the edge as an open marker, counted under the panel); the middle
    panel's arrows and the right panel
    (the class means alone, zoomed to them) draw each class mean's displacement to scale, from
    its place before PED (open marker) to its place after."""
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
    # the axes cover the 0.5-99.5th percentiles (an outlier does not squash the plot); a point
    # beyond them is drawn on the axes' edge as an open marker, and counted in the panel's title
    low, high = np.percentile(points, 0.5, axis=0), np.percentile(points, 99.5, axis=0)
    margin = 0.06 * (high - low + 1e-12)
    low, high = low - margin, high + margin
    looks = class_styles(path.shape[1])
    share = pca.explained_variance_ratio_
    arrow = dict(arrowstyle="-|>", linewidth=1.1, mutation_scale=9, shrinkA=0, shrinkB=0)
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(PAGE, 2.9))
        for ax, shown, name in ((axes[0], before, "before PED"), (axes[1], after, f"after PED ({result.steps} steps)")):
            beyond = ((shown < low) | (shown > high)).any(axis=1)
            edge = np.clip(shown, low, high)
            for c, (color, marker) in enumerate(looks):
                mine = codes == c
                ax.scatter(shown[mine & ~beyond, 0], shown[mine & ~beyond, 1], color=color, marker=marker, s=4,
                           alpha=0.4, linewidths=0)
                ax.scatter(edge[mine & beyond, 0], edge[mine & beyond, 1], facecolors="none", edgecolors=color,
                           marker=marker, s=9, linewidths=0.6, clip_on=False)
                ax.scatter(*path[0 if ax is axes[0] else -1, c], color=color, marker=marker, edgecolor="black", s=26,
                           linewidths=0.6, zorder=3, label=(names[c] if c < len(names) else str(c)) if ax is axes[0]
                           else None)
                if ax is axes[1]:
                    ax.annotate("", xy=path[-1, c], xytext=path[0, c], zorder=4, arrowprops=dict(arrow, color=color))
            ax.set_title(name)
            ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)"
                          + (f"\n{int(beyond.sum())} beyond the axes: open, on the edge" if beyond.any() else ""))
            ax.set_xlim(low[0], high[0])
            ax.set_ylim(low[1], high[1])
        axes[1].sharey(axes[0])
        axes[1].tick_params(labelleft=False)
        for c, (color, marker) in enumerate(looks):  # the means alone: start (open) -> end, to scale
            axes[2].scatter(*path[0, c], color="white", marker=marker, edgecolor=color, s=26, linewidths=1.0,
                            zorder=3)
            axes[2].scatter(*path[-1, c], color=color, marker=marker, edgecolor="black", s=26, linewidths=0.6,
                            zorder=3)
            axes[2].annotate("", xy=path[-1, c], xytext=path[0, c], zorder=2, arrowprops=dict(arrow, color=color))
        axes[2].set_title("class means, zoomed")
        axes[2].margins(0.12)
        axes[2].set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
        axes[0].set_ylabel(f"PC 2 ({share[1]:.0%} of variance)")
        columns = min(6, path.shape[1])
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=columns,
                   title="class (large marker: its mean; open: before PED)", bbox_to_anchor=(0.5, 0.0))
        if title:
            fig.suptitle(title)
        rows_of_legend = math.ceil(path.shape[1] / columns)
        fig.tight_layout(rect=(0, 0.07 + 0.06 * rows_of_legend, 1, 1))
    return fig


def sensitivity_heatmap(evaluation: pd.DataFrame, scores: pd.DataFrame, metric: str = "logme",
                        groundtruth: str = "linear_probe", pool: str = "all"):
    """Mean weighted tau over targets for each (nsigma, time_step) of PED with ``metric``;
    the paper's setting (:data:`PAPER_SETTING`) is outlined."""
    from matplotlib.patches import Rectangle

    rows = evaluation[(evaluation.groundtruth == groundtruth) & (evaluation.pool == pool)
                      & (evaluation.metric == metric) & (evaluation.dataset == "mean")]
    settings = scores[(scores.metric == metric) & (scores.variant.str.startswith("ped:nsigma")
                                                    | (scores.variant == "ped"))]
    settings = settings.drop_duplicates("method")[["method", "nsigma", "time_step"]]
    grid = rows.merge(settings, on="method").pivot_table(index="nsigma", columns="time_step",
                                                         values="weighted_tau")
    plain = rows[rows.variant == "plain"].weighted_tau
    with style():
        fig, ax = plt.subplots(figsize=(COLUMN, 2.6))
        image = ax.imshow(grid.values, cmap="viridis", origin="lower", aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        for (i, j), value in np.ndenumerate(grid.values):
            red, green, blue, _ = image.cmap(image.norm(value))
            light = 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.45
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="black" if light else "white", fontsize=7)
        paper = [(i, j) for i, nsigma in enumerate(grid.index) for j, step in enumerate(grid.columns)
                 if np.isclose(nsigma, PAPER_SETTING[0]) and np.isclose(step, PAPER_SETTING[1])]
        for i, j in paper:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#EE3377", linewidth=1.8))
        ax.set_xlabel("time step")
        ax.set_ylabel("nσ")
        ax.spines[:].set_visible(False)
        ax.tick_params(length=0)
        baseline = f"; without PED {plain.iloc[0]:.2f}" if len(plain) else ""
        ax.set_title(f"{method_label(metric)} + PED: mean weighted τ{baseline}"
                     + ("\n(outlined: the paper's setting)" if paper else ""))
        bar = fig.colorbar(image, ax=ax, fraction=0.06, pad=0.03)
        bar.ax.tick_params(labelsize=6)
        bar.outline.set_visible(False)
        fig.tight_layout()
    return fig


def runtime_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per score, by metric (rows), without and with PED (PED's own time included)."""
    main = scores[scores.variant.isin(["plain", "ped"])]
    return main.pivot_table(index="metric", columns="variant", values="seconds", aggfunc="median",
                            sort=False)


def runtime_bars(scores: pd.DataFrame):
    """:func:`runtime_table` as horizontal bars (log scale), one method per row."""
    table = runtime_table(scores)
    with style():
        fig, ax = plt.subplots(figsize=(COLUMN, 0.2 * len(table) + 0.75))
        y = np.arange(len(table))[::-1].astype(float)
        ax.barh(y + 0.19, table.get("plain", np.nan), 0.38, color=PLAIN, label="without PED")
        ax.barh(y - 0.19, table.get("ped", np.nan), 0.38, color=PED, label="with PED")
        ax.set_yticks(y, [method_label(m) for m in table.index])
        ax.tick_params(axis="y", length=0)
        ax.set_xscale("log")
        ax.set_xlabel("median seconds per (model, target)")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
        fig.tight_layout()
    return fig


#: Text widths of a two-column page (CVPR/ICCV, IEEE): one column and the whole text, in cm.
COLUMN_WIDTH_CM, TEXT_WIDTH_CM = 8.25, 17.46
# Average glyph widths (cm) of Computer Modern digits and letters at \footnotesize (8 pt) and
# \scriptsize (6 pt), and \tabcolsep (6 pt) on each side of a column: a table's width estimate.
_CHAR_CM = {"footnotesize": 0.141, "scriptsize": 0.106}
_COLUMN_PAD_CM = 0.42
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def _latex_number(value: float, places: int) -> str:
    """``value`` to ``places`` decimals with a true minus sign; never a negative zero."""
    if not np.isfinite(value):
        return "--"
    text = f"{value:.{places}f}"
    if text.startswith("-") and float(text) == 0:
        text = text[1:]
    return text.replace("-", "$-$")


def _shown_length(text: str) -> int:
    """Characters a LaTeX cell prints (``$-$`` is one minus sign, commands print nothing)."""
    import re

    return len(re.sub(r"\\[a-zA-Z]+\{?|[{}]", "", text.replace("$-$", "-")))


def latex_table(values: pd.DataFrame, low: pd.DataFrame | None = None, high: pd.DataFrame | None = None, *,
                digits: int = 3, bold: str | None = "max", caption: str = "", label: str = "") -> str:
    r"""``values`` as a LaTeX float (``table``, or ``table*`` when it is wider than one column of
    a two-column page) with ``\caption``, ``\label{tab:<label>}`` and ``booktabs`` rules, in
    ``\footnotesize``: methods as rows (readable names), datasets as columns (readable headers),
    each interval ``[low, high]`` in ``\scriptsize`` on a row of its own under its value, the
    unique best value of each column (``bold``: ``"max"``, ``"min"`` or None) in bold (a tie
    bolds nothing), a true minus sign and no negative zero, ``--`` for a missing value."""
    if low is not None and high is not None:
        low, high = (bound.reindex(index=values.index, columns=values.columns) for bound in (low, high))
    best = {}
    for column in values.columns:
        finite = values[column].astype(float)
        if bold and finite.notna().any():
            top = finite.max() if bold == "max" else finite.min()
            winners = finite.index[np.isclose(finite, top) & finite.notna()]
            if len(winners) == 1:
                best[column] = winners[0]
    header = [latex_escape(values.index.name.capitalize() if values.index.name else "")]
    header += [latex_escape(dataset_label(c)) for c in values.columns]
    rows = []
    for index in values.index:
        cells = [latex_escape(method_label(str(index)))]
        bounds = [""]
        for column in values.columns:
            text = _latex_number(values.at[index, column], digits)
            cells.append(rf"\textbf{{{text}}}" if best.get(column) == index else text)
            interval = ""
            if low is not None and high is not None and text != "--":
                lo, hi = low.at[index, column], high.at[index, column]
                if np.isfinite(lo) and np.isfinite(hi):
                    interval = rf"{{\scriptsize [{_latex_number(lo, 2)}, {_latex_number(hi, 2)}]}}"
            bounds.append(interval)
        rows.append(" & ".join(cells) + r" \\")
        if any(bounds):
            rows.append(" & ".join(bounds) + r" \\")
    width = latex_width_cm([header] + [row[:-3].split(" & ") for row in rows])
    environment = "table" if width <= COLUMN_WIDTH_CM else "table*"
    lines = ["% requires \\usepackage{booktabs}", rf"\begin{{{environment}}}[t]", r"\centering", r"\footnotesize",
             rf"\caption{{{latex_escape(caption)}}}" if caption else None,
             rf"\label{{tab:{label}}}" if label else None,
             rf"\begin{{tabular}}{{l{'r' * len(values.columns)}}}", r"\toprule", " & ".join(header) + r" \\",
             r"\midrule", *rows, r"\bottomrule", r"\end{tabular}", rf"\end{{{environment}}}"]
    return "\n".join(line for line in lines if line is not None) + "\n"


def latex_width_cm(rows: list[list[str]]) -> float:
    r"""An estimate of a tabular's printed width from its cells (``\scriptsize`` ones narrower)."""
    widths = [0.0] * max(len(row) for row in rows)
    for row in rows:
        for i, cell in enumerate(row):
            size = "scriptsize" if "\\scriptsize" in cell else "footnotesize"
            widths[i] = max(widths[i], _shown_length(cell) * _CHAR_CM[size])
    return sum(widths) + _COLUMN_PAD_CM * len(widths)


def save_figure(fig, stem: Path, written: dict, name: str, caption: str = "",
                formats: Sequence[str] = ("pdf", "png"), dpi: int = 300) -> None:
    """Write ``fig`` in each of ``formats`` (:func:`pedlib.plotstyle.save`) and list it in
    ``written`` under ``name`` with its caption."""
    written[name] = (save(fig, Path(stem), formats, dpi), caption)


def save_table(frame: pd.DataFrame, stem: Path, written: dict, name: str, caption: str = "",
               digits: int = 3, latex: str | None = None, missing: str = "nan") -> None:
    """Write ``frame`` as ``stem.csv`` and ``stem.md`` (and ``stem.tex`` when ``latex`` is
    given, e.g. from :func:`latex_table`) and list it in ``written``. A missing value prints
    as ``missing`` in the Markdown."""
    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    records.write_csv(frame.reset_index() if frame.index.name else frame, paths[1])
    shown = frame.round(digits)
    if missing != "nan":
        shown = shown.astype(object).where(shown.notna(), None)  # tabulate prints None as missingval
    text = shown.to_markdown(missingval=missing)
    records.atomic_write(paths[0], lambda tmp: tmp.write_text(text + "\n"))
    if latex is not None:
        paths.append(stem.with_suffix(".tex"))
        records.atomic_write(paths[2], lambda tmp: tmp.write_text(latex))
    written[name] = (paths, caption)


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
