"""The fine-tuning sweep on a cluster: the real submitit SLURM submission code against a fake
scheduler (tests/fake_slurm: sbatch, sacct, squeue, scancel, srun, scontrol run the jobs here),
and submitit's local executor."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from pedlib import records
from pedlib.study import Study

from conftest import ROOT, needs_assets

pytestmark = needs_assets
FAKE = Path(__file__).resolve().parent / "fake_slurm"

SWEEP = {
    "study": "cluster", "seed": 0, "models": ["cifar_resnet20", "lenet5_clean"],
    "datasets": {"digits": {"train_per_class": 10, "test_per_class": 5}},
    "extract": {"batch_size": 16, "threads": 1},
    "groundtruth": {"finetune": {
        "protocol": "sweep", "learning_rates": [0.01], "weight_decays": [0.0, 0.0001],
        "weight_decay_per_lr": False, "steps": 60, "batch_size": 8, "seeds": [0], "threads": 1,
        "checkpoint_every": 10, "augment": False,
        "slurm": {"partition": "gpu", "gpus_per_task": 0, "cpus_per_task": 1, "time_minutes": 10,
                  "mem_gb": 2, "array_parallelism": 3, "setup": ["echo setting up"]}}},
    "metrics": ["logme"], "sensitivity": None, "ports": None,
    "reference": {"mode": "none", "ablation": []},
    "evaluation": {"groundtruth": ["finetune"], "bootstrap": 0},
}


def _project(root: Path, params: dict, name: str) -> Path:
    (root / "params").mkdir(parents=True)
    path = root / "params" / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**params, "study": name}))
    return path


def _pedlib(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "pedlib", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=900)


@pytest.fixture
def fake_slurm(tmp_path):
    state = tmp_path / "slurm-state"
    env = dict(os.environ, PATH=f"{FAKE}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM_STATE=str(state),
               TQDM_DISABLE="1", PEDLIB_SLURM_POLL_SECONDS="0.5",
               PEDLIB_SLURM_RESULT_GRACE_SECONDS="1")  # results land on this machine's disk: no lag
    return env, state


def _sbatch_files(state: Path) -> list[str]:
    return [p.read_text() for p in sorted(state.glob("*.sbatch"), key=lambda p: int(p.stem))]


def test_slurm_sweep_requeues_preemption_and_resubmits_only_what_is_left(tmp_path, fake_slurm):
    """Two interruptions in one submission: a preempted grid job is requeued by the scheduler
    and resumes from its checkpoint; a killed one (a node failure) stays failed until the
    sweep is submitted again, which submits only it and the final that needs it. Both end
    exactly where uninterrupted runs end."""
    env, state = fake_slurm
    params = _project(tmp_path / "project", SWEEP, "cluster")
    study = Study.load(params, progress=False)
    preempted = study.finetuning.job("lenet5_clean/digits/grid-00")
    killed = study.finetuning.job("cifar_resnet20/digits/grid-00")
    env["FAKE_SLURM_PREEMPT"] = str(preempted.path.with_suffix(".ckpt.pt"))
    env["FAKE_SLURM_KILL"] = str(killed.path.with_suffix(".ckpt.pt"))

    first = _pedlib("finetune", params, "--executor", "slurm", "--wait", "--time", "15", env=env)
    # the killed grid job failed, and so did the final that needs it (afterany dependency)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "submitted 6 jobs to slurm" in first.stdout and "2 job(s) failed" in first.stderr
    grid_array, final_array = _sbatch_files(state)
    assert "#SBATCH --array=0-3%3" in grid_array and "#SBATCH --partition=gpu" in grid_array
    assert "#SBATCH --time=15" in grid_array and "#SBATCH --mem=2GB" in grid_array  # --time overrides
    assert "gpus" not in grid_array and "echo setting up" in grid_array
    assert "#SBATCH --array=0-1%2" in final_array and "#SBATCH --dependency=afterany:1000" in final_array
    assert (state / "requeued").read_text().split() == [(state / "preempt").read_text()]
    assert preempted.path.is_file() and not preempted.path.with_suffix(".ckpt.pt").exists()
    checkpoint = killed.path.with_suffix(".ckpt.pt")
    assert checkpoint.is_file() and not killed.path.exists()  # killed between checkpoints
    pending = {job.id for job in Study.load(params, progress=False).finetuning.pending()}
    assert pending == {"cifar_resnet20/digits/grid-00", "cifar_resnet20/digits/final-seed0"}

    again = _pedlib("finetune", params, "--executor", "slurm", "--wait", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "submitted 2 jobs to slurm" in again.stdout  # only what was left
    third, fourth = _sbatch_files(state)[2:]  # one job each: submitit sends a plain job, not an array
    assert "--array" not in third and "#SBATCH --dependency=afterany:1002" in fourth
    assert not checkpoint.exists()  # removed once the job finished

    # resumed jobs end exactly where uninterrupted runs of them end
    uninterrupted = Study.load(_project(tmp_path / "reference", SWEEP, "cluster"), progress=False)
    for job in (preempted, killed):
        expected = uninterrupted.finetuning.run_job(job.id)
        assert json.loads(job.path.read_text())["val_score"] == expected["val_score"], job.id

    assert "nothing to submit" in _pedlib("finetune", params, "--executor", "slurm", env=env).stdout
    collected = _pedlib("finetune", params, "--collect", env=env)
    assert collected.returncode == 0, collected.stderr
    table = pd.read_csv(study.finetuning.table_path())
    assert sorted(table.model) == ["cifar_resnet20", "lenet5_clean"]
    slurm = study.output / "groundtruth" / "finetune" / "slurm"
    assert list(slurm.rglob("*_log.out")) and len((slurm / "submissions.jsonl").read_text().splitlines()) == 2


def test_local_executor_runs_the_smoke_cells_and_is_idempotent(tmp_path, fake_slurm):
    env, _ = fake_slurm
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["models"] = ["mlperf_resnet8", "lenet5_clean"]
    raw["groundtruth"]["finetune"]["slurm"] = {"array_parallelism": 2}
    params = _project(tmp_path / "project", raw, "smoke")
    done = _pedlib("finetune", params, "--executor", "local", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted 4 jobs to local" in done.stdout
    study = Study.load(params, progress=False)
    assert not study.finetuning.pending()
    assert all(records.is_fresh(job.path, study.finetuning.job_key(job)) for job in study.finetuning.jobs())
    assert "nothing to submit" in _pedlib("finetune", params, "--executor", "local", env=env).stdout


def test_slurm_settings_are_validated():
    from pedlib.params import SlurmParams
    from pedlib.params import ParamsError, parse_params

    with pytest.raises(ValueError, match="array_parallelism must be positive"):
        SlurmParams(array_parallelism=0)
    raw = {**SWEEP, "groundtruth": {"finetune": {"slurm": {"partion": "gpu"}}}}
    with pytest.raises(ParamsError, match="unknown key 'partion'; did you mean 'partition'"):
        parse_params(raw)


class _EndedJob:
    """A submitit job the scheduler reports ended: its result file shows up after
    ``appears_after`` looks (None: never, as for a killed task); ``error`` is what
    ``result()`` re-raises from the task."""

    def __init__(self, appears_after: int | None = 0, error: Exception | None = None):
        self.looks, self.appears_after, self.error, self.results = 0, appears_after, error, 0
        self.paths = SimpleNamespace(result_pickle=SimpleNamespace(exists=self._exists))

    def _exists(self) -> bool:
        self.looks += 1
        return self.appears_after is not None and self.looks > self.appears_after

    def done(self, force_check: bool = False) -> bool:
        return True

    def result(self):
        self.results += 1
        if self.error:
            raise self.error
        return {}


def test_waiting_gives_killed_jobs_one_shared_grace_and_answers_twice_alike():
    from pedlib.cluster import Submission

    fine, raised, late = _EndedJob(), _EndedJob(error=RuntimeError("diverged")), _EndedJob(appears_after=3)
    killed, also_killed = _EndedJob(appears_after=None), _EndedJob(appears_after=None)
    submission = Submission("slurm", [[fine, raised, late], [killed, also_killed]],
                            [["a", "b", "c"], ["d", "e"]], Path("."))
    started = time.monotonic()
    assert submission.wait(poll_seconds=0, grace_seconds=2) == ["b", "d", "e"]
    assert 1.5 < time.monotonic() - started < 3.5  # one grace for both killed jobs, not one each
    assert (fine.results, raised.results, late.results, killed.results) == (1, 1, 1, 0)  # late: in time
    assert submission.wait() == ["b", "d", "e"] and fine.results == 1  # the second call asks nobody
