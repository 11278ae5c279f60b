"""The study's figures and tables (matplotlib; every function takes data frames and a path).

Each plot function draws one figure from the stage outputs and returns the matplotlib Figure;
:func:`study_figures` writes all of them, plus Markdown/CSV tables, for a :class:`Study`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: papermill and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import records  # noqa: E402

__all__ = ["wtau_table", "wtau_bars", "score_scatter", "ped_trajectory", "sensitivity_heatmap",
           "runtime_table", "runtime_bars", "study_figures"]

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


def wtau_bars(evaluation: pd.DataFrame, groundtruth: str = "linear_probe", pool: str = "all"):
    """Weighted tau of each metric without (grey) and with PED (orange), one panel per target."""
    rows = _rows(evaluation, groundtruth, pool)
    datasets = list(dict.fromkeys(rows.dataset))
    metrics = list(dict.fromkeys(rows.metric))
    fig, axes = plt.subplots(1, len(datasets), figsize=(2.6 * len(datasets) + 1, 3.2), sharey=True,
                             squeeze=False)
    x = np.arange(len(metrics))
    for ax, dataset in zip(axes[0], datasets):
        here = rows[rows.dataset == dataset].set_index(["metric", "variant"])
        for offset, variant, color, label in ((-0.2, "plain", _PLAIN, "metric"),
                                              (0.2, "ped", _PED, "metric + PED")):
            values = [here.weighted_tau.get((m, variant), np.nan) for m in metrics]
            ax.bar(x + offset, values, 0.4, color=color, label=label)
            if dataset != "mean" and "wtau_low" in here:
                low = np.array([here.wtau_low.get((m, variant), np.nan) for m in metrics])
                high = np.array([here.wtau_high.get((m, variant), np.nan) for m in metrics])
                ax.errorbar(x + offset, values, yerr=[np.subtract(values, low), np.subtract(high, values)],
                            fmt="none", ecolor="black", elinewidth=0.6, capsize=1.5)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, metrics, rotation=60, fontsize=8)
        ax.set_title(dataset, fontsize=10)
    axes[0][0].set_ylabel(f"weighted tau vs {groundtruth.replace('_', ' ')}")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Does PED help? pool: {pool} (bars: 95% bootstrap CI over models)", fontsize=10)
    fig.tight_layout()
    return fig


def score_scatter(scores: pd.DataFrame, accuracies: pd.DataFrame, metric: str = "logme",
                  groundtruth: str = "linear probe"):
    """Score (x) against ground-truth accuracy (y), per target; top row plain, bottom row PED."""
    datasets = list(dict.fromkeys(scores.dataset))
    fig, axes = plt.subplots(2, len(datasets), figsize=(2.8 * len(datasets), 5.4), squeeze=False)
    merged = scores[scores.metric == metric].merge(accuracies, on=["model", "dataset"])
    for col, dataset in enumerate(datasets):
        for row, (variant, color) in enumerate((("plain", _PLAIN), ("ped", _PED))):
            ax = axes[row][col]
            here = merged[(merged.dataset == dataset) & (merged.variant == variant)]
            ax.scatter(here.score, here.accuracy, s=14, color=color)
            best = here.nlargest(1, "score")
            for item in best.itertuples():
                ax.annotate(item.model, (item.score, item.accuracy), fontsize=6)
            ax.set_title(f"{dataset}: {metric}{' + PED' if variant == 'ped' else ''}", fontsize=8)
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel(f"{groundtruth} accuracy", fontsize=8)
    fig.tight_layout()
    return fig


def ped_trajectory(result, features: np.ndarray, labels: np.ndarray, reference=None, *,
                   title: str = ""):
    """Class clusters before (left) and after PED (right) in the 2-D PCA plane of the
    standardised features, with each class mean's path."""
    from sklearn.decomposition import PCA

    basis = reference if reference is not None else features
    center, spread = basis.mean(axis=0), np.maximum(basis.std(axis=0), 1e-3)
    pca = PCA(n_components=2, random_state=0).fit((features - center) / spread)
    before = pca.transform((features - center) / spread)
    after = pca.transform((result.features - center) / spread)
    path = pca.transform(((result.class_means - center) / spread).reshape(-1, features.shape[1]))
    path = path.reshape(result.class_means.shape[0], result.class_means.shape[1], 2)
    codes = np.searchsorted(result.classes, labels)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), sharex=True, sharey=True)
    cmap = plt.get_cmap("tab20")
    for ax, points, name in ((axes[0], before, "before PED"),
                             (axes[1], after, f"after PED ({result.steps} steps)")):
        ax.scatter(points[:, 0], points[:, 1], c=[cmap(c % 20) for c in codes], s=4, alpha=0.35)
        ax.set_title(name, fontsize=9)
    for c in range(path.shape[1]):
        axes[1].plot(path[:, c, 0], path[:, c, 1], color=cmap(c % 20), linewidth=1.5)
        axes[1].scatter(path[-1, c, 0], path[-1, c, 1], color=cmap(c % 20), edgecolor="black", s=25)
        axes[0].scatter(path[0, c, 0], path[0, c, 1], color=cmap(c % 20), edgecolor="black", s=25)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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


def _save(fig, path: Path, written: dict, name: str):
    records.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format=path.suffix[1:]))
    plt.close(fig)
    written[name] = path


def _save_table(frame: pd.DataFrame, stem: Path, written: dict, name: str, digits: int = 3):
    records.write_csv(frame.reset_index() if frame.index.name else frame, stem.with_suffix(".csv"))
    text = frame.round(digits).to_markdown()
    records.atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(text + "\n"))
    written[name] = stem.with_suffix(".md")


def study_figures(study) -> dict[str, Path]:
    """Write every figure and table of ``study`` (a :class:`pedlib.study.Study`)."""
    from . import ped as ped_module

    out = study.figures_dir
    out.mkdir(parents=True, exist_ok=True)
    scores = pd.read_csv(study.output / "scores.csv", keep_default_na=False, na_values=[""])
    evaluation = pd.read_csv(study.output / "evaluation.csv", keep_default_na=False, na_values=[""])
    accuracies = study.accuracies()
    comparison = study.output / "paper_comparison.csv"
    key = records.content_key("figures", records.content_key(scores.to_csv()),
                              records.content_key(evaluation.to_csv()),
                              {n: records.content_key(t.to_csv()) for n, t in accuracies.items()},
                              comparison.read_text() if comparison.exists() else None,
                              study.params.as_dict(), records.code_version("plots"))
    if records.is_fresh(out / "index.md", key):
        listed = records.read_record(out / "index.md")["inputs"]
        if all((out / name).exists() for name in listed.values()):
            return {label: out / name for label, name in listed.items()}
    written: dict[str, Path] = {}
    for truth in accuracies:
        for pool in study.params.pools:
            table = wtau_table(evaluation, truth, pool)
            if table.empty:
                continue
            _save_table(table, out / f"wtau_{truth}_{pool}", written, f"wtau_{truth}_{pool}")
            _save(wtau_bars(evaluation, truth, pool), out / f"wtau_{truth}_{pool}.png", written,
                  f"wtau_bars_{truth}_{pool}")
        variants = ["plain", "ped"] + [f"ped:ref={m}" for m in study.params.reference.ablation]
        ablation = wtau_table(evaluation, truth, "all", variants=variants)
        if not ablation.empty:
            _save_table(ablation, out / f"reference_ablation_{truth}", written,
                        f"reference_ablation_{truth}")
        accuracy = accuracies[truth].pivot_table(index="model", columns="dataset", values="accuracy",
                                                 sort=False)
        _save_table(accuracy, out / f"groundtruth_{truth}", written, f"groundtruth_{truth}")
    first_truth = next(iter(accuracies))
    for metric in dict.fromkeys(scores.metric):
        if metric in ("logme", "sfda"):
            _save(score_scatter(scores, accuracies[first_truth], metric, first_truth.replace("_", " ")),
                  out / f"scatter_{metric}.png", written, f"scatter_{metric}")
    if study.params.sensitivity is not None:
        for metric in study.params.sensitivity.metrics:
            _save(sensitivity_heatmap(evaluation, scores, metric, first_truth),
                  out / f"sensitivity_{metric}.png", written, f"sensitivity_{metric}")
    if study.params.evaluation.paper_table and (study.output / "paper_comparison.csv").exists():
        comparison = pd.read_csv(study.output / "paper_comparison.csv")
        for column in ("ours", "paper", "difference"):
            wide = comparison.pivot_table(index="method", columns="dataset", values=column, sort=False)
            _save_table(wide, out / f"paper_comparison_{column}", written, f"paper_comparison_{column}")
    _save(runtime_bars(scores), out / "runtime.png", written, "runtime")
    _save_table(runtime_table(scores), out / "runtime", written, "runtime_table", digits=4)
    # PED trajectory: the best and the worst model (by the first ground truth) on the first
    # target it covers (a fine-tuning sweep may cover only some targets).
    truth = accuracies[first_truth]
    target = next(d for d in study.datasets if (truth.dataset == d).any())
    ranked = truth[truth.dataset == target].sort_values("accuracy", kind="stable")
    for label, model in (("worst", ranked.model.iloc[0]), ("best", ranked.model.iloc[-1])):
        train = study.features(model, target, "train")
        x = train["features"].astype(np.float64)
        reference = study.scoring_reference(model, target, study.params.reference.mode)
        result = ped_module.decline(x, train["labels"], reference,
                                    **{**ped_module.DEFAULTS, **study.params.ped})
        _save(ped_trajectory(result, x, train["labels"], reference,
                             title=f"PED on {target}: {model} ({label} by {first_truth.replace('_', ' ')})"),
              out / f"trajectory_{target}_{label}.png", written, f"trajectory_{label}")
    index = "\n".join(f"- {name}: [{path.name}]({path.name})" for name, path in written.items())
    records.atomic_write(out / "index.md", lambda tmp: tmp.write_text(
        f"# Figures and tables of the {study.params.study} study\n\n{index}\n"))
    records.write_record(out / "index.md", key, params=study.params.as_dict(), seed=study.params.seed,
                         inputs={k: v.name for k, v in written.items()})
    return written
