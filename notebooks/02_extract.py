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
# # 02 · Features
#
# Are the ported models faithful to their original files? Then the pooled penultimate features of every model on every target split, plus the reference samples PED standardises with, each (dataset, split) decoded once for all models. Cached by content under `results/<study>/features/`.

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

from pedlib import summary
from pedlib.study import Study

pd.set_option("display.max_colwidth", None)  # the ports' notes in full, never cut

# %% tags=["parameters"]
study = "pocket"  # a name in params/ or the path of a params YAML
progress = True

# %%
run = Study.load(study, progress=progress)
Markdown(f"**Study `{run.params.study}`**: {run.params.description}  \n{len(run.models)} models, targets {', '.join(run.datasets)}; results in `{run.output}`")

# %% [markdown]
# The float PyTorch ports against their original TFLite runtime (`pedlib.models.port_check`).

# %%
ports = run.check_ports()
ports.drop(columns=['source', 'reference']).round(4) if ports is not None else None

# %%
Markdown(summary.ports(ports))

# %% [markdown]
# Features: how many sets, computed now or cached.

# %%
features = run.extract()
features.groupby(['dataset', 'part'], sort=False).agg(models=('model', 'nunique'), images=('n', 'first'), computed=('cached', lambda c: int((~c).sum())), seconds=('seconds', 'sum'))

# %% [markdown]
# Feature dimension and extraction time per model.

# %%
features.groupby('model', sort=False).agg(dim=('dim', 'first'), seconds=('seconds', 'sum')).round(2)

# %%
Markdown(summary.features(features))
