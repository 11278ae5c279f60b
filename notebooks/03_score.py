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
# # 03 · Scores
#
# Every metric and baseline on every model's train features, without PED and with PED (main setting, reference ablation, and the sensitivity grid). `method` names: `logme`, `logme+ped`, `logme+ped[ref=others]`, `logme+ped[nsigma=..,time_step=..]`.

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
scores = run.score()
scores[scores.variant.isin(['plain', 'ped'])].pivot_table(index=['dataset', 'model'], columns='method', values='score', sort=False).round(3)

# %% [markdown]
# How many PED steps were taken (0: no two classes overlap).

# %%
scores[scores.variant == 'ped'].drop_duplicates(['model', 'dataset']).pivot_table(index='model', columns='dataset', values='ped_steps', sort=False)

# %% [markdown]
# Scores at their metric's maximum (saturated: they cannot tell models apart).

# %%
scores[scores.saturated & scores.variant.isin(['plain', 'ped'])].groupby(['metric', 'dataset'], sort=False).size().rename('saturated models').to_frame()

# %% [markdown]
# Median seconds per score.

# %%
scores[scores.variant.isin(['plain', 'ped'])].pivot_table(index='metric', columns='variant', values='seconds', aggfunc='median', sort=False).round(4)

# %%
Markdown(summary.scores(scores))
