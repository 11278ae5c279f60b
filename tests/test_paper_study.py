"""The paper-ssl study end to end on fakes: the eleven targets and ImageNet val in their real
on-disk layouts ($PEDLIB_DATA), twelve random ResNet-50s saved as their releases store them
($PEDLIB_MODELS), 16 px images, the published ground truth and a few-step fine-tuning sweep
run as jobs by `make -j2`, then the five notebooks through papermill."""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

import fakes
from conftest import ROOT, run_notebooks
from pedlib import metrics, records
from pedlib.stages.score import cell_key as score_cell_key, score_cell, scored_parts
from pedlib.study import Study

FINETUNED = {"models": ["byol", "moco-v2", "swav"], "datasets": ["voc2007"]}


def _paper_params(world) -> dict:
    """params/paper-ssl.yaml with the sizes turned down; SFDA left out (2048 x 2048 class
    covariances: ~1 s per cell here, tested on its own in test_sfda.py)."""
    raw = yaml.safe_load((ROOT / "params" / "paper-ssl.yaml").read_text())
    raw["datasets"]["caltech101"] = {"options": {"split_dir": str(world / "data" / "caltech101_split")}}
    raw["extract"] = {"batch_size": 16, "threads": 1, "device": "cpu", "image_size": 16, "workers": 0}
    raw["metrics"] = [m for m in raw["metrics"] if m != "sfda"]
    raw["groundtruth"]["finetune"].update(
        enabled=True, steps=2, batch_size=4, learning_rates=[0.01], weight_decays=[0.0, 0.0001],
        device="cpu", workers=0, threads=1, **FINETUNED)
    raw["metric_options"] = {"nleep": {"component_ratio": 1}}  # VOC's 20 classes on 40 images
    raw["reference"]["per_dataset"] = 20
    raw["evaluation"].update(groundtruth=["published", "finetune"], bootstrap=20)
    return raw


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    fakes.paper_datasets(root / "data")
    fakes.ssl_checkpoints(root / "models")
    project = root / "project"
    (project / "params").mkdir(parents=True)
    shutil.copytree(ROOT / "params" / "published", project / "params" / "published")
    (project / "params" / "paper-ssl.yaml").write_text(yaml.safe_dump(_paper_params(root)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEDLIB_DATA", str(root / "data"))
        patch.setenv("PEDLIB_MODELS", str(root / "models"))
        yield project


@pytest.fixture(scope="module")
def finetuned(world):
    """The fine-tuning sweep as `make -j2 finetune` runs it: a job Makefile, make, collect."""
    params = world / "params" / "paper-ssl.yaml"
    pedlib = [sys.executable, "-m", "pedlib", "finetune", str(params), "--quiet"]
    jobs = world / "finetune-jobs.mk"
    subprocess.run(pedlib + ["--makefile", str(jobs)], check=True, cwd=world)
    made = subprocess.run(["make", "-j2", "-f", str(jobs), "all"], cwd=world, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-3000:]
    subprocess.run(pedlib + ["--collect"], check=True, cwd=world)
    return Study.load(params, progress=False)


@pytest.fixture(scope="module")
def ran(world, finetuned):
    run_notebooks(world, "paper-ssl")
    return Study.load(world / "params" / "paper-ssl.yaml", progress=False)


def test_sweep_ran_every_job_once_with_the_protocol(finetuned):
    study = finetuned
    config = study.finetuning.sweep_config()
    jobs = study.finetuning.jobs()
    assert len(jobs) == 3 * (len(config.grid()) + 1) and not study.finetuning.pending()
    table = pd.read_csv(study.finetuning.table_path())
    assert len(table) == 3 and set(table.model) == set(FINETUNED["models"])
    assert set(table.metric) == {"map11"}
    assert table.test_accuracy.between(0, 1).all()
    grid = pd.read_csv(study.finetuning.table_path().with_name("finetune_grid.csv"))
    assert len(grid) == 3 * 2 and set(grid.weight_decay.round(8)) == {0.0, round(0.0001 / 0.01, 8)}
    for row in table.itertuples():  # the final retrain used the grid point with the best val score
        cell = grid[(grid.model == row.model) & (grid.dataset == row.dataset)]
        best = cell.iloc[int(np.argmax(cell.val_score.to_numpy()))]
        assert (row.learning_rate, row.weight_decay) == (best.learning_rate, best.weight_decay)
    final = json.loads((study.finetuning.folder / "swav" / "voc2007" / "final-seed0.json").read_text())
    source = study.source("voc2007")
    assert final["n_train"] == len(study.split("voc2007").train)  # retrained on train + val
    assert final["n_evaluated"] == int((source.predefined == "test").sum())
    grid_job = json.loads((study.finetuning.folder / "swav" / "voc2007" / "grid-00.json").read_text())
    assert grid_job["n_evaluated"] == int((source.predefined == "val").sum())  # VOC's own val
    record = records.read_record(study.finetuning.table_path())
    assert record["params"]["groundtruth"]["finetune"]["steps"] == 2 and record["git"]


def test_finished_jobs_are_skipped_and_changed_settings_rerun_them(finetuned, world):
    study = finetuned
    job = study.finetuning.job("byol/voc2007/grid-01")
    before = job.path.stat().st_mtime_ns
    study.finetuning.run_job(job)
    assert job.path.stat().st_mtime_ns == before
    raw = yaml.safe_load((world / "params" / "paper-ssl.yaml").read_text())
    raw["groundtruth"]["finetune"]["steps"] = 3
    changed = world / "params" / "changed.yaml"
    changed.write_text(yaml.safe_dump({**raw, "output": "results/paper-ssl"}))
    assert len(Study.load(changed).finetuning.pending()) == len(study.finetuning.jobs())
    with pytest.raises(KeyError, match="did you mean 'byol/voc2007/grid-01'"):
        study.finetuning.job("byol/voc2007/grid-1")


def test_study_runs_a_sweep_in_process_with_a_held_out_fifth_of_train(world):
    """cifar10 has no val split: validation is a stratified 20% of train."""
    raw = yaml.safe_load((world / "params" / "paper-ssl.yaml").read_text())
    raw["groundtruth"]["finetune"].update(datasets=["cifar10"], steps=3, weight_decays=[0.0],
                                          learning_rates=[0.01, 1.0e12])  # the second diverges
    raw["output"] = "results/in-process"
    path = world / "params" / "in-process.yaml"
    path.write_text(yaml.safe_dump(raw))
    study = Study.load(path, progress=False)
    with pytest.warns(UserWarning, match="diverged"):
        table = study.finetuning.table()
    assert len(table) == 3 and (table.metric == "accuracy").all()
    assert (table.learning_rate == 0.01).all()  # a diverged grid point is never selected
    grid = pd.read_csv(study.finetuning.table_path().with_name("finetune_grid.csv"))
    assert grid[grid.learning_rate > 1].diverged.all() and grid[grid.learning_rate > 1].val_score.isna().all()
    fit, val = study.finetuning.sweep_split("cifar10")
    train = study.split("cifar10").train
    assert len(val) == round(0.2 * len(train)) and set(fit) | set(val) == set(train)
    grid = json.loads((study.finetuning.folder / "swav" / "cifar10" / "grid-00.json").read_text())
    assert grid["n_evaluated"] == len(val) and grid["n_train"] == len(fit)
    assert not study.finetuning.pending()
    assert not list(study.finetuning.folder.rglob("*.ckpt.pt"))  # finished jobs leave no checkpoint


def test_paper_ssl_notebooks_produce_the_comparison_with_the_paper(ran):
    study = ran
    out = study.output
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores.model) == set(fakes.SSL_LAYOUTS) and scores.dataset.nunique() == 11
    assert {"logme", "logme+ped", "gbc+ped", "nleep+ped", "parc+ped"} <= set(scores.method)
    evaluation = pd.read_csv(out / "evaluation.csv", keep_default_na=False, na_values=[""])
    assert set(evaluation.groundtruth) == {"published", "finetune"}
    assert set(evaluation[evaluation.groundtruth == "finetune"].dataset) == {*FINETUNED["datasets"], "mean"}
    comparison = pd.read_csv(out / "paper_comparison.csv")
    logme = comparison[(comparison.method == "logme") & (comparison.dataset != "mean")]
    assert len(logme) == 11 and logme.ours.notna().all()
    assert set(logme[logme.paper.isna()].dataset) == {"sun397"}  # the paper's table has 10 targets
    np.testing.assert_allclose(logme.difference, logme.ours - logme.paper)
    nleep_ped = comparison[comparison.method == "nleep+ped"]  # ours only: the paper has none
    assert nleep_ped.ours.notna().any() and nleep_ped.paper.isna().all()
    mean = comparison[(comparison.method == "logme") & (comparison.dataset == "mean")].iloc[0]
    both = logme.dropna(subset=["paper"])
    assert mean.ours == pytest.approx(both.ours.mean()) and mean.paper == pytest.approx(both.paper.mean())
    table = (study.figures_dir / "paper_comparison_difference.md").read_text()
    assert "logme+ped" in table and "voc2007" in table


def test_paper_ssl_features_use_imagenet_as_peds_reference(ran):
    study = ran
    features = study.output / "features"
    for model in fakes.SSL_LAYOUTS:
        assert (features / model / "imagenet-reference.npz").is_file()
        assert not list((features / model).glob("aircraft-reference*"))  # targets not needed
        train = study.features(model, "voc2007", "train")
        assert train["features"].shape == (40, 2048)
    record = records.read_record(features / "byol" / "aircraft-train.npz")
    assert record["inputs"]["dataset"] == "aircraft" and record["params"]["extract"]["image_size"] == 16
    # the checkpoint's content identifies the weights: another file would be another key
    from pedlib.models import get_spec, weights_id
    assert weights_id(get_spec("byol")).startswith("sha256:")


def test_scored_split_is_a_param(ran):
    study = ran
    all_parts = Study(dataclasses.replace(study.params, score_split="all"), progress=False)
    assert scored_parts(study) == ("train",) and scored_parts(all_parts) == ("train", "test")
    assert score_cell_key(all_parts, "byol", "dtd") != score_cell_key(study, "byol", "dtd")
    cell = score_cell(all_parts, "byol", "dtd")
    both = [study.features("byol", "dtd", part) for part in ("train", "test")]
    expected = metrics.get("logme")(np.concatenate([b["features"] for b in both]).astype(np.float64),
                                    np.concatenate([b["labels"] for b in both]))
    assert cell[cell.method == "logme"].score.iloc[0] == expected


def test_paper_sweeps_plan_one_job_per_grid_point_and_a_final_per_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("PEDLIB_DATA", str(tmp_path / "no-data"))
    for name, n_models in (("paper-ssl", 12), ("paper-supervised", 11)):
        study = Study.load(ROOT / "params" / f"{name}.yaml", progress=False)
        jobs = study.finetuning.jobs()
        assert len(jobs) == n_models * 11 * (20 + 1)  # 4 learning rates x 5 weight decays + final
        final = study.finetuning.job(f"{study.models[0]}/voc2007/final-seed0")
        assert len(final.needs) == 20 and all(n.startswith(f"{study.models[0]}/voc2007/grid-") for n in final.needs)
    first = Study.load(ROOT / "params" / "paper-ssl.yaml", progress=False).models[0]
    # without the data the job plan still lists (nothing is checked against the data), says
    # what is missing, and suggests no download pedlib would not do
    done = subprocess.run([sys.executable, "-m", "pedlib", "finetune", str(ROOT / "params" / "paper-ssl.yaml"),
                           "--list"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2772 + 2 and lines[0].split() == ["pending", f"{first}/aircraft/grid-00"]
    assert lines[-2] == "2772 jobs: 2772 pending"
    assert "data is not here" in lines[-1] and "PEDLIB_DATA" in lines[-1] and "download=True" not in lines[-1]
    # running a job does need the data: the error names it
    done = subprocess.run([sys.executable, "-m", "pedlib", "finetune", str(ROOT / "params" / "paper-ssl.yaml"),
                           "--job", f"{first}/aircraft/grid-00"], capture_output=True, text=True)
    assert done.returncode == 2 and "not found under" in done.stderr and "does not download" in done.stderr
