"""Wall time and peak memory of every feature metric, with and without PED.

    python benchmarks/bench_metrics.py                 # the full grid (long: see --budget)
    python benchmarks/bench_metrics.py --targets       # only N=50k, D=2048, C=100 (the speed targets)
    python benchmarks/bench_metrics.py --n 1000 --d 256 --c 10 --metrics logme sfda

Peak memory is the peak of numpy/Python allocations during the call (tracemalloc), shown
as a multiple of the float64 feature matrix. Within a metric, configurations run from
cheapest to dearest; once a call takes longer than --budget seconds the larger ones are
skipped for that metric (N-LEEP's full-covariance mixture and PARC's N^2 matrices grow fast).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

import pedlib

DEFAULT_N = (1_000, 10_000, 50_000)
DEFAULT_D = (256, 2048)
DEFAULT_C = (10, 100, 397)


def make_features(n: int, d: int, c: int, seed: int = 0):
    """Overlapping Gaussian classes (so PED has work to do) plus a generic reference sample."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=0.6, size=(c, d))
    labels = np.arange(n) % c
    features = centers[labels] + rng.normal(size=(n, d))
    reference = rng.normal(size=(min(n, 5_000), d))
    return features, labels, reference


def measure(function, repeat: int = 2):
    """(value, best wall time, peak traced bytes) over ``repeat`` calls.

    Best-of-N because a first touch of fresh memory can cost seconds on a virtual machine
    (the host backs the pages lazily); later calls measure the computation itself.
    """
    best = float("inf")
    for _ in range(repeat):
        tracemalloc.start()
        tracemalloc.reset_peak()
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return value, best, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=DEFAULT_N)
    parser.add_argument("--d", type=int, nargs="+", default=DEFAULT_D)
    parser.add_argument("--c", type=int, nargs="+", default=DEFAULT_C)
    parser.add_argument("--metrics", nargs="+", default=pedlib.metrics.available("features"))
    parser.add_argument("--budget", type=float, default=30.0,
                        help="skip a metric's larger configurations once one call exceeds this (s)")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many calls")
    parser.add_argument("--targets", action="store_true", help="only N=50000, D=2048, C=100")
    args = parser.parse_args(argv)
    if args.targets:
        args.n, args.d, args.c = [50_000], [2048], [100]

    print(f"# pedlib {pedlib.__version__} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, python {platform.python_version()}")
    print("| N | D | C | metric | time (s) | peak (x features) | PED+metric (s) | PED alone (s) "
          "| PED peak (x features) | PED steps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    over_budget: set[tuple[str, int, int]] = set()
    configs = sorted(itertools.product(args.n, args.d, args.c), key=lambda t: (t[0] * t[1], t[2]))
    for n, d, c in configs:
        if c * 2 > n:
            continue
        x, y, g = make_features(n, d, c)
        matrix_bytes = x.nbytes
        moved, ped_seconds, ped_peak = measure(lambda: pedlib.ped.decline(x, y, g), args.repeat)
        for name in args.metrics:
            if any(m == name and n >= on and d >= od for m, on, od in over_budget):
                print(f"| {n} | {d} | {c} | {name} | skipped (> {args.budget:.0f} s at a smaller size) | | | | | |")
                continue
            metric = pedlib.metrics.get(name)
            try:
                _, seconds, peak = measure(lambda: metric(x, y), args.repeat)
                _, moved_seconds, _ = measure(lambda: metric(moved.features, y), args.repeat)
            except (ValueError, MemoryError) as error:
                print(f"| {n} | {d} | {c} | {name} | failed: {error} | | | | | |")
                continue
            if seconds > args.budget:
                over_budget.add((name, n, d))
            print(f"| {n} | {d} | {c} | {name} | {seconds:.2f} | {peak / matrix_bytes:.2f} "
                  f"| {ped_seconds + moved_seconds:.2f} | {ped_seconds:.2f} "
                  f"| {ped_peak / matrix_bytes:.2f} | {moved.steps} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
