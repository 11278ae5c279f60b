"""The fake scheduler's runner for one submitted job (started by the fake sbatch).

Waits for its dependency (``--dependency=afterany:N``: every task of job N ended) and for
submitit's task pickles, then runs each task's batch script with the SLURM variables set,
recording RUNNING, then COMPLETED or FAILED. Two ways to interrupt a task, each used once:

* FAKE_SLURM_PREEMPT=<glob>: the first task during which a file matching the glob appears is
  killed (SIGKILL to its process group), recorded as PREEMPTED, and requeued (run again from
  the start of its script), as SLURM does with preemption in requeue mode;
* FAKE_SLURM_KILL=<glob>: likewise killed, and recorded as FAILED for good (a node failure).
"""

import glob
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _fake  # noqa: E402

TERMINAL = {"COMPLETED", "FAILED", "PREEMPTED", "CANCELLED"}

job, script = int(sys.argv[1]), sys.argv[2]
text = open(script).read()
options = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", text, re.M))
names = sorted((n for n in _fake.states() if n.split("_")[0] == str(job)),
               key=lambda n: int(n.split("_")[1]) if "_" in n else 0)


def wait_for(condition, limit=120.0):
    deadline = time.time() + limit
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("fake scheduler: waited too long")
        time.sleep(0.02)


dependency = options.get("dependency", "")
if dependency.startswith("afterany:"):
    parents = dependency.split(":", 1)[1].split(":")
    wait_for(lambda: all(state in TERMINAL for name, state in _fake.states().items()
                         if name.split("_")[0] in parents))
submit_folder = re.search(r"-m submitit\.core\._submit (\S+)", text)
interrupts = {kind: (os.environ.get(f"FAKE_SLURM_{kind}"), _fake.STATE / kind.lower())
              for kind in ("PREEMPT", "KILL")}


def run(env, out, err):
    """Run the script once; returns its exit code, or "PREEMPT" / "KILL" if it was interrupted."""
    with open(out, "a") as stdout, open(err, "a") as stderr:
        process = subprocess.Popen(["bash", script], env=env, stdout=stdout, stderr=stderr,
                                   start_new_session=True)
        while process.poll() is None:
            for kind, (pattern, used) in interrupts.items():
                if pattern and not used.exists() and glob.glob(pattern):
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    used.write_text(name)
                    return kind
            time.sleep(0.005)
    return process.returncode


for name in names:
    task = name.split("_")[1] if "_" in name else None
    env = dict(os.environ, SLURM_JOB_ID=str(job) if task is None else str(job * 1000 + int(task)),
               SLURM_NTASKS="1", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0",
               SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="localhost")
    if task is not None:
        env.update(SLURM_ARRAY_JOB_ID=str(job), SLURM_ARRAY_TASK_ID=task)
    if submit_folder:  # submitit puts each task's pickle in place right after sbatch returns
        folder = submit_folder.group(1).strip("'\"").replace("%j", name)
        wait_for(lambda: os.path.exists(os.path.join(folder, f"{name}_submitted.pkl")))
    out = _fake.expand(options.get("output", "slurm-%j.out"), env)
    err = _fake.expand(options.get("error", out), env)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    _fake.set_state(name, "RUNNING")
    outcome = run(env, out, err)
    if outcome == "PREEMPT":
        _fake.set_state(name, "PREEMPTED")
        with open(_fake.STATE / "requeued", "a") as handle:
            handle.write(name + "\n")
        _fake.set_state(name, "RUNNING")
        outcome = run(env, out, err)
    _fake.set_state(name, "COMPLETED" if outcome == 0 else "FAILED")
