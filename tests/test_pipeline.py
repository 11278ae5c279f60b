"""End to end: params/smoke.yaml through the five notebooks with papermill, on the real assets.

Then the results are checked for content (they equal what pedlib computes directly), for
provenance, and for caching: a rerun computes nothing; an interrupted stage resumes.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pedlib import evaluate, metrics, records
from pedlib.study import Study

from conftest import ROOT, needs_assets, run_notebooks



@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run the smoke study's notebooks in a fresh project folder (params copied, no results)."""
    root = tmp_path_factory.mktemp("project")
    (root / "params").mkdir()
    shutil.copy(ROOT / "params" / "smoke.yaml", root / "params" / "smoke.yaml")
    run_notebooks(root, "smoke")
    return Study.load(root / "params" / "smoke.yaml", progress=False)


pytestmark = needs_assets


def test_notebooks_write_every_stage_output(smoke):
    out = smoke.output
    for path in ["groundtruth/linear_probe.csv", "groundtruth/finetune.csv", "scores.csv",
                 "evaluation.csv"]:
        assert (out / path).is_file() and records.read_record(out / path) is not None, path
    pngs = sorted(smoke.figures_dir.glob("*.png"))
    assert {p.stem for p in pngs} >= {"wtau_linear_probe_all", "scatter_logme", "sensitivity_logme",
                                      "runtime", "trajectory_lfw_best", "trajectory_lfw_worst"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    table = (smoke.figures_dir / "wtau_linear_probe_all.md").read_text()
    assert "logme+ped" in table and "mean" in table


def test_scores_are_what_the_metrics_give_on_the_cached_features(smoke):
    scores = pd.read_csv(smoke.output / "scores.csv", keep_default_na=False, na_values=[""])
    p = smoke.params
    per_cell = len(p.metrics) * (2 + len(p.reference.ablation)) + \
        len(p.sensitivity.metrics) * (len(p.sensitivity.nsigma) * len(p.sensitivity.time_step) - 1)
    assert len(scores) == len(smoke.models) * len(smoke.datasets) * per_cell
    train = smoke.features("cifar_resnet20", "digits", "train")
    assert len(train["labels"]) == 10 * p.datasets["digits"].train_per_class
    row = scores[(scores.model == "cifar_resnet20") & (scores.dataset == "digits") & (scores.method == "logme")]
    assert row.score.iloc[0] == metrics.get("logme")(train["features"].astype(np.float64), train["labels"])
    from pedlib import ped
    reference = smoke.features("cifar_resnet20", "digits", "reference")  # not used: source is cifar10
    assert smoke.reference("cifar_resnet20", "digits", "source").shape[0] == p.reference.per_dataset
    moved = ped.score(train["features"], train["labels"], "gbc",
                      smoke.reference("cifar_resnet20", "digits", "source"))
    row = scores[(scores.model == "cifar_resnet20") & (scores.dataset == "digits") & (scores.method == "gbc+ped")]
    assert row.score.iloc[0] == pytest.approx(moved, rel=1e-12)
    assert reference["features"].shape[1] == train["features"].shape[1]


def test_evaluation_is_weighted_tau_of_scores_against_accuracies(smoke):
    scores = pd.read_csv(smoke.output / "scores.csv")
    probe = pd.read_csv(smoke.output / "groundtruth" / "linear_probe.csv")
    evaluation = pd.read_csv(smoke.output / "evaluation.csv")
    s = scores[(scores.dataset == "digits") & (scores.method == "logme")].set_index("model").score
    a = probe[probe.dataset == "digits"].set_index("model").accuracy
    expected = evaluate.weighted_tau(s.to_dict(), a.to_dict())
    row = evaluation[(evaluation.groundtruth == "linear_probe") & (evaluation.dataset == "digits")
                     & (evaluation.method == "logme") & (evaluation.pool == "all")]
    assert row.weighted_tau.iloc[0] == pytest.approx(expected)
    fine = evaluation[evaluation.groundtruth == "finetune"]
    assert set(fine.n_models) == {3}  # only the trainable models have fine-tuning ground truth
    means = evaluation[(evaluation.dataset == "mean") & (evaluation.groundtruth == "linear_probe")
                       & (evaluation.pool == "all") & (evaluation.method == "logme")]
    per_dataset = evaluation[(evaluation.dataset != "mean") & (evaluation.groundtruth == "linear_probe")
                             & (evaluation.pool == "all") & (evaluation.method == "logme")]
    assert means.weighted_tau.iloc[0] == pytest.approx(per_dataset.weighted_tau.mean())


def test_results_record_params_seed_versions_and_commit(smoke):
    record = records.read_record(smoke.output / "scores.csv")
    assert record["params"]["study"] == "smoke" and record["seed"] == 0
    assert record["versions"]["torch"] and "commit" in record["git"]
    feature_record = records.read_record(smoke.feature_path("lenet5_clean", "lfw", "train"))
    assert feature_record["inputs"]["weights"] == "models/mnist_lenet5_clean.pt"


def test_rerun_computes_nothing_and_an_interrupted_stage_resumes(smoke, monkeypatch):
    cells = [smoke.output / "scores" / m / f"{d}.csv" for d in smoke.datasets for m in smoke.models]
    stamps = {c: c.stat().st_mtime_ns for c in cells}
    smoke.score()
    assert all(c.stat().st_mtime_ns == stamps[c] for c in cells)
    assert smoke.extract().cached.all()
    derived = [smoke.output / "evaluation.csv", smoke.figures_dir / "index.md"]
    before = [p.stat().st_mtime_ns for p in derived]
    smoke.evaluate()
    assert sorted(smoke.figures()) and [p.stat().st_mtime_ns for p in derived] == before

    # Invalidate two cells, then crash on the second recomputation: the first is kept.
    victims = cells[:2]
    for cell in victims:
        records.record_path(cell).unlink()
    calls = []
    original = Study.score_cell

    def flaky(self, model, dataset):
        calls.append((model, dataset))
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, model, dataset)

    monkeypatch.setattr(Study, "score_cell", flaky)
    with pytest.raises(KeyboardInterrupt):
        smoke.score()
    monkeypatch.setattr(Study, "score_cell", original)
    assert records.read_record(victims[0]) is not None and records.read_record(victims[1]) is None
    recomputed = []
    monkeypatch.setattr(Study, "score_cell", lambda self, m, d: recomputed.append((m, d)) or original(self, m, d))
    smoke.score()
    assert len(recomputed) == 1  # only the interrupted cell
    others = [c for c in cells if c not in victims]
    assert all(c.stat().st_mtime_ns == stamps[c] for c in others)


def test_changed_params_invalidate_only_what_depends_on_them(smoke, tmp_path):
    root = Path(smoke.params.root)
    raw = yaml.safe_load((root / "params" / "smoke.yaml").read_text())
    raw["metrics"] = ["logme"]
    raw["output"] = "results/smoke"  # the same results folder
    changed = root / "params" / "smoke-logme.yaml"
    changed.write_text(yaml.safe_dump(raw))
    other = Study.load(changed, progress=False)
    assert other.extract().cached.all()  # features do not depend on the metrics
    key = other._score_key("lenet5_clean", "lfw")
    assert key != smoke._score_key("lenet5_clean", "lfw")
