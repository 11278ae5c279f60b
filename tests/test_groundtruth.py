"""Ground truth: the linear probe and the fine-tuning protocol, and the committed pocket table."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pedlib import records
from pedlib.groundtruth import FinetuneConfig, finetune_cell, finetune_run, linear_probe
from pedlib.models.nets import LeNet5

from conftest import ROOT, make_blobs, needs_assets


def test_linear_probe_with_one_C_is_a_standardised_logistic_regression():
    x, y = make_blobs(n_per_class=30, n_classes=3, n_features=6, separation=1.0, seed=0)
    tx, ty = make_blobs(n_per_class=20, n_classes=3, n_features=6, separation=1.0, seed=0)
    tx = tx + np.random.default_rng(5).normal(scale=0.5, size=tx.shape)
    result = linear_probe(x, y, tx, ty, Cs=[0.1], seed=0)
    scaler = StandardScaler().fit(x)
    expected = LogisticRegression(C=0.1, max_iter=500).fit(scaler.transform(x), y).score(scaler.transform(tx), ty)
    assert result["accuracy"] == pytest.approx(expected) and result["C"] == 0.1


def test_linear_probe_separable_string_labels_and_errors():
    x, y = make_blobs(n_per_class=20, n_classes=2, n_features=4, separation=20, seed=1)
    names = np.where(y == 0, "cat", "dog")
    result = linear_probe(x, names, x, names)
    assert result["accuracy"] == 1.0 and result["mean_class_accuracy"] == 1.0
    with pytest.raises(ValueError, match="never occur in train"):
        linear_probe(x, names, x[:2], ["cat", "bird"])
    with pytest.raises(ValueError, match="train has 4 features, test 3"):
        linear_probe(x, names, x[:, :3], names)
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(np.where(x > 5, np.nan, x), names, x, names)


def _toy_task(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(40) % 2
    x = torch.rand(40, 1, 28, 28, generator=g) * 0.2
    x[y == 1, :, :14] += 0.8  # class 1: bright top half
    return x, y


def test_finetune_run_is_seeded_and_leaves_the_backbone_untouched():
    torch.manual_seed(0)
    backbone = LeNet5()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    x, y = _toy_task()
    args = dict(learning_rate=0.05, weight_decay=0.0, steps=15, batch_size=8, threads=1)
    first = finetune_run(backbone, 2, x, y, x, y, seed=3, **args)
    assert first == finetune_run(backbone, 2, x, y, x, y, seed=3, **args)
    assert first >= 0.9  # an easy task is learnt
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_finetune_cell_selects_on_validation_and_reports_each_seed():
    torch.manual_seed(0)
    x, y = _toy_task()
    config = FinetuneConfig(learning_rates=(1e-6, 0.05), weight_decays=(0.0,), steps=15, batch_size=8,
                            seeds=(0, 1), threads=1)
    rows = finetune_cell(LeNet5(), x, y.numpy(), x, y.numpy(), config, seed=1)
    assert [r["seed"] for r in rows] == [0, 1]
    assert all(r["learning_rate"] == 0.05 for r in rows)  # a 1e-6 rate cannot learn in 15 steps
    with pytest.raises(ValueError, match="val_fraction"):
        FinetuneConfig(val_fraction=1.5)


@needs_assets
@pytest.mark.parametrize("model", ["lenet5_clean", "mlperf_resnet8"])  # a PyTorch original, a port
def test_committed_pocket_finetune_table_matches_a_recomputed_cell(model):
    """Recompute one (model, target, seed) cell of the committed table with its seed: the
    grid search picks the same learning rate and the accuracies are the same fractions, exactly
    on a machine with the table's CPU arithmetic. On another (a different instruction set, e.g.
    AVX2 against AVX-512) float32 kernels round differently and 100 steps of SGD turn that
    into an image or two more or less correct: then the accuracies agree within 0.02."""
    from pedlib.study import Study

    study = Study.load(ROOT / "params" / "pocket.yaml", progress=False)
    path = study.finetuning.table_path()
    assert records.is_fresh(path, study.finetuning.cell_key()), \
        f"{path} does not match params/pocket.yaml; run `make finetune`"
    table = pd.read_csv(path)
    assert set(table.model) == set(study.finetuning.models()) and set(table.dataset) == set(study.finetuning.datasets())
    assert table.groupby(["model", "dataset"]).size().eq(len(study.params.groundtruth.finetune.seeds)).all()
    assert len(set(table.model)) == 17  # every pocket model is fine-tuned
    target = study.finetuning.datasets()[-1]
    row = table[(table.model == model) & (table.dataset == target) & (table.seed == 0)].iloc[0]
    again = study.finetuning.run_cell(model, target, seeds=[0]).iloc[0]
    assert (again.learning_rate, again.weight_decay) == (row.learning_rate, row.weight_decay)
    made_on = (records.read_record(path) or {}).get("cpu") or {}
    here = records.cpu_arithmetic()
    if all(made_on.get(k) == here[k] for k in ("torch", "blas")):
        assert again.val_accuracy == row.val_accuracy and again.test_accuracy == row.test_accuracy
    else:
        assert abs(again.val_accuracy - row.val_accuracy) <= 0.02, (again.val_accuracy, row.val_accuracy)
        assert abs(again.test_accuracy - row.test_accuracy) <= 0.02, (again.test_accuracy, row.test_accuracy)


@needs_assets
def test_a_cells_job_key_depends_on_its_own_inputs_only(tmp_path):
    """Adding a target to the fine-tuning table changes the table's key, never the key of a
    finished cell: the cells already computed stay fresh and are not redone."""
    from pedlib.study import Study

    (tmp_path / "params").mkdir()
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    keys = []
    for datasets in (["digits"], ["lfw", "digits"]):
        raw["groundtruth"]["finetune"]["datasets"] = datasets
        path = tmp_path / "params" / "smoke.yaml"
        path.write_text(yaml.safe_dump(raw))
        study = Study.load(path, progress=False)
        keys.append((study.finetuning.job_key(study.finetuning.job("lenet5_clean/digits/cell")), study.finetuning.cell_key()))
    assert keys[0][0] == keys[1][0]
    assert keys[0][1] != keys[1][1]


@needs_assets
def test_finetune_list_says_the_committed_table_holds_every_cell(capsys):
    from pedlib.cli import main

    assert main(["finetune", str(ROOT / "params" / "pocket.yaml"), "--list", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "85 jobs: 85 in table" and "pocket-finetune.csv matches this study" in lines[-1]
