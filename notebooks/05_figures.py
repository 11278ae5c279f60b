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
# # 05 · Figures and tables
#
# Everything in `figures/<study>/`, each with its caption (also in `figures/<study>/index.md`): weighted tau with and without PED, LogME's definition, score-vs-accuracy scatters, PED trajectories, sensitivity to nsigma and time_step, the ports' check, runtime.

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

from pedlib import summary
from pedlib.stages.figures import figure_index
from pedlib.study import Study

# %% tags=["parameters"]
study = "pocket"  # a name in params/ or the path of a params YAML
progress = True

# %%
run = Study.load(study, progress=progress)
Markdown(f"**Study `{run.params.study}`**: {run.params.description}  \n{len(run.models)} models, targets {', '.join(run.datasets)}; results in `{run.output}`")

# %%
written = run.figures()
index = figure_index(run)
index[['file', 'caption']]

# %% [markdown]
# Main table: weighted tau of every method with and without PED, per target, against the first ground truth, all models.

# %%
main_table = index[index.name.str.startswith('wtau_') & ~index.name.str.startswith('wtau_bars')].iloc[0]
display(Markdown(f"**{main_table.file}**: {main_table.caption}"), Markdown((run.figures_dir / main_table.file).read_text()))

# %% [markdown]
# Every figure, with its caption.

# %%
for row in index[index.file.str.endswith('.png')].itertuples():
    display(Markdown(f'**{row.file}**: {row.caption}'), Image(filename=str(run.figures_dir / row.file)))

# %%
Markdown(summary.figures(index))
