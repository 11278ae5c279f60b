"""How much of a `pedlib rank` run a rerun repeats after Ctrl-C: the rerun's wall time over an
unbroken run's, for an interrupt at 60% of the run.

    .venv/bin/python benchmarks/bench_resume.py [--repeats 2] [--at 0.6]

Three pocket models on Flowers-12's train images (480), from ../shared/assets; each run is a
fresh `pedlib rank` process (imports, model building, decoding included), the interrupt a
SIGINT like Ctrl-C. A rerun that redid nothing would take the fixed start-up plus the 40% left.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "assets" / "data" / "flowers12" / "train"
MODELS = ["mobilenet_v2_1.0_224", "mobilenet_v1_0.25_128", "mlperf_resnet_large"]


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "pedlib", "rank", str(DATA), "--models", *MODELS, "--out", str(out), "--quiet"]


def _timed(out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(_command(out), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--at", type=float, default=0.6, help="interrupt at this share of an unbroken run")
    args = parser.parse_args()
    env = dict(os.environ, PEDLIB_ASSETS=os.environ.get("PEDLIB_ASSETS") or str(DATA.parents[2]))
    os.environ.update(env)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            whole = _timed(Path(scratch) / f"whole{repeat}")
            out = Path(scratch) / f"cut{repeat}"
            started = time.perf_counter()
            process = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(max(0.0, args.at * whole - (time.perf_counter() - started)))
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate()
            interrupted = time.perf_counter() - started
            rerun = _timed(out)
            last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            rows.append((repeat, whole, interrupted, rerun, rerun / whole, process.returncode, last[:60]))
    print(f"pedlib rank, {len(MODELS)} models on Flowers-12 train; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores")
    print("| repeat | unbroken (s) | interrupted at (s) | rerun (s) | rerun / unbroken | exit | last line |")
    print("|--:|--:|--:|--:|--:|--:|:--|")
    for repeat, whole, interrupted, rerun, ratio, code, last in rows:
        print(f"| {repeat} | {whole:.1f} | {interrupted:.1f} | {rerun:.1f} | {ratio:.2f} | {code} | {last} |")


if __name__ == "__main__":
    main()
