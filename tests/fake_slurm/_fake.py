"""Shared state of the fake SLURM commands (tests only): job ids, task states, output patterns.

The state lives in ``$FAKE_SLURM_STATE`` (a folder): ``next_id`` and one ``<job>_<task>.state``
file per array task holding its SLURM state (COMPLETED, FAILED, PREEMPTED, CANCELLED).
"""

import os
import re
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SLURM_STATE", "/tmp/fake-slurm"))


def next_job_id() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    counter = STATE / "next_id"
    value = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(value + 1))
    return value


def set_state(job: str, state: str):
    (STATE / f"{job}.state").write_text(state)


def states() -> dict[str, str]:
    return {p.name[:-len(".state")]: p.read_text().strip() for p in STATE.glob("*.state")}


def expand(pattern: str, env: dict) -> str:
    """SLURM's filename patterns: %A array job, %a array task, %j job, %t task, %% percent."""
    values = {"A": env.get("SLURM_ARRAY_JOB_ID", env.get("SLURM_JOB_ID", "")),
              "a": env.get("SLURM_ARRAY_TASK_ID", "0"), "j": env.get("SLURM_JOB_ID", ""),
              "t": env.get("SLURM_PROCID", "0"), "%": "%"}
    return re.sub(r"%([Aajt%])", lambda m: values[m.group(1)], pattern)
