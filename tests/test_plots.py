"""Figures and tables for papers: PED's effect with paired intervals, LaTeX tables, one style,
byte-stable files, the formats switch."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from pedlib import correlations, plots, plotstyle
from pedlib.params import ParamsError, parse_params


def _weighted_tau(scores, accuracies):
    return scipy.stats.weightedtau(scores, accuracies).statistic


def test_ped_effect_is_the_difference_of_the_two_weighted_taus_per_target_and_on_average():
    accuracy = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5}
    without = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 5.0, "e": 4.0}
    with_ped = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 1.0, "e": 2.0}
    other = {"a": 2.0, "b": 1.0, "c": 3.0, "d": 4.0, "e": 5.0}
    result = correlations.ped_effect({"one": (without, with_ped, accuracy), "two": (other, other, accuracy)},
                                 n_boot=200, seed=3)
    names = sorted(accuracy)
    expected = (_weighted_tau([with_ped[m] for m in names], [accuracy[m] for m in names])
                - _weighted_tau([without[m] for m in names], [accuracy[m] for m in names]))
    delta, low, high, n = result["per_target"]["one"]
    assert delta == pytest.approx(expected, abs=1e-12) and n == 5 and low <= high
    assert result["per_target"]["two"][:3] == (0.0, 0.0, 0.0)  # the same scores: no change, no spread
    mean, low, high, n_targets = result["mean"]
    assert mean == pytest.approx(expected / 2, abs=1e-12) and n_targets == 2 and low <= high


def test_ped_effect_interval_is_the_percentile_of_paired_resampled_differences():
    """An independent oracle: the same draws of models, scipy's weighted tau for both rankings
    on each, the percentile interval of their differences."""
    rng = np.random.default_rng(0)
    names = [f"m{i}" for i in range(8)]
    accuracy = dict(zip(names, rng.random(8)))
    without = dict(zip(names, rng.random(8)))
    with_ped = {m: v + 0.3 * rng.standard_normal() for m, v in without.items()}
    n_boot = 60
    _, low, high, _ = correlations.ped_effect({"t": (without, with_ped, accuracy)}, n_boot=n_boot, seed=5)["per_target"]["t"]
    draws = np.random.default_rng(5).integers(0, len(names), size=(n_boot, len(names)))
    differences = []
    for draw in draws:
        picked = [names[i] for i in draw]
        acc = [accuracy[m] for m in picked]
        with np.errstate(all="ignore"):
            difference = (_weighted_tau([with_ped[m] for m in picked], acc)
                          - _weighted_tau([without[m] for m in picked], acc))
        if np.isfinite(difference):
            differences.append(difference)
    assert (low, high) == pytest.approx(tuple(np.percentile(differences, [2.5, 97.5])), abs=1e-9)


def test_ped_effect_leaves_a_target_whose_scores_all_tie_out_of_the_mean():
    accuracy = {"a": 0.9, "b": 0.8, "c": 0.7}
    tied = {"a": 1.0, "b": 1.0, "c": 1.0}
    ranked = {"a": 3.0, "b": 2.0, "c": 1.0}
    result = correlations.ped_effect({"tied": (tied, tied, accuracy), "ok": ({"a": 1.0, "b": 2.0, "c": 3.0}, ranked,
                                                                          accuracy)}, n_boot=50)
    assert np.isnan(result["per_target"]["tied"][0])
    assert result["mean"][0] == pytest.approx(result["per_target"]["ok"][0]) and result["mean"][3] == 1


def _effect_rows():
    return pd.DataFrame([dict(groundtruth="finetune", pool="all", metric=m, kind=k, dataset=d, delta=v,
                              delta_low=v - 0.1, delta_high=v + 0.1, n_models=5, n_targets=1 if d != "mean" else n)
                         for m, k, n in (("logme", "metric", 2), ("sfda", "metric", 1), ("knn", "baseline", 2))
                         for d, v in (("flowers12", -0.2), ("lfw", np.nan if m == "sfda" else 0.05), ("mean", -0.1))])


def test_ped_effect_figure_marks_untied_rankings_and_means_over_fewer_targets():
    fig = plots.ped_effect_forest(_effect_rows(), "finetune", "all")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "all scores tied" in texts  # sfda on lfw
    assert "† 1" in texts  # sfda's mean covers one of two targets
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Flowers-12 (5 models)", "LFW (5 models)", "mean over 2 targets (†: fewer) (own axis)"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["LogME", "SFDA", "kNN"]  # readable names, baselines last
    # the targets share an axis spanning zero and every interval; the mean has its own, zoomed
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()
    low, high = fig.axes[0].get_xlim()
    assert low < -0.3 and 0.15 < high < 0.2  # intervals -0.3..0.15, 5% margin
    mean_low, mean_high = fig.axes[2].get_xlim()
    assert -0.22 < mean_low < -0.2 and 0 < mean_high < 0.02  # intervals -0.2..0.0
    # thick where the interval excludes zero: flowers12's logme (-0.3..-0.1), not lfw's (-0.05..0.15)
    widths = {round(line.get_linewidths()[0], 1) for line in fig.axes[0].collections if hasattr(line, "get_linewidths")}
    assert widths == {2.2}
    assert {round(c.get_linewidths()[0], 1) for c in fig.axes[1].collections} == {0.8}


def test_ped_effect_limits_are_shared_by_every_figure_of_a_study():
    rows = _effect_rows()
    other = rows.assign(pool="mobilenet", delta=rows.delta / 2, delta_low=rows.delta_low / 2,
                        delta_high=rows.delta_high / 2)
    both = pd.concat([rows, other])
    limits = plots.ped_effect_limits(both)
    figures = [plots.ped_effect_forest(both, "finetune", pool, limits) for pool in ("all", "mobilenet")]
    assert figures[0].axes[0].get_xlim() == figures[1].axes[0].get_xlim() == limits[0]
    assert figures[0].axes[-1].get_xlim() == figures[1].axes[-1].get_xlim() == limits[1]


def test_latex_table_is_a_float_with_caption_label_unique_bold_and_no_negative_zero():
    values = pd.DataFrame({"cifar10": [0.5, -0.25, np.nan], "mean": [0.1, 0.3, 0.3], "lfw": [-0.0004, 0.2, 0.1]},
                          index=pd.Index(["logme", "logme+ped", "knn"], name="method"))
    low, high = values - 0.1, values + 0.1
    tex = plots.latex_table(values, low, high, digits=3, caption="A caption: 95% CI", label="wtau_x")
    lines = tex.splitlines()
    assert lines[:6] == ["% requires \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering", "\\footnotesize",
                         "\\caption{A caption: 95\\% CI}", "\\label{tab:wtau_x}"]
    assert lines[-1] == "\\end{table}" and "\\begin{tabular}{lrrr}" in lines
    assert "Method & CIFAR-10 & Mean & LFW \\\\" in lines  # readable headers
    assert "LogME & \\textbf{0.500} & 0.100 & 0.000 \\\\" in lines  # a rounded -0.0004 prints 0.000
    assert " & {\\scriptsize [0.40, 0.60]} & {\\scriptsize [0.00, 0.20]} & {\\scriptsize [$-$0.10, 0.10]} \\\\" in lines
    assert "LogME + PED & $-$0.250 & 0.300 & \\textbf{0.200} \\\\" in lines  # the mean's 0.3 is a tie: no bold
    assert "kNN & -- & 0.300 & 0.100 \\\\" in lines
    assert "$-$0.00" not in tex.replace("$-$0.00]", "")  # no negative zero (a bound may be -0.10)
    wide = pd.DataFrame(np.full((3, 7), -0.5), columns=[f"d{i}" for i in range(7)],
                        index=pd.Index(["logme_reference+ped", "hscore_shrinkage+ped", "knn"], name="method"))
    tex = plots.latex_table(wide, wide - 0.4, wide + 0.1, caption="wide", label="w")
    assert "\\begin{table*}[t]" in tex and tex.rstrip().endswith("\\end{table*}")


def test_every_method_has_its_own_colour_and_a_readable_label():
    from pedlib import metrics

    names = metrics.available()
    colours = [plotstyle.method_color(n) for n in names]
    assert len(set(colours)) == len(names)
    assert plotstyle.method_label("hscore_shrinkage+ped") == "H-score (shrinkage) + PED"
    assert plotstyle.method_label("my_metric") == "my_metric"


SAVE = """
import sys
import matplotlib.pyplot as plt
from pedlib import plotstyle
with plotstyle.style():
    fig, ax = plt.subplots(figsize=(plotstyle.COLUMN, 2))
    ax.plot([0, 1], [1, 0], label="LogME + PED")
    ax.set_title("weighted τ")
    ax.legend()
plotstyle.save(fig, sys.argv[1], formats=("pdf", "png", "svg"))
"""


def test_a_figure_is_written_in_each_format_with_the_same_bytes_in_another_process(tmp_path):
    runs = []
    for i, seed in enumerate(("1", "2")):
        stem = tmp_path / f"figure{i}"
        done = subprocess.run([sys.executable, "-c", SAVE, str(stem)], capture_output=True, text=True, timeout=120,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append({fmt: stem.with_suffix(f".{fmt}").read_bytes() for fmt in ("pdf", "png", "svg")})
    assert runs[0] == runs[1]
    pdf = runs[0]["pdf"]
    assert pdf.startswith(b"%PDF-") and b"CreationDate" not in pdf
    assert b"/FontFile2" in pdf  # TrueType fonts embedded: the text stays text
    with pytest.raises(ValueError, match="'jpg' is not one of pdf, png, svg"):
        plotstyle.save(plotstyle.plt.figure(), tmp_path / "x", formats=("jpg",))


def test_the_figure_formats_are_a_checked_params_switch():
    base = {"study": "s", "datasets": {"digits": {}}, "models": ["lenet5_clean", "lenet5_adv"]}
    assert parse_params(base).plots.formats == ("pdf", "png")
    assert parse_params({**base, "plots": {"formats": ["svg"], "dpi": 150}}).plots.formats == ("svg",)
    with pytest.raises(ParamsError, match="plots.formats"):
        parse_params({**base, "plots": {"formats": ["tiff"]}})
    with pytest.raises(ParamsError, match="plots.formats must name each"):
        parse_params({**base, "plots": {"formats": ["pdf", "pdf"]}})
    with pytest.raises(ParamsError, match="plots.dpi"):
        parse_params({**base, "plots": {"dpi": 10}})
