"""Stage behaviours a user meets: the size check before scoring, a metric failing on one cell,
progress lines, the notebook runner's failure handling, the report, and the trajectory's
choice of models."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pedlib import plots, progress, scoring
from pedlib.params import ParamsError
from pedlib.stages import evaluate as evaluate_stage
from pedlib.study import Study

from conftest import ROOT, make_blobs, needs_assets


def _smoke_project(tmp_path: Path, **changes) -> Path:
    (tmp_path / "params").mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "params" / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@needs_assets
def test_score_stage_checks_every_cells_sizes_before_any_work(tmp_path):
    """N-LEEP needs 5 x 10 = 50 samples on digits; with 3 per class there are 30. The stage
    stops before extracting anything, naming the dataset, the metric and the fix."""
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["datasets"]["digits"]["train_per_class"] = 3
    study = Study.load(_smoke_project(tmp_path, metrics=["logme", "nleep"], datasets=raw["datasets"]),
                       progress=False)
    with pytest.raises(ParamsError, match=r"digits \(30 scored images.*nleep.*component_ratio <= 3"):
        study.score()
    assert not (study.output / "features").exists()


def test_a_metric_that_fails_on_a_cell_is_recorded_as_nan_with_a_warning():
    x, y = make_blobs(n_per_class=4, n_classes=3, n_features=5)  # 12 samples: N-LEEP wants 15
    with pytest.warns(scoring.MetricFailure, match="nleep: N-LEEP needs"):
        frame = scoring.score_features(x, y, ["logme", "nleep"], {}, [], {}, on_error="nan")
    assert np.isnan(frame.set_index("metric").score["nleep"]) and np.isfinite(frame.score.iloc[0])
    with pytest.raises(ValueError, match="N-LEEP needs"):
        scoring.score_features(x, y, ["nleep"], {}, [], {})  # the library default raises


def test_terminal_progress_is_one_line_per_update_with_counts_elapsed_and_eta():
    stream, summary = io.StringIO(), io.StringIO()
    bar = progress.LineProgress(total=4, desc="score", unit="cells", stream=stream, summary=summary,
                                min_interval=0.0)
    for _ in range(4):
        bar.set_postfix_str("lenet on lfw")
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    # no ETA from the first update alone (its time is start-up); from the second on, one
    assert lines[0] == "[score] 1/4 cells | 0:00 elapsed | lenet on lfw"
    assert lines[1].startswith("[score] 2/4 cells | 0:00 elapsed | ETA ") and lines[1].endswith("lenet on lfw")
    assert lines[-1].startswith("[score] 4/4 cells | 0:00 elapsed") and "ETA" not in lines[-1]
    assert summary.getvalue() == "[score] 4/4 cells in 0:00\n"
    assert progress.format_seconds(3725) == "1:02:05"


def test_a_slow_start_does_not_make_the_first_eta_absurd(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    stream = io.StringIO()
    bar = progress.LineProgress(total=1180, desc="evaluate", unit="rankings", stream=stream, min_interval=0.0)
    now[0] = 3.0  # start-up: worker processes
    bar.update(1)
    now[0] = 3.1  # then 400 rankings in 0.1 s
    bar.update(400)
    first, second = stream.getvalue().splitlines()
    assert "ETA" not in first
    assert second.endswith("ETA 0:00")  # 779 left at 4,000 a second, not 1:01:40


def test_the_eta_of_items_of_different_sizes_comes_from_the_work_left(monkeypatch):
    """Extraction's feature sets differ 100-fold in work (images x model cost): four sets of
    work 400, 100, 10, 10 (largest first, two processes). The ETA is the work left at the rate
    of all the work done: 120 units at 10 a second after the first (12 s), 20 units at 10 a
    second after the second (2 s), where counting sets would say 2 sets x 10 s = 20 s."""
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    stream = io.StringIO()
    bar = progress.LineProgress(total=4, desc="extract", unit="feature sets", stream=stream, min_interval=0.0,
                                work_total=520.0)
    now[0] = 40.0
    progress.advance(bar, 400)
    now[0] = 50.0
    progress.advance(bar, 100)
    assert stream.getvalue().splitlines() == ["[extract] 1/4 feature sets | 0:40 elapsed | ETA 0:12",
                                              "[extract] 2/4 feature sets | 0:50 elapsed | ETA 0:02"]


def test_progress_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("PEDLIB_PROGRESS", "terminal")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert isinstance(progress.progress(total=1, desc="x"), progress.LineProgress)
    assert isinstance(progress.progress(total=1, desc="x", leave=False), progress._Silent)  # nested
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress.mode() == "off"


def test_trajectory_models_come_from_the_study_not_the_whole_ground_truth():
    """A published ground truth lists 12 models; a study of 3 must draw its trajectories from
    its own 3 (the figures stage used to crash on a model it had no features for)."""
    truth = pd.DataFrame({"model": ["a", "b", "c", "d", "e"], "dataset": "pets",
                          "accuracy": [0.9, 0.5, 0.7, 0.99, 0.1]})
    assert plots.trajectory_models(truth, ["a", "b", "c"], ["cars", "pets"]) == ("pets", "b", "a", 3)
    assert plots.trajectory_models(truth, ["x"], ["pets"]) is None


@needs_assets
def test_a_params_typo_stops_the_runner_with_one_line_before_any_kernel(tmp_path, capsys):
    from pedlib.cli import main

    path = _smoke_project(tmp_path)
    path.write_text(path.read_text().replace("sensitivity:", "sensitivty:"))
    assert main(["notebooks", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown key 'sensitivty'; did you mean 'sensitivity'?" in err
    assert not (tmp_path / "results").exists()


@needs_assets
def test_a_failing_notebook_is_kept_as_failed_with_its_log_and_one_line(tmp_path):
    """The notebook fails inside the kernel (the study's image folder does not exist, which
    only reading it finds out); the executed notebook must not look completed."""
    from pedlib.notebooks import NotebookFailed, run_notebooks

    path = _smoke_project(tmp_path, datasets={"mine": {"type": "imagefolder", "root": "no_such_folder"}})
    with pytest.raises(NotebookFailed) as failure:
        run_notebooks(str(path), ["02_extract"])
    message = str(failure.value)
    assert message.startswith("02_extract failed: ") and len(message.splitlines()) == 1
    out = tmp_path / "results" / "smoke"
    assert not (out / "notebooks" / "02_extract.ipynb").exists()
    failed = json.loads((out / "notebooks" / "02_extract.failed.ipynb").read_text())
    assert failed["metadata"]["pedlib"]["status"] == "failed"
    assert "incomplete" in "".join(failed["cells"][0]["source"])
    assert "Traceback" in (out / "logs" / "02_extract.log").read_text() or \
        "Error" in (out / "logs" / "02_extract.log").read_text()


def test_a_missing_dataset_folder_stops_the_port_check_before_any_port_runs(tmp_path, monkeypatch):
    """The port check comes first in notebooks 01 and 02: a wrong path in the study's own
    data is reported before the ports take their half minute."""
    from pedlib.stages import ports

    path = _smoke_project(tmp_path, datasets={"mine": {"type": "imagefolder", "root": "no_such_folder"}})
    study = Study.load(path, progress=False)
    monkeypatch.setattr(ports, "check_one", lambda *args: pytest.fail("a port was checked"))
    with pytest.raises(FileNotFoundError, match="no_such_folder does not exist"):
        study.check_ports()


def test_score_scatter_shows_only_the_targets_its_ground_truth_covers():
    """The fine-tuning table may cover fewer targets than the study: no empty panels."""
    scores = pd.DataFrame([dict(model=m, dataset=d, metric="logme", variant=v, score=float(i))
                           for i, m in enumerate("abc") for d in ("flowers12", "lfw") for v in ("plain", "ped")])
    accuracies = pd.DataFrame(dict(model=list("abc"), dataset="flowers12", accuracy=[0.5, 0.7, 0.6]))
    fig = plots.score_scatter(scores, accuracies, "logme", "fine-tuning")
    assert len(fig.axes) == 2 and all(ax.get_title().startswith("Flowers-12") for ax in fig.axes)


def test_the_evaluation_conclusion_counts_what_the_table_says():
    from pedlib import summary

    rows = []
    taus = {("logme", "plain"): 0.8, ("logme", "ped"): 0.6, ("sfda", "plain"): 0.2, ("sfda", "ped"): 0.4,
            ("knn", "plain"): 0.5, ("knn", "ped"): 0.5}
    for (metric, variant), tau in taus.items():
        method = metric + ("+ped" if variant == "ped" else "")
        for dataset in ("flowers12", "digits", "mean"):
            rows.append(dict(groundtruth="finetune", pool="all", dataset=dataset, method=method, metric=metric,
                             variant=variant, kind="baseline" if metric == "knn" else "metric",
                             weighted_tau=tau, n_models=17, wtau_low=np.nan, wtau_high=np.nan))
    text = summary.evaluation(pd.DataFrame(rows))
    assert "(17 models, mean over 2 targets): of 2 metrics, PED lowers the mean weighted tau of 1, raises it for 1" in text
    assert "Baseline **knn** (0.500) beats 1 of 2 metrics without PED and 1 with PED (sfda)" in text


def test_the_conclusion_reads_the_paired_intervals():
    """The report's conclusion says which paired intervals exclude zero, and which comparison
    between methods they order, instead of judging by the unpaired intervals' width."""
    evaluation = pd.DataFrame([dict(groundtruth="finetune", pool="all", dataset=d, method=m, metric=m,
                                    variant="plain", kind="metric", weighted_tau=0.5, n_models=5,
                                    wtau_low=0.1, wtau_high=0.9) for d in ("a", "mean") for m in ("logme", "sfda")])
    paired = pd.DataFrame([
        dict(groundtruth="finetune", comparison="ped", variant="ped", a="logme", b="logme+ped", dataset="mean",
             delta=-0.1, delta_low=-0.2, delta_high=-0.01),
        dict(groundtruth="finetune", comparison="ped", variant="ped", a="sfda", b="sfda+ped", dataset="mean",
             delta=-0.05, delta_low=-0.15, delta_high=0.04),
        dict(groundtruth="finetune", comparison="ped", variant="ped", a="transrate", b="transrate+ped",
             dataset="mean", delta=0.0, delta_low=0.0, delta_high=0.0),
        dict(groundtruth="finetune", comparison="methods", variant="", a="logme", b="knn", dataset="mean",
             delta=-0.07, delta_low=-0.17, delta_high=0.01)])
    from pedlib import summary

    text = summary.evaluation(evaluation, paired=paired)
    assert ("PED changes 2 methods' weighted tau; the paired interval excludes zero for 1 of them "
            "(logme \u22120.100 [\u22120.200, \u22120.010]); for the others it includes zero.") in text
    assert "knn minus logme: \u22120.070 [\u22120.170, +0.010], which does not order them." in text
    assert "median width 0.80" in text and "paired intervals above" in text


def test_the_report_sets_the_papers_means_beside_the_study():
    from pedlib import summary

    published = pd.DataFrame({"method": ["logme", "logme+ped", "nleep"], "reference": ["a", "b", "c"],
                              "d1": [0.2, 0.6, 0.1], "d2": [0.4, 0.8, 0.3]})
    evaluation = pd.DataFrame([dict(groundtruth=g, pool="all", dataset="mean", method=m, weighted_tau=v)
                               for g in ("linear_probe", "finetune")
                               for m, v in (("logme", 0.5), ("logme+ped", 0.25), ("nleep", 0.4))])
    lines = summary.paper_beside(evaluation, published).splitlines()
    assert lines[0] == "| metric | the paper (mean over its 2 datasets) | this study (fine-tuning, pool all) |"
    assert lines[2:] == ["| logme | 0.300 → 0.700 | 0.500 → 0.250 |", "| nleep | 0.200 → — | 0.400 → — |"]


def test_a_collapsed_fine_tuning_seed_is_flagged():
    finetune = pd.DataFrame([dict(model="m", dataset="flowers12", seed=s, test_accuracy=a)
                             for s, a in ((0, 0.79), (1, 0.83), (2, 0.083))]
                            + [dict(model="n", dataset="flowers12", seed=s, test_accuracy=0.1) for s in range(3)])
    from pedlib import summary

    collapsed = summary.collapsed_seeds(finetune, {"flowers12": 12})
    assert collapsed[["model", "seed"]].values.tolist() == [["m", 2]]  # n is at chance on every seed: no collapse
    assert collapsed.others[0] == [0.79, 0.83]
    accuracies = {"finetune": finetune.groupby(["model", "dataset"], sort=False).test_accuracy.agg(
        accuracy="mean", accuracy_std="std").reset_index()}
    text = summary.groundtruth(accuracies, finetune, {"flowers12": 12})
    assert "**A collapsed seed:** m on flowers12, seed 2: test accuracy 0.083 (chance 0.083) against 0.790, 0.830" in text


def test_weighted_tau_figure_draws_an_interval_that_excludes_its_estimate():
    """A percentile bootstrap interval may lie wholly below the estimate (it did on the pocket
    study); the figure shows it as it is instead of failing on a negative error."""
    rows = [dict(groundtruth="finetune", pool="all", dataset=d, method=m + s, metric=m, variant=v,
                 kind="metric", weighted_tau=0.5, wtau_low=lo, wtau_high=hi, n_models=5)
            for d in ("digits", "mean") for m in ("logme", "sfda") for s, v in (("", "plain"), ("+ped", "ped"))
            for lo, hi in [((0.1, 0.4) if m == "logme" else (np.nan, np.nan))]]
    fig = plots.wtau_forest(pd.DataFrame(rows), "finetune", "all")
    segments = [seg for ax in fig.axes for coll in ax.collections for seg in getattr(coll, "get_segments", list)()]
    assert any(np.allclose(sorted(seg[:, 0]), [0.1, 0.4]) for seg in segments)


def test_saturated_scores_tie_exactly_whatever_their_last_bits():
    """Scores the score stage flags as saturated (at the metric's maximum) are tied before
    ranking, even when rounding put them further apart than TIE_RTOL; the others keep theirs."""
    from pedlib.correlations import TIE_RTOL, weighted_tau
    from pedlib.stages.evaluate import _tie_saturated

    scores = pd.DataFrame({"model": list("abcd"), "score": [9.0 - 3e-8, 9.0 + 2e-8, 7.5, 6.0],
                           "saturated": [True, True, False, False]})
    assert abs(scores.score[0] - scores.score[1]) > TIE_RTOL * 9  # not a tie by tolerance alone
    tied = _tie_saturated(scores)
    assert tied.score.tolist() == [9.0 + 2e-8, 9.0 + 2e-8, 7.5, 6.0]
    assert scores.score[0] == 9.0 - 3e-8  # the input is not modified
    accuracy = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    swapped = scores.assign(score=[9.0 + 2e-8, 9.0 - 3e-8, 7.5, 6.0])  # last bits the other way
    taus = [weighted_tau(dict(zip(t.model, t.score)), accuracy) for t in (_tie_saturated(scores), _tie_saturated(swapped))]
    assert taus[0] == taus[1]
    assert _tie_saturated(scores.drop(columns="saturated")).equals(scores.drop(columns="saturated"))


def test_a_mean_and_its_interval_cover_the_same_targets(tmp_path):
    """On one target every model's score is saturated (all tied): its weighted tau is
    undefined, the mean averages the other target, and the mean's interval must be that
    target's too, not NaN because one target can never be ranked."""
    from pedlib.correlations import bootstrap_mean_ci

    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    study = Study.load(_smoke_project(tmp_path, evaluation={**raw.get("evaluation", {}), "bootstrap": 200,
                                                            "groundtruth": ["finetune"]}), progress=False)
    models = study.models
    accuracy = {"lfw": [0.99, 1.0, 0.97, 0.98, 0.96], "digits": [0.5, 0.9, 0.7, 0.6, 0.8]}
    truth = pd.DataFrame([dict(model=m, dataset=d, accuracy=accuracy[d][i])
                          for d in ("lfw", "digits") for i, m in enumerate(models)])
    score = {"lfw": [1.0] * 5, "digits": [0.2, 0.8, 0.9, 0.1, 0.5]}
    scores = pd.DataFrame([dict(model=m, dataset=d, metric="sfda", variant="plain", method="sfda",
                                score=score[d][i], saturated=d == "lfw")
                           for d in ("lfw", "digits") for i, m in enumerate(models)])
    table = evaluate_stage.evaluation(study, scores, {"finetune": truth}).set_index("dataset")
    assert np.isnan(table.weighted_tau["lfw"])
    assert table.weighted_tau["mean"] == table.weighted_tau["digits"]
    digits = {"digits": (dict(zip(models, score["digits"])), dict(zip(models, accuracy["digits"])))}
    expected = bootstrap_mean_ci(digits, n_boot=200, seed=study.params.seed)
    assert (table.wtau_low["mean"], table.wtau_high["mean"]) == pytest.approx(expected)
    assert np.isfinite(expected).all()


def test_a_run_of_notebooks_ends_with_the_time_of_each_and_the_total(monkeypatch):
    from pedlib import notebooks

    seconds = iter([11.0, 93.0])
    monkeypatch.setattr(notebooks, "_run_one", lambda *args: next(seconds))
    stream = io.StringIO()
    times = notebooks.run_notebooks(str(ROOT / "params" / "smoke.yaml"), ("01_groundtruth", "02_extract"),
                                    stream=stream)
    assert times == {"01_groundtruth": 11.0, "02_extract": 93.0}
    assert stream.getvalue().splitlines()[-1] == "==> 2 notebooks in 1:44 (01_groundtruth 0:11, 02_extract 1:33)"


def test_a_notice_is_one_warning_line_on_the_terminal_of_a_run(monkeypatch, capfd):
    monkeypatch.setenv("PEDLIB_PROGRESS", "terminal")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    progress.notice("port mobilenet_v1_0.25_128: top-1 agreement 0.775 < 0.9")
    assert capfd.readouterr().err == "pedlib: warning: port mobilenet_v1_0.25_128: top-1 agreement 0.775 < 0.9\n"
    monkeypatch.setenv("PEDLIB_PROGRESS", "bar")  # elsewhere the warning itself is shown
    progress.notice("not shown")
    assert capfd.readouterr().err == ""


def test_the_command_line_leaves_the_callers_environment_as_it_was(monkeypatch):
    import os

    from pedlib.cli import main

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert main(["models", ]) == 0
    main(["finetune", str(ROOT / "params" / "smoke.yaml"), "--list", "--quiet"])
    assert "TQDM_DISABLE" not in os.environ


def test_a_worker_pool_hands_out_a_job_only_after_the_jobs_it_waits_for(tmp_path):
    """Job 1 copies the file job 0 writes after half a second: handed out at once, it would run
    on the idle second worker and find no file."""
    import subprocess

    from pedlib.parallel import WorkerPool

    made, copy = tmp_path / "made", tmp_path / "copy"
    jobs = [(["bash", "-c", f"sleep 0.5; echo made > {made}"],), (["cp", str(made), str(copy)],), (["true"],)]
    pool = WorkerPool(2)
    try:
        with pytest.raises(ValueError, match="earlier jobs only"):
            pool.map(subprocess.run, jobs[:1], after=[[0]])
        results = pool.map(subprocess.run, jobs, after=[[], [0], []], show=False)
    finally:
        pool.close()
    assert [r.returncode for r in results] == [0, 0, 0] and copy.read_text() == "made\n"
