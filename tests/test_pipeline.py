"""End to end: params/smoke.yaml through the five notebooks with papermill, on the real assets.

Then the results are checked for content (they equal what pedlib computes directly), for
provenance, and for caching: a rerun computes nothing; an interrupted stage resumes.
"""

import dataclasses
import html as html_module
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from filelock import FileLock

from pedlib import correlations, metrics, records
from pedlib.stages import feature_store, score as score_stage
from pedlib.stages.score import cell_key as score_cell_key
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
                                      "trajectory_lfw_best", "trajectory_lfw_worst"}
    # timings vary from run to run: they stay out of figures/, under results/
    assert not list(smoke.figures_dir.glob("runtime.*"))
    assert {p.name for p in (out / "timing").iterdir()} == {"runtime.pdf", "runtime.png", "runtime.md", "runtime.csv"}
    assert "seconds" not in (smoke.figures_dir / "ports.md").read_text() if (smoke.figures_dir / "ports.md").exists() else True
    index = (smoke.figures_dir / "index.md").read_text()
    assert all(f"- [{p.name}]({p.name}) ([PDF]({p.stem}.pdf)): " in index for p in pngs)  # caption and PDF twin
    assert all(p.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-" for p in pngs)
    assert (smoke.figures_dir / "wtau_linear_probe_all.tex").read_text().count("\\toprule") == 1
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
    assert feature_store.reference(smoke, "cifar_resnet20", "digits", "source").shape[0] == p.reference.per_dataset
    # the public call a user exploring by hand makes (docs/api.md) gives the study's reference
    np.testing.assert_array_equal(smoke.reference("cifar_resnet20", "digits", "source"),
                                  feature_store.reference(smoke, "cifar_resnet20", "digits", "source"))
    moved = ped.score(train["features"], train["labels"], "gbc", smoke.reference("cifar_resnet20", "digits", "source"))
    row = scores[(scores.model == "cifar_resnet20") & (scores.dataset == "digits") & (scores.method == "gbc+ped")]
    assert row.score.iloc[0] == pytest.approx(moved, rel=1e-12)
    assert reference["features"].shape[1] == train["features"].shape[1]


def test_evaluation_is_weighted_tau_of_scores_against_accuracies(smoke):
    scores = pd.read_csv(smoke.output / "scores.csv")
    probe = pd.read_csv(smoke.output / "groundtruth" / "linear_probe.csv")
    evaluation = pd.read_csv(smoke.output / "evaluation.csv")
    s = scores[(scores.dataset == "digits") & (scores.method == "logme")].set_index("model").score
    a = probe[probe.dataset == "digits"].set_index("model").accuracy
    expected = correlations.weighted_tau(s.to_dict(), a.to_dict())
    row = evaluation[(evaluation.groundtruth == "linear_probe") & (evaluation.dataset == "digits")
                     & (evaluation.method == "logme") & (evaluation.pool == "all")]
    assert row.weighted_tau.iloc[0] == pytest.approx(expected)
    fine = evaluation[evaluation.groundtruth == "finetune"]
    assert set(fine.n_models) == {5}  # every pocket model is fine-tuned (the TFLite/Keras ones as ports)
    means = evaluation[(evaluation.dataset == "mean") & (evaluation.groundtruth == "linear_probe")
                       & (evaluation.pool == "all") & (evaluation.method == "logme")]
    per_dataset = evaluation[(evaluation.dataset != "mean") & (evaluation.groundtruth == "linear_probe")
                             & (evaluation.pool == "all") & (evaluation.method == "logme")]
    assert means.weighted_tau.iloc[0] == pytest.approx(per_dataset.weighted_tau.mean())


def test_results_record_params_seed_versions_and_commit(smoke):
    record = records.read_record(smoke.output / "scores.csv")
    assert record["params"]["study"] == "smoke" and record["seed"] == 0
    assert record["versions"]["torch"] and "commit" in record["git"]
    feature_record = records.read_record(feature_store.feature_path(smoke, "lenet5_clean", "lfw", "train"))
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

    # fresh tables are read back without running the stages they need: extraction never runs
    from pedlib import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a fresh stage ran the extract stage")

    with monkeypatch.context() as patch:
        patch.setitem(pipeline.STAGES, "extract", dataclasses.replace(pipeline.STAGES["extract"], make=refuse))
        fresh = Study(smoke.params, params_path=smoke.params_path, progress=False)
        fresh.evaluate(), fresh.figures(), fresh.score()

    # Invalidate two cells, then crash on the second recomputation: the first is kept. (One
    # process, so that the patched method below is the one that runs; the cells run through
    # the same code in worker processes otherwise.)
    smoke = Study(dataclasses.replace(smoke.params, processes=1), params_path=smoke.params_path, progress=False)
    victims = cells[:2]
    for cell in victims:  # (the table of all cells stays fresh: the stage checks its cells too)
        records.record_path(cell).unlink()
    calls = []
    original = score_stage.score_cell

    def flaky(study, model, dataset):
        calls.append((model, dataset))
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return original(study, model, dataset)

    monkeypatch.setattr(score_stage, "score_cell", flaky)
    with pytest.raises(KeyboardInterrupt):
        smoke.score()
    monkeypatch.setattr(score_stage, "score_cell", original)
    assert records.read_record(victims[0]) is not None and records.read_record(victims[1]) is None
    recomputed = []
    monkeypatch.setattr(score_stage, "score_cell", lambda study, m, d: recomputed.append((m, d)) or original(study, m, d))
    smoke.score()
    assert len(recomputed) == 1  # only the interrupted cell
    others = [c for c in cells if c not in victims]
    assert all(c.stat().st_mtime_ns == stamps[c] for c in others)


def test_a_truncated_cache_file_is_named_recomputed_and_gives_the_same_results(smoke, caplog):
    """A cached feature file and a cached score cell cut to half their bytes (as a full disk or
    an interrupted copy leaves them): the rerun names each in one warning, recomputes them, and
    gives the same numbers; a direct read of a broken file names it too."""
    feature = feature_store.feature_path(smoke, "cifar_resnet20", "digits", "train")
    cell = smoke.output / "scores" / "lenet5_clean" / "lfw.csv"
    features_before = records.load_npz(feature)
    scores_before = pd.read_csv(smoke.output / "scores.csv").drop(columns="seconds")
    for path in (feature, cell):
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(records.CacheError, match=r"digits-train\.npz: cannot read this feature file"):
        records.load_npz(feature)
    with caplog.at_level("WARNING", logger="pedlib.records"):
        smoke.score()
    warned = [r.getMessage() for r in caplog.records if "does not match its record" in r.getMessage()]
    assert any(str(feature) in m for m in warned) and any(str(cell) in m for m in warned), warned
    after = records.load_npz(feature)
    assert all(np.array_equal(features_before[k], after[k]) for k in features_before)
    pd.testing.assert_frame_equal(pd.read_csv(smoke.output / "scores.csv").drop(columns="seconds"), scores_before)


def test_changed_params_invalidate_only_what_depends_on_them(smoke, tmp_path):
    root = Path(smoke.params.root)
    raw = yaml.safe_load((root / "params" / "smoke.yaml").read_text())
    raw["metrics"] = ["logme"]
    raw["output"] = "results/smoke"  # the same results folder
    changed = root / "params" / "smoke-logme.yaml"
    changed.write_text(yaml.safe_dump(raw))
    other = Study.load(changed, progress=False)
    assert other.extract().cached.all()  # features do not depend on the metrics
    key = score_cell_key(other, "lenet5_clean", "lfw")
    assert key != score_cell_key(smoke, "lenet5_clean", "lfw")


def test_executed_notebooks_keep_summaries_and_conclusions_not_progress_bars(smoke):
    executed = smoke.output / "notebooks"
    for name in ["01_groundtruth", "02_extract", "03_score", "04_evaluate", "05_figures"]:
        notebook = json.loads((executed / f"{name}.ipynb").read_text())
        outputs = [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]
        text = json.dumps([o.get("text", "") for o in outputs]  # the text a reader sees, not images
                          + [o.get("data", {}).get(kind, "") for o in outputs for kind in ("text/plain", "text/markdown")])
        assert "%|" not in text and "\\r" not in text, name  # no tqdm bars redrawn into the notebook
        assert "IProgress" not in text and "TCP" not in text, name
        last = json.dumps(notebook["cells"][-1].get("outputs", []))
        assert "Conclusion" in last, name
    score = json.dumps(json.loads((executed / "03_score.ipynb").read_text())["cells"])
    assert "[score] 10/10 cells in" in score  # one summary line per finished task
    assert not list(executed.glob("*.failed.ipynb")) and not list(executed.glob(".*running*"))


def test_report_is_one_html_file_that_opens_offline(smoke):
    from pedlib.notebooks import write_report

    html = write_report(str(smoke.params_path)).read_text()
    assert html.count("data:image/png;base64") >= 5  # the figures are inside the file
    assert not re.search(r'(src|href)="https?://', html)  # nothing fetched from the network
    assert "Conclusion" in html and "05 · Figures and tables" in html
    assert "<title>pedlib: the smoke study</title>" in html
    assert "Study.load(" not in html and "hl-ipython3" not in html  # the code is hidden
    assert "No description has been provided" not in html
    # the headline figure and the evaluation's conclusion come before the first notebook
    assert html.index("Does PED help?") < html.index("01 · ") and html.index("Conclusion") < html.index("01 · ")
    captions = {entry["caption"] for entry in records.read_record(smoke.figures_dir / "index.md")["inputs"].values()}
    alts = {html_module.unescape(alt) for _, alt in re.findall(r'<img[^>]* alt=(["\'])(.*?)\1', html)}
    assert len(alts & captions) >= 5  # figures carry their captions


RERUN = """
import sys
from pedlib.stages import extract as extract_stage, feature_store, score as score_stage
from pedlib.stages.score import cell_key as score_cell_key
from pedlib.study import Study
study = Study.load(sys.argv[1], progress=False)
study.check_ports(); study.groundtruth(); study.extract(); study.score(); study.evaluate(); study.figures()
"""


def test_a_rerun_under_another_hash_seed_and_process_count_gives_identical_tables(smoke, tmp_path):
    """The same inputs give the same tables: the smoke study again, from scratch, in two
    processes at once, with another PYTHONHASHSEED and one process instead of one per core. Scores,
    ground truths, the evaluation and every figure table and plot must be byte-identical,
    except timing columns and the files that hold timings (runtime.*, ports.*)."""
    root = tmp_path / "again"
    (root / "params").mkdir(parents=True)
    raw = yaml.safe_load((Path(smoke.params.root) / "params" / "smoke.yaml").read_text())
    raw["processes"] = 1
    (root / "params" / "smoke.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "rerun.py").write_text(RERUN)
    env = dict(os.environ, PYTHONHASHSEED="11", PEDLIB_PROGRESS="off")
    # Two such runs at once, started while a third process holds the study: each waits (one
    # line), then they take turns stage by stage, the second reusing the first's results.
    (root / "results" / "smoke").mkdir(parents=True)
    logs = [root / f"run{i}.err" for i in range(2)]
    with FileLock(root / "results" / "smoke" / ".lock"):
        runs = [subprocess.Popen([sys.executable, str(root / "rerun.py"), str(root / "params" / "smoke.yaml")],
                                 env=env, stdout=subprocess.DEVNULL, stderr=log.open("w")) for log in logs]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all("another run of the smoke study" in log.read_text()
                                                      for log in logs):
            time.sleep(0.2)
    assert [run.wait(timeout=900) for run in runs] == [0, 0], [log.read_text()[-3000:] for log in logs]
    assert all("another run of the smoke study holds" in log.read_text() for log in logs)
    again = Study.load(root / "params" / "smoke.yaml", progress=False)

    def table(study, relative):
        frame = pd.read_csv(study.output / relative, keep_default_na=False, na_values=[""])
        return frame.drop(columns=["seconds"], errors="ignore")

    for relative in ["scores.csv", "evaluation.csv", "groundtruth/linear_probe.csv", "groundtruth/finetune.csv"]:
        pd.testing.assert_frame_equal(table(smoke, relative), table(again, relative), check_exact=True)
    compared = 0
    for path in sorted(smoke.figures_dir.iterdir()):
        if path.stem in ("runtime", "ports") or path.name == "index.md" or path.name.endswith(".record.json"):
            continue
        assert path.read_bytes() == (again.figures_dir / path.name).read_bytes(), path.name
        compared += 1
    assert compared >= 20
