"""Wall time and peak memory of every feature metric, with and without PED.

    python benchmarks/bench_metrics.py                 # the full grid (long: see --budget)
    python benchmarks/bench_metrics.py --targets       # only N=50k, D=2048, C=100 (the speed targets)
    python benchmarks/bench_metrics.py --n 1000 --d 256 --c 10 --metrics logme sfda
    python benchmarks/bench_metrics.py --ratios        # only PED's cost relative to LogME (two targets)

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


def sensitivity_variants():
    """The pocket study's PED set for one cell: the main setting and the 15 other settings of
    the sensitivity grid (nsigma x time_step), all with one reference."""
    variants = []
    for nsigma in (0.3, 0.6, 1.0, 2.0):
        for time_step in (0.05, 0.1, 0.2, 0.4):
            main = (nsigma, time_step) == (0.6, 0.1)
            name = "ped" if main else f"ped:nsigma={nsigma},time_step={time_step}"
            variants.append((name, "source", dict(pedlib.ped.DEFAULTS, nsigma=nsigma, time_step=time_step)))
    return variants


def print_ratios(repeat: int) -> None:
    """PED's cost relative to plain LogME, measured side by side in this process (best of
    ``repeat``): one PED setting at N=50k, D=2048, C=100, and the pocket study's PED set
    for one cell (main + 15 sensitivity settings, with the plain score) at N=20k, D=1024, C=50."""
    from pedlib.scoring import score_features

    def side_by_side(first, second):
        """Best wall time of each over ``repeat`` alternating calls (the host's load drifts)."""
        best = [float("inf"), float("inf")]
        for _ in range(repeat):
            for i, function in enumerate((first, second)):
                start = time.perf_counter()
                function()
                best[i] = min(best[i], time.perf_counter() - start)
        return best

    print("| what | N | D | C | LogME (s) | with PED (s) | ratio | target |")
    print("|---|---|---|---|---|---|---|---|")
    x, y, g = make_features(50_000, 2048, 100)
    plain, with_ped = side_by_side(lambda: pedlib.metrics.logme(x, y),
                                   lambda: pedlib.score(x, y, "logme", ped=True, reference=g))
    print(f"| LogME + PED vs LogME | 50000 | 2048 | 100 | {plain:.2f} | {with_ped:.2f} "
          f"| {with_ped / plain:.2f}x | <= 1.05x |")
    del x, y, g
    x, y, g = make_features(20_000, 1024, 50)
    variants = sensitivity_variants()
    plain, settings = side_by_side(lambda: pedlib.metrics.logme(x, y),
                                   lambda: score_features(x, y, ["logme"], {}, variants, {"source": g},
                                                          sensitivity_metrics=["logme"]))
    print(f"| LogME + main PED + 15 sensitivity settings vs LogME | 20000 | 1024 | 50 | {plain:.2f} "
          f"| {settings:.2f} | {settings / plain:.2f}x | <= 4x |")
    sys.stdout.flush()


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
    parser.add_argument("--ratios", action="store_true",
                        help="only the ratios of PED's cost to plain LogME's, then stop")
    parser.add_argument("--no-ratios", action="store_true", help="skip the ratios table")
    args = parser.parse_args(argv)
    if args.targets:
        args.n, args.d, args.c = [50_000], [2048], [100]

    print(f"# pedlib {pedlib.__version__} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, python {platform.python_version()}")
    if not args.no_ratios:
        print_ratios(args.repeat)
        if args.ratios:
            return 0
    print()
    print("| N | D | C | metric | time (s) | peak (x features) | PED+metric (s) | PED decline (s) "
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
        steps = moved.steps
        del moved
        for name in args.metrics:
            if any(m == name and n >= on and d >= od for m, on, od in over_budget):
                print(f"| {n} | {d} | {c} | {name} | skipped (> {args.budget:.0f} s at a smaller size) | | | | | |")
                continue
            metric = pedlib.metrics.get(name)
            try:
                _, seconds, peak = measure(lambda: metric(x, y), args.repeat)
                _, ped_metric_seconds, _ = measure(lambda: pedlib.ped.score(x, y, name, g), args.repeat)
            except (ValueError, MemoryError) as error:
                print(f"| {n} | {d} | {c} | {name} | failed: {error} | | | | | |")
                continue
            if seconds > args.budget:
                over_budget.add((name, n, d))
            print(f"| {n} | {d} | {c} | {name} | {seconds:.2f} | {peak / matrix_bytes:.2f} "
                  f"| {ped_metric_seconds:.2f} | {ped_seconds:.2f} "
                  f"| {ped_peak / matrix_bytes:.2f} | {steps} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
