"""Progress reports that read well wherever the work runs.

Three modes, chosen by ``PEDLIB_PROGRESS`` (``TQDM_DISABLE=1`` means ``off``):

* ``bar`` (default): a tqdm bar on stderr, for a terminal or an interactive notebook;
* ``terminal``: set by pedlib's notebook runner (``make reproduce``). The notebook runs in a
  kernel whose own stderr is the terminal that launched the run, so each update is written
  there as one line (what, done of total, elapsed, ETA), and the executed notebook keeps a
  single summary line per finished task instead of hundreds of redrawn bars;
* ``off``: nothing.

Every long loop of pedlib goes through :func:`progress`; a nested one (``leave=False``,
e.g. the images of one model inside the stage's loop over models) reports only in ``bar``
mode, so the terminal shows the stages, not every inner loop.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TextIO

__all__ = ["progress", "advance", "mode", "LineProgress", "format_seconds", "notice"]


def mode() -> str:
    """The progress mode (see the module docstring)."""
    if os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return "off"
    chosen = os.environ.get("PEDLIB_PROGRESS", "bar").lower()
    return chosen if chosen in ("bar", "terminal", "off") else "bar"


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class LineProgress:
    """A tqdm-like counter that writes one line per update to ``stream``.

    Lines look like ``[score] 12/85 cells | 1:02 elapsed | ETA 6:30 | mobilenet_v2 on lfw``;
    updates closer than ``min_interval`` seconds are merged (the last one is always written).
    On ``close`` a summary line (``[score] 85/85 cells in 7:14``) also goes to ``summary``
    (the notebook's output), when given.

    ``work_total``: the work of all items in some unit (e.g. images x model cost), when the
    items differ in size; each ``update(work=...)`` then adds its item's work and the ETA
    comes from the work left at the rate of the work done, not from the count of items.
    """

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", stream: TextIO | None = None, summary: TextIO | None = None,
                 min_interval: float = 2.0, work_total: float | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else (sys.__stderr__ or sys.stderr)
        self.summary = summary
        self.min_interval = min_interval
        self.n = 0
        self.work_total, self.work_done = work_total, 0.0
        self.postfix = ""
        self.started = time.perf_counter()
        self._last_write = -float("inf")
        self._first: tuple[int, float] | None = None  # (n, time) of the first update
        self._closed = False

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"[{self.desc}] {done} {self.unit}", f"{format_seconds(elapsed)} elapsed"]
        if self.work_total and 0 < self.work_done < self.work_total:
            # items of known, different sizes (long next to the start-up, several running at
            # once): the rate of all the work done over all the time, as each finished item
            # was under way since the start or since an earlier one ended
            parts.append(f"ETA {format_seconds(elapsed / self.work_done * (self.work_total - self.work_done))}")
        elif self.total and self._first is not None and self._first[0] < self.n < self.total:
            # the rate from the first update on: the time before it is start-up (worker
            # processes, a model's first load), not work, and would make the first ETA absurd
            since, done = time.perf_counter() - self._first[1], self.n - self._first[0]
            parts.append(f"ETA {format_seconds(since / done * (self.total - self.n))}")
        if self.postfix:
            parts.append(self.postfix)
        return " | ".join(parts)

    def _write(self, force: bool = False):
        now = time.perf_counter()
        if force or now - self._last_write >= self.min_interval:
            try:
                self.stream.write(self._line() + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or detached terminal: progress is optional
                pass
            self._last_write = now

    def update(self, n: int = 1, work: float | None = None):
        self.n += n
        if work is not None:
            self.work_done += work
        if self._first is None:
            self._first = (self.n, time.perf_counter())
        self._write(force=self.total is not None and self.n >= self.total)

    def set_postfix_str(self, text: str, refresh: bool = True):
        self.postfix = text

    def set_description(self, desc: str, refresh: bool = True):
        self.desc = desc

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self.n and (self.total is None or self.n < self.total):
            self._write(force=True)
        if self.summary is not None:
            elapsed = format_seconds(time.perf_counter() - self.started)
            done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
            self.summary.write(f"[{self.desc}] {done} {self.unit} in {elapsed}\n")

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc):
        self.close()


class _Silent(LineProgress):
    def _write(self, force: bool = False):
        pass

    def close(self):
        self._closed = True


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", enabled: bool = True, leave: bool = True, work_total: float | None = None):
    """A progress counter for a loop: a tqdm bar, terminal lines or nothing (see :func:`mode`).

    Use as ``for item in progress(items, desc="score", unit="cells")`` or as a context manager
    with ``update(n)``. ``enabled=False`` silences it (``Study(progress=False)``); a nested
    counter (``leave=False``) reports only in ``bar`` mode. ``work_total``: see
    :class:`LineProgress` (advance with :func:`advance`).
    """
    chosen = mode() if enabled else "off"
    if chosen == "terminal" and not leave:
        chosen = "off"
    if chosen == "bar":
        from tqdm.std import tqdm  # the plain bar: no ipywidgets needed in a notebook

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
    if chosen == "terminal":
        return LineProgress(iterable, total=total, desc=desc, unit=unit, summary=sys.stdout, work_total=work_total)
    return _Silent(iterable, total=total, desc=desc, unit=unit)


def advance(bar, work: float | None = None) -> None:
    """One item done, of ``work`` (a tqdm bar counts the item alone)."""
    if isinstance(bar, LineProgress):
        bar.update(1, work=work)
    else:
        bar.update()


def notice(message: str) -> None:
    """A warning for the person at the terminal of ``make reproduce``: in ``terminal`` mode one
    ``pedlib: warning: ...`` line there (the kernel's own stderr goes to the notebook)."""
    if mode() == "terminal":
        stream = sys.__stderr__ or sys.stderr
        try:
            stream.write(f"pedlib: warning: {message}\n")
            stream.flush()
        except (OSError, ValueError):
            pass
