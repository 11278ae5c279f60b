"""The fine-tuning jobs on a cluster: SLURM job arrays through submitit, or local processes.

``pedlib finetune STUDY --executor slurm`` submits every pending job of the study
(:mod:`pedlib.finetune_stage`) as a SLURM job array (one task per job, a GPU each; partition,
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

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import submitit

__all__ = ["SlurmParams", "JobRunner", "Submission", "submit", "executor_folder"]


@dataclass(frozen=True)
class SlurmParams:
    """Cluster settings of the fine-tuning jobs (``groundtruth.finetune.slurm``).

    Attributes
    ----------
    partition : str, optional
        The SLURM partition (default: the cluster's).
    gpus_per_task : int
        GPUs per job (0 for CPU-only jobs).
    cpus_per_task : int
        CPUs per job: DataLoader workers need them (``groundtruth.finetune.workers``).
    time_minutes : int
        Time limit of one job; a job that reaches it is requeued and resumes from its checkpoint.
    mem_gb : float
        Memory per job.
    array_parallelism : int
        At most this many jobs of an array run at once (SLURM's ``--array=...%N``); for
        ``--executor local``, how many processes run at once.
    use_srun : bool
        Start the job with ``srun`` inside the batch script (submitit's default).
    setup : list of str
        Shell lines run before the job (``module load cuda``, ``source venv/bin/activate``).
    additional : dict
        Any other ``#SBATCH`` option, e.g. ``{account: mylab, qos: high}``.
    """

    partition: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    time_minutes: int = 180
    mem_gb: float = 32.0
    array_parallelism: int = 64
    use_srun: bool = True
    setup: tuple[str, ...] = ()
    additional: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.gpus_per_task < 0 or self.cpus_per_task < 1 or self.time_minutes < 1 or self.mem_gb <= 0 \
                or self.array_parallelism < 1:
            raise ValueError("slurm: gpus_per_task must be >= 0; cpus_per_task, time_minutes, mem_gb and "
                             "array_parallelism must be positive")


class JobRunner(submitit.helpers.Checkpointable):
    """Runs one fine-tuning job of a study in a cluster task; on preemption or time-out
    submitit requeues it (``Checkpointable``) and the job resumes from its own checkpoint."""

    def __call__(self, params_path: str, job_id: str) -> dict:
        from .study import Study

        study = Study.load(params_path, progress=False)
        job = study.finetune_job(job_id)
        study.run_finetune_job(job)
        return {"job": job_id, "path": str(job.path), "done": study.finetune_job_done(job)}


@dataclass
class Submission:
    """What :func:`submit` sent: the submitit jobs of each array, and the study's job ids."""

    executor: str
    arrays: list[list]  # submitit jobs per array, in submission order
    job_ids: list[list[str]]  # the study's job ids, same shape
    folder: Path

    @property
    def count(self) -> int:
        return sum(map(len, self.job_ids))

    def wait(self) -> list[str]:
        """Wait for every job; returns the study job ids that failed (their errors are in
        the logs under ``folder``)."""
        failed = []
        for jobs, ids in zip(self.arrays, self.job_ids):
            for job, job_id in zip(jobs, ids):
                try:
                    job.result()
                except Exception:  # submitit re-raises the task's error; its log has the details
                    failed.append(job_id)
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
    pending = study.pending_finetune_jobs()
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
                JobRunner(), [params_path] * len(ids), ids)
            dependency = f"afterany:{array[0].job_id.split('_')[0]}"
        else:  # waves of array_parallelism processes; a second array waits for the first
            array = []
            for start in range(0, len(ids), settings.array_parallelism):
                wave = ids[start:start + settings.array_parallelism]
                jobs_ = _executor("local", folder, settings, name).map_array(JobRunner(), [params_path] * len(wave), wave)
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
