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
# # 01 · Ground truth
#
# How well does each model really transfer? Fine-tuning (every layer, a new head, a grid of learning rates on a validation split, then three seeds; the pocket study reads its committed table unless `recompute_finetune`; the paper studies' sweep runs its unfinished jobs, or use `make -j4 finetune`), a linear probe on frozen features, and the papers' published accuracies. Protocols: `pedlib.groundtruth`.

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

from pedlib import summary
from pedlib.study import Study

# %% tags=["parameters"]
study = "pocket"  # a name in params/ or the path of a params YAML
progress = True
recompute_finetune = False

# %%
run = Study.load(study, progress=progress)
Markdown(f"**Study `{run.params.study}`**: {run.params.description}  \n{len(run.models)} models, targets {', '.join(run.datasets)}; results in `{run.output}`")

# %% [markdown]
# Every ground truth the study evaluates against (params: evaluation.groundtruth).

# %%
truths = run.groundtruth(recompute_finetune=recompute_finetune)
{name: len(table) for name, table in truths.items()}

# %% [markdown]
# Accuracy per model and target, one table per ground truth (fine-tuning: mean over seeds).

# %%
accuracies = run.accuracies()
for name, table in accuracies.items():
    display(Markdown(f'**{name}**'), table.pivot_table(index='model', columns='dataset', values='accuracy', sort=False).round(3))

# %% [markdown]
# Fine-tuning spread over seeds (standard deviation), where the study fine-tunes.

# %%
accuracies['finetune'].pivot_table(index='model', columns='dataset', values='accuracy_std', sort=False).round(4) if 'finetune' in accuracies else None

# %%
Markdown(summary.groundtruth(accuracies, truths.get('finetune'), {d: len(run.source(d).classes) for d in run.datasets}))
