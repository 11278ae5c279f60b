# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Evaluation
#
# Weighted Kendall's tau (and Kendall, Pearson, Spearman, top-1 relative accuracy) of each method's ranking against each ground truth, per target and pool, with a bootstrap interval over models; `mean` averages the targets (its interval resamples models jointly across targets). Scores equal to within 1e-9 (relative) are ties.

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

from pedlib import summary
from pedlib.study import Study

# %% tags=["parameters"]
study = "pocket"  # a name in params/ or the path of a params YAML
progress = True

# %%
run = Study.load(study, progress=progress)
Markdown(f"**Study `{run.params.study}`**: {run.params.description}  \n{len(run.models)} models, targets {', '.join(run.datasets)}; results in `{run.output}`")

# %%
evaluation = run.evaluate()
main = evaluation[evaluation.variant.isin(['plain', 'ped'])]
main.pivot_table(index=['groundtruth', 'pool', 'method'], columns='dataset', values='weighted_tau', sort=False).round(3)

# %% [markdown]
# Does PED help? Mean weighted tau with PED minus without, per metric (and baseline).

# %%
mean = main[main.dataset == 'mean'].pivot_table(index=['groundtruth', 'pool', 'metric'], columns='variant', values='weighted_tau', sort=False)
mean.assign(gain=mean['ped'] - mean['plain']).round(3)

# %% [markdown]
# PED's reference sample: source data, other targets, or none.

# %%
evaluation[(evaluation.dataset == 'mean') & ~evaluation.variant.str.startswith('ped:nsigma')].pivot_table(index=['groundtruth', 'pool', 'metric'], columns='variant', values='weighted_tau', sort=False).round(3)

# %%
Markdown(summary.evaluation(evaluation, paired=run.evaluation_tables()['paired_differences']))
