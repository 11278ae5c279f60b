"""Independent cells of a stage in parallel processes, with results in job order.

Linear probes, score cells and evaluation rows are independent of each other. Each runs in a
worker process exactly as it would in the main one (same code, one BLAS thread), and the
results come back in the order of the jobs, so a table is bit-identical for any number of
processes. Workers are *spawned* (not forked): a forked child of a process that has started
OpenMP or BLAS threads can deadlock, and a notebook kernel has. A spawned worker normally
re-imports the parent's ``__main__``, which re-runs a user's script that has no
``if __name__ == "__main__"`` guard; the jobs only need pedlib's own functions, so the pool is
started with ``__main__``'s file and spec hidden, as in an interactive session.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from typing import Any, Callable, Sequence

from .progress import advance, progress

__all__ = ["WorkerPool", "map_jobs", "default_processes"]


def default_processes() -> int:
    """The cores this process may use (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` for the duration, then restored: a float32
    convolution's last bits depend on how its work is split, so a fixed count keeps features and
    fine-tuning the same on every machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _HiddenMain:
    """Hide ``__main__.__file__`` and ``__spec__`` while workers start (module docstring)."""

    _MISSING = object()

    def __enter__(self):
        self.main = sys.modules.get("__main__")
        self.saved = {name: self.main.__dict__.get(name, self._MISSING) for name in ("__file__", "__spec__")} \
            if self.main is not None else {}
        for name in self.saved:
            self.main.__dict__.pop(name, None)
        if self.saved:
            self.main.__spec__ = None
        return self

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is self._MISSING:
                self.main.__dict__.pop(name, None)
            else:
                self.main.__dict__[name] = value


def _quiet_worker(initializer, initargs):
    # Ctrl-C and a kernel's shutdown signal the whole process group: the main process
    # handles them (it cancels the pending jobs); workers end when it closes the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["PEDLIB_PROGRESS"] = "off"  # the main process reports progress
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if initializer is not None:
        initializer(*initargs)


class WorkerPool:
    """Spawned worker processes kept for several :meth:`map` calls (a stage's cells, then the
    next stage's): workers import pedlib once (seconds), not once per stage.

    ``initializer(*initargs)`` runs once in each worker. With ``processes <= 1`` there are no
    workers and :meth:`map` runs the jobs here, in order.
    """

    def __init__(self, processes: int | None = None, initializer: Callable | None = None,
                 initargs: tuple = ()):
        self.processes = processes or default_processes()
        self.initializer, self.initargs = initializer, initargs
        self._executor: ProcessPoolExecutor | None = None
        self._initialized_here = False

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_quiet_worker, initargs=(self.initializer, self.initargs))
        return self._executor

    def map(self, function: Callable[..., Any], jobs: Sequence[tuple], *, desc: str = "",
            unit: str = "jobs", show: bool = True, after: Sequence[Sequence[int]] | None = None,
            work: Sequence[float] | None = None) -> list:
        """``[function(*job) for job in jobs]``; ``function`` must be an importable
        module-level callable (pickled by reference). An exception in a job cancels the jobs
        not yet started and is raised here.

        ``after[i]`` lists the jobs that must finish before job ``i`` is handed out (each
        earlier in ``jobs``, which is also the order here without workers); the others go
        out at once, in order. ``work[i]``: job ``i``'s size, for the progress ETA."""
        jobs = list(jobs)
        results: list = [None] * len(jobs)
        if not jobs:
            return results
        after = [set(a) for a in after] if after is not None else [set() for _ in jobs]
        if len(after) != len(jobs) or any(j >= i or j < 0 for i, a in enumerate(after) for j in a):
            raise ValueError("after must list, for each job, earlier jobs only")
        bar = progress(total=len(jobs), desc=desc, unit=unit, enabled=show,
                       work_total=float(sum(work)) if work is not None else None)
        size = (lambda i: work[i]) if work is not None else (lambda i: None)
        try:
            if self.processes <= 1 or len(jobs) == 1:
                if self.initializer is not None and not self._initialized_here:
                    self.initializer(*self.initargs)
                    self._initialized_here = True
                for i, job in enumerate(jobs):
                    results[i] = function(*job)
                    advance(bar, size(i))
                return results
            executor = self._start()
            waiting = [i for i in range(len(jobs)) if after[i]]
            with _HiddenMain():  # workers start on the first submissions
                pending = {executor.submit(function, *job): i for i, job in enumerate(jobs) if not after[i]}
            finished: set[int] = set()
            try:
                while pending:
                    # one pass over every future when nothing waits (a stage's many cells)
                    done = as_completed(list(pending)) if not waiting else \
                        wait(pending, return_when=FIRST_COMPLETED)[0]
                    for future in done:
                        i = pending.pop(future)
                        results[i] = future.result()
                        finished.add(i)
                        advance(bar, size(i))
                    for i in [i for i in waiting if after[i] <= finished]:
                        waiting.remove(i)
                        pending[executor.submit(function, *jobs[i])] = i
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            return results
        finally:
            bar.close()

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def map_jobs(function: Callable[..., Any], jobs: Sequence[tuple], *, processes: int | None = None,
             initializer: Callable | None = None, initargs: tuple = (), desc: str = "",
             unit: str = "jobs", show: bool = True) -> list:
    """``[function(*job) for job in jobs]`` in a one-off :class:`WorkerPool` of up to
    ``processes`` workers."""
    jobs = list(jobs)
    pool = WorkerPool(min(processes or default_processes(), max(len(jobs), 1)), initializer, initargs)
    try:
        return pool.map(function, jobs, desc=desc, unit=unit, show=show)
    finally:
        pool.close()
