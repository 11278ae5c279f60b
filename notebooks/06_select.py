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
# # 06 · Pick a backbone for your own data
#
# The notebook twin of `pedlib rank`: extract features of each candidate on your labelled images (cached), score them with and without PED, rank, and look at the best and the worst model's class clusters before and after PED.

# %%
from IPython.display import Image, display

from pedlib import assets
from pedlib.rank import rank_models, save_cluster_views

# %% tags=["parameters"]
data = None  # an ImageFolder or a CSV of path,label; None: the Flowers-12 train images (demo)
models = ["mobilenet_v2_1.0_224", "mobilenet_v1_0.25_128", "cifar_resnet56", "lenet5_clean"]
metric = "logme"
reference = None  # a folder of generic images for PED, or None
max_per_class = 30
out = "results/select"  # relative to the folder the notebook runs in
seed = 0
progress = True

# %%
if data is None:
    data = assets.resolve('data/flowers12') / 'train'
result = rank_models(data, models, metric=metric, reference=reference, max_per_class=max_per_class, out=out, seed=seed, progress=progress)
result.table

# %%
display(Image(filename=str(result.paths['png'])))

# %% [markdown]
# Class clusters of the best and the worst model, in the 2-D PCA plane of the standardised features, before and after PED.

# %%
for model, path in save_cluster_views(result, out).items():
    display(Image(filename=str(path)))
