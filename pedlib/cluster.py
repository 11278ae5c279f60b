"""The fine-tuning jobs on a cluster: SLURM job arrays through submitit, or local processes.

``pedlib finetune STUDY --executor slurm`` submits every pending job of the study
(:mod:`pedlib.stages.finetune`) as a SLURM job array (one task per job, a GPU each; partition,
time limit, memory, CPUs and how many tasks run at once from ``groundtruth.finetune.slurm``
or the command line). Jobs that need others (a sweep's final retrains need their grid jobs)
go in a second array that starts after the first (``--dependency=afterany``: a final whose
grid failed stops with an error naming the missing grid job). Submitting again submits only
the jobs without a fresh result, so an interrupted, failed or preempted sweep is finished by
running the same command. A job saves a checkpoint every ``checkpoint_every`` steps and is
requeued on preemption or time-out (submitit's ``Checkpointable``): it resumes from there.
``--collect`` then assembles the table as for ``make finetune``.

``--executor local`` runs the same jobs through submitit's local executor (processes on this
machine, ``array_parallelism`` at a time), which is how the submission code is tested
without a cluster. ``make -jN finetune`` stays the one-machine default.

Logs, submission scripts and submitit's pickles go to
``results/<study>/groundtruth/finetune/slurm/``; ``submissions.jsonl`` there lists every
submission (job ids, array ids, time).
"""

from __future__ import annotations

from ._extras import require as _require

_require("slurm", "pedlib.cluster")

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import submitit

from .params import SlurmParams

__all__ = ["JobRunner", "Submission", "submit", "executor_folder"]


class JobRunner(submitit.helpers.Checkpointable):
    """Runs one fine-tuning job of a study in a cluster task; on preemption or time-out
    submitit requeues it (``Checkpointable``) and the job resumes from its own checkpoint.

    ``open_study(params_path)`` opens the study in the task (pickled by reference with the
    runner, e.g. ``Study.load``): this module never imports the study itself."""

    def __init__(self, open_study: Callable[[str], Any]):
        self.open_study = open_study

    def __call__(self, params_path: str, job_id: str) -> dict:
        finetuning = self.open_study(params_path).finetuning
        job = finetuning.job(job_id)
        finetuning.run_job(job)
        return {"job": job_id, "path": str(job.path), "done": finetuning.job_done(job)}


#: How long a job the scheduler reports ended may take to show its result file (a shared
#: file system can lag); submitit waits this long (its ``_results_timeout_s``) for each
#: job in turn, here once for all of them together (``PEDLIB_SLURM_RESULT_GRACE_SECONDS``).
RESULT_GRACE_SECONDS = 15.0


@dataclass
class Submission:
    """What :func:`submit` sent: the submitit jobs of each array, and the study's job ids."""

    executor: str
    arrays: list[list]  # submitit jobs per array, in submission order
    job_ids: list[list[str]]  # the study's job ids, same shape
    folder: Path
    failed: list[str] | None = None  # set by wait()

    @property
    def count(self) -> int:
        return sum(map(len, self.job_ids))

    def wait(self, poll_seconds: float | None = None, grace_seconds: float | None = None) -> list[str]:
        """Wait for every job; returns the study job ids that failed (their errors are in
        the logs under ``folder``). The scheduler is asked every ``poll_seconds``
        (``PEDLIB_SLURM_POLL_SECONDS``, default 30): submitit's own schedule backs off to
        10 minutes, which would leave a failed job unnoticed that long. A job that ended
        without a result file (killed: out of memory, node failure, cancelled) has failed
        once the result files have had ``grace_seconds`` (:data:`RESULT_GRACE_SECONDS`) to
        appear, counted once for all jobs. A second call returns the first one's answer."""
        if self.failed is not None:
            return self.failed
        poll = poll_seconds if poll_seconds is not None else float(os.environ.get("PEDLIB_SLURM_POLL_SECONDS", 30))
        grace = (grace_seconds if grace_seconds is not None
                 else float(os.environ.get("PEDLIB_SLURM_RESULT_GRACE_SECONDS", RESULT_GRACE_SECONDS)))
        unfinished = [job for jobs in self.arrays for job in jobs]
        while unfinished:
            unfinished[0].done(force_check=True)  # one sacct call refreshes every job's state
            unfinished = [job for job in unfinished if not job.done()]
            if unfinished:
                time.sleep(poll)
        ended = [(job, job_id) for jobs, ids in zip(self.arrays, self.job_ids) for job, job_id in zip(jobs, ids)]
        deadline = time.monotonic() + grace
        while any(not job.paths.result_pickle.exists() for job, _ in ended) and time.monotonic() < deadline:
            time.sleep(min(1.0, grace))
        failed = []
        for job, job_id in ended:
            if not job.paths.result_pickle.exists():
                failed.append(job_id)
                continue
            try:
                job.result()
            except Exception:  # submitit re-raises the task's error; its log has the details
                failed.append(job_id)
        self.failed = failed
        return failed


def executor_folder(study) -> Path:
    """Where submitit keeps the scripts, pickles and logs of ``study``'s jobs."""
    return study.output / "groundtruth" / "finetune" / "slurm"


def _executor(kind: str, folder: Path, settings: SlurmParams, name: str, dependency: str | None = None):
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=kind)
    if kind == "slurm":
        additional = dict(settings.additional)
        if dependency:
            additional["dependency"] = dependency
        executor.update_parameters(
            name=name, timeout_min=settings.time_minutes, mem_gb=settings.mem_gb,
            cpus_per_task=settings.cpus_per_task, slurm_gpus_per_task=settings.gpus_per_task or None,
            slurm_partition=settings.partition, slurm_array_parallelism=settings.array_parallelism,
            slurm_use_srun=settings.use_srun, slurm_setup=list(settings.setup),
            slurm_additional_parameters=additional)
    else:
        executor.update_parameters(name=name, timeout_min=settings.time_minutes)
    return executor


def submit(study, *, executor: Literal["slurm", "local"] = "slurm", overrides: dict | None = None,
           wait: bool = False) -> Submission:
    """Submit ``study``'s pending fine-tuning jobs (see the module docstring).

    ``overrides`` replace fields of ``groundtruth.finetune.slurm`` (the command line's). With
    ``wait`` (always for the local executor) it returns when every job has ended.
    """
    if executor not in ("slurm", "local"):
        raise ValueError(f"executor must be 'slurm' or 'local', got {executor!r}")
    if study.params_path is None:
        raise ValueError("the study was not loaded from a params file (use Study.load)")
    settings = study.params.groundtruth.finetune.slurm or SlurmParams()
    settings = replace(settings, **{k: v for k, v in (overrides or {}).items() if v is not None})
    pending = study.finetuning.pending()
    runner = JobRunner(partial(type(study).load, progress=False))
    waiting = {job.id for job in pending}
    first = [job for job in pending if not any(n in waiting for n in job.needs)]
    second = [job for job in pending if any(n in waiting for n in job.needs)]
    folder = executor_folder(study)
    folder.mkdir(parents=True, exist_ok=True)
    params_path = str(Path(study.params_path).resolve())
    name = f"pedlib-{study.params.study}"
    submission = Submission(executor, [], [], folder)
    dependency = None
    for jobs in (first, second):
        if not jobs:
            continue
        ids = [job.id for job in jobs]
        if executor == "slurm":
            array = _executor("slurm", folder, settings, name, dependency).map_array(
                runner, [params_path] * len(ids), ids)
            dependency = f"afterany:{array[0].job_id.split('_')[0]}"
        else:  # waves of array_parallelism processes; a second array waits for the first
            array = []
            for start in range(0, len(ids), settings.array_parallelism):
                wave = ids[start:start + settings.array_parallelism]
                jobs_ = _executor("local", folder, settings, name).map_array(runner, [params_path] * len(wave), wave)
                for job in jobs_:
                    job.wait()
                array.extend(jobs_)
        submission.arrays.append(array)
        submission.job_ids.append(ids)
    if submission.count:
        _log_submission(folder, study, submission, settings)
    if wait and executor == "slurm":
        submission.wait()
    return submission


def _log_submission(folder: Path, study, submission: Submission, settings: SlurmParams):
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "study": study.params.study,
             "executor": submission.executor, "settings": asdict(settings),
             "arrays": [{"array": str(jobs[0].job_id).split("_")[0] if jobs else None, "jobs": ids}
                        for jobs, ids in zip(submission.arrays, submission.job_ids)]}
    with open(folder / "submissions.jsonl", "a") as handle:
        handle.write(json.dumps(entry) + "\n")
