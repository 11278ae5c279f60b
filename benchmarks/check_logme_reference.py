"""``logme_reference`` against a literal transcription of the reference code on every cached
train feature set of a study, at 1 and 2 BLAS threads.

    .venv/bin/python benchmarks/check_logme_reference.py            # results/pocket/features
    .venv/bin/python benchmarks/check_logme_reference.py --study smoke

Prints one row per (model, target): N, D, the features' numerical rank, the reference code's
score (``tests/oracles.py``: its SVD branches and 1e-10 cut-off, one class at a time),
``logme_reference`` and ``logme``, their relative differences, and the largest change of
``logme_reference`` between 1 and 2 threads. Needs the study's features (``make extract``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from oracles import logme_reference_literal  # noqa: E402

from pedlib.metrics import logme, logme_reference  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="pocket")
    args = parser.parse_args(argv)
    files = sorted((ROOT / "results" / args.study / "features").glob("*/*-train.npz"))
    if not files:
        print(f"no train features under results/{args.study}/features; run `make extract STUDY={args.study}` first")
        return 1
    print("| model | target | N | D | rank | reference code | logme_reference | rel. diff | logme "
          "| 1 vs 2 threads |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for path in files:
        with np.load(path) as data:
            x, y = data["features"].astype(np.float64), data["labels"]
        expected, _ = logme_reference_literal(x, y)
        values = []
        for threads in (1, 2):
            with threadpool_limits(threads):
                values.append(logme_reference(x, y))
        difference = abs(values[0] - expected) / abs(expected)
        worst = max(worst, difference)
        print(f"| {path.parent.name} | {path.name.removesuffix('-train.npz')} | {x.shape[0]} | {x.shape[1]} "
              f"| {np.linalg.matrix_rank(x)} | {expected:.6f} | {values[0]:.6f} | {difference:.1e} "
              f"| {logme(x, y):.6f} | {abs(values[0] - values[1]) / abs(values[0]):.1e} |", flush=True)
    print(f"\nlargest relative difference from the reference code: {worst:.1e} over {len(files)} feature sets")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
