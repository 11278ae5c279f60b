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
# Everything in `figures/<study>/`, in the study's order, each with its caption (also in `figures/<study>/index.md`): the headline weighted-tau figure and PED's effect, then every ground truth and pool, the reference ablation, LogME's definition, the ground truths, score-vs-accuracy scatters, sensitivity to nsigma and time_step, PED trajectories, the ports' check; then the runtime (from `results/<study>/timing/`). Figures are PDF and PNG (`plots.formats`), the headline tables also LaTeX.

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

from pedlib import summary
from pedlib.stages.figures import HEADLINE, figure_index
from pedlib.study import Study

# %% tags=["parameters"]
study = "pocket"  # a name in params/ or the path of a params YAML
progress = True

# %%
run = Study.load(study, progress=progress)
Markdown(f"**Study `{run.params.study}`**: {run.params.description}  \n{len(run.models)} models, targets {', '.join(run.datasets)}; results in `{run.output}`")

# %%
written = run.figures()
index = figure_index(run).set_index("name")
Markdown("\n".join(f"- **{row.file}** ({', '.join(row.files[1:])}): {row.caption}" for row in index.itertuples()))

# %% [markdown]
# The headline: does PED help? The change PED makes to every method's mean weighted tau, under each of its references, against every ground truth, with paired intervals.

# %%
headline = index.loc[HEADLINE]
shown = headline.file.endswith(".png")  # plots.formats without png: the files are listed above
display(Markdown(headline.caption), Image(filename=str(run.figures_dir / headline.file), metadata={"alt": headline.caption}) if shown else Markdown(f"`{headline.file}`"))

# %%
main_table = index.loc[[n for n in index.index if n.startswith("wtau_") and not n.startswith("wtau_figure")][0]]
display(Markdown(main_table.caption), Markdown((run.figures_dir / main_table.file).read_text()))

# %% [markdown]
# Every other figure, in the study's order, with its caption (PDF beside each PNG in the figures folder).

# %%
for row in index[index.file.str.endswith(".png") & (index.index != HEADLINE)].itertuples():
    display(Markdown(f"**{row.file}**: {row.caption}"), Image(filename=str(run.figures_dir / row.file), metadata={"alt": row.caption}))

# %% [markdown]
# The runtime of every metric, without and with PED. Timings vary from run to run, so they are kept in `results/<study>/timing/`, not in `figures/`.

# %%
runtime = written["runtime"]
display(Markdown(runtime.with_suffix(".md").read_text()), Image(filename=str(runtime)) if runtime.suffix == ".png" else Markdown(f"`{runtime}`"))

# %%
Markdown(summary.figures(index))
