"""Write the pipeline notebooks (run once after editing; the .ipynb files are committed).

Each notebook: an imports cell, one papermill ``parameters`` cell, then one visible step per
cell. The logic lives in pedlib; a notebook only calls it and shows what it returns.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"
IMPORTS = "import pandas as pd\nfrom IPython.display import Image, Markdown, display\n\nfrom pedlib import plots, summary\nfrom pedlib.study import Study"
PARAMS = 'study = "pocket"  # a name in params/ or the path of a params YAML\nprogress = True'


def notebook(name: str, title: str, intro: str, cells: list, extra_params: str = ""):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(new_markdown_cell(f"# {title}\n\n{intro}"))
    nb.cells.append(new_code_cell(IMPORTS))
    nb.cells.append(new_code_cell(PARAMS + extra_params, metadata={"tags": ["parameters"]}))
    nb.cells.append(new_code_cell("run = Study.load(study, progress=progress)\n"
                                  "Markdown(f\"**Study `{run.params.study}`**: {run.params.description}  \\n"
                                  "{len(run.models)} models, targets {', '.join(run.datasets)}; "
                                  "results in `{run.output}`\")"))
    for cell in cells:
        nb.cells.append(new_markdown_cell(cell[1:]) if cell.startswith("#") else new_code_cell(cell))
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating changes only edited cells
        cell.id = f"{name}-{i:02d}"
    nbformat.write(nb, HERE / f"{name}.ipynb")


notebook("01_groundtruth", "01 · Ground truth",
         "How well does each model really transfer? Fine-tuning (every layer, a new head, a grid "
         "of learning rates on a validation split, then three seeds; the pocket study reads its "
         "committed table unless `recompute_finetune`; the paper studies' sweep runs its unfinished "
         "jobs, or use `make -j4 finetune`), a linear probe on frozen features, and the papers' "
         "published accuracies. Protocols: `pedlib.groundtruth`.",
         ["#Every ground truth the study evaluates against (params: evaluation.groundtruth).",
          "truths = run.groundtruth(recompute_finetune=recompute_finetune)\n{name: len(table) for name, table in truths.items()}",
          "#Accuracy per model and target, one table per ground truth (fine-tuning: mean over seeds).",
          "accuracies = run.accuracies()\n"
          "for name, table in accuracies.items():\n"
          "    display(Markdown(f'**{name}**'), table.pivot_table(index='model', columns='dataset', values='accuracy', sort=False).round(3))",
          "#Fine-tuning spread over seeds (standard deviation), where the study fine-tunes.",
          "accuracies['finetune'].pivot_table(index='model', columns='dataset', values='accuracy_std', sort=False).round(4) if 'finetune' in accuracies else None",
          "Markdown(summary.groundtruth(accuracies))"],
         extra_params="\nrecompute_finetune = False")

notebook("02_extract", "02 · Features",
         "Are the ported models faithful to their original files? Then the pooled penultimate "
         "features of every model on every target split, plus the reference samples PED "
         "standardises with, each (dataset, split) decoded once for all models. Cached by content "
         "under `results/<study>/features/`.",
         ["#The float PyTorch ports against their original TFLite runtime (`pedlib.models.port_check`).",
          "ports = run.check_ports()\nports.drop(columns=['source', 'reference']).round(4) if ports is not None else None",
          "Markdown(summary.ports(ports))",
          "#Features: how many sets, computed now or cached.",
          "features = run.extract()\nfeatures.groupby(['dataset', 'part'], sort=False).agg(models=('model', 'nunique'), images=('n', 'first'), computed=('cached', lambda c: int((~c).sum())), seconds=('seconds', 'sum'))",
          "#Feature dimension and extraction time per model.",
          "features.groupby('model', sort=False).agg(dim=('dim', 'first'), seconds=('seconds', 'sum')).round(2)",
          "Markdown(summary.features(features))"])

notebook("03_score", "03 · Scores",
         "Every metric and baseline on every model's train features, without PED and with PED "
         "(main setting, reference ablation, and the sensitivity grid). `method` names: `logme`, "
         "`logme+ped`, `logme+ped[ref=others]`, `logme+ped[nsigma=..,time_step=..]`.",
         ["scores = run.score()\nscores[scores.variant.isin(['plain', 'ped'])].pivot_table(index=['dataset', 'model'], columns='method', values='score', sort=False).round(3)",
          "#How many PED steps were taken (0: no two classes overlap).",
          "scores[scores.variant == 'ped'].drop_duplicates(['model', 'dataset']).pivot_table(index='model', columns='dataset', values='ped_steps', sort=False)",
          "#Scores at their metric's maximum (saturated: they cannot tell models apart).",
          "scores[scores.saturated & scores.variant.isin(['plain', 'ped'])].groupby(['metric', 'dataset'], sort=False).size().rename('saturated models').to_frame()",
          "#Median seconds per score.",
          "scores[scores.variant.isin(['plain', 'ped'])].pivot_table(index='metric', columns='variant', values='seconds', aggfunc='median', sort=False).round(4)",
          "Markdown(summary.scores(scores))"])

notebook("04_evaluate", "04 · Evaluation",
         "Weighted Kendall's tau (and Kendall, Pearson, Spearman, top-1 relative accuracy) of each "
         "method's ranking against each ground truth, per target and pool, with a bootstrap "
         "interval over models; `mean` averages the targets (its interval resamples models jointly "
         "across targets). Scores equal to within 1e-9 (relative) are ties.",
         ["evaluation = run.evaluate()\nmain = evaluation[evaluation.variant.isin(['plain', 'ped'])]\nmain.pivot_table(index=['groundtruth', 'pool', 'method'], columns='dataset', values='weighted_tau', sort=False).round(3)",
          "#Does PED help? Mean weighted tau with PED minus without, per metric (and baseline).",
          "mean = main[main.dataset == 'mean'].pivot_table(index=['groundtruth', 'pool', 'metric'], columns='variant', values='weighted_tau', sort=False)\nmean.assign(gain=mean['ped'] - mean['plain']).round(3)",
          "#PED's reference sample: source data, other targets, or none.",
          "evaluation[(evaluation.dataset == 'mean') & ~evaluation.variant.str.startswith('ped:nsigma')].pivot_table(index=['groundtruth', 'pool', 'metric'], columns='variant', values='weighted_tau', sort=False).round(3)",
          "Markdown(summary.evaluation(evaluation))"])

notebook("05_figures", "05 · Figures and tables",
         "Everything in `figures/<study>/`, each with its caption (also in `figures/<study>/index.md`): "
         "weighted tau with and without PED, LogME's definition, score-vs-accuracy scatters, PED "
         "trajectories, sensitivity to nsigma and time_step, the ports' check, runtime.",
         ["written = run.figures()\nindex = plots.figure_index(run)\nindex[['file', 'caption']]",
          "#Main table: weighted tau of every method with and without PED, per target, against the first ground truth, all models.",
          "main_table = index[index.name.str.startswith('wtau_') & ~index.name.str.startswith('wtau_bars')].iloc[0]\n"
          "display(Markdown(f\"**{main_table.file}**: {main_table.caption}\"), Markdown((run.figures_dir / main_table.file).read_text()))",
          "#Every figure, with its caption.",
          "for row in index[index.file.str.endswith('.png')].itertuples():\n"
          "    display(Markdown(f'**{row.file}**: {row.caption}'), Image(filename=str(run.figures_dir / row.file)))",
          "Markdown(summary.figures(index))"])
print("notebooks written to", HERE)


def select_notebook():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(new_markdown_cell(
        "# 06 · Pick a backbone for your own data\n\nThe notebook twin of `pedlib rank`: extract "
        "features of each candidate on your labelled images (cached), score them with and without "
        "PED, rank, and look at the best and the worst model's class clusters before and after PED."))
    nb.cells.append(new_code_cell("from IPython.display import Image, display\n\n"
                                  "from pedlib import assets\nfrom pedlib.select import rank_models, save_cluster_views"))
    nb.cells.append(new_code_cell(
        'data = None  # an ImageFolder or a CSV of path,label; None: the Flowers-12 train images (demo)\n'
        'models = ["mobilenet_v2_1.0_224", "mobilenet_v1_0.25_128", "cifar_resnet56", "lenet5_clean"]\n'
        'metric = "logme"\nreference = None  # a folder of generic images for PED, or None\n'
        'max_per_class = 30\nout = "results/select"  # relative to the folder the notebook runs in\nseed = 0\nprogress = True',
        metadata={"tags": ["parameters"]}))
    nb.cells.append(new_code_cell("if data is None:\n    data = assets.resolve('data/flowers12') / 'train'\n"
                                  "result = rank_models(data, models, metric=metric, reference=reference, "
                                  "max_per_class=max_per_class, out=out, seed=seed, progress=progress)\n"
                                  "result.table"))
    nb.cells.append(new_code_cell("display(Image(filename=str(result.paths['png'])))"))
    nb.cells.append(new_markdown_cell("Class clusters of the best and the worst model, in the 2-D PCA "
                                      "plane of the standardised features, before and after PED."))
    nb.cells.append(new_code_cell(
        "for model, path in save_cluster_views(result, out).items():\n"
        "    display(Image(filename=str(path)))"))
    nbformat.write(nb, HERE / "06_select.ipynb")


select_notebook()
