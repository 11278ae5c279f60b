"""The benchmark scripts run from a checkout with only the project's packages (GPU numbers
need a GPU; here the same code runs tiny on the CPU)."""

import subprocess
import sys

from conftest import ROOT


def test_gpu_benchmark_runs_end_to_end_and_prints_its_table(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu",
                           "--quick", "--keep", str(tmp_path / "bench")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    for what in ("raw inference, ResNet-50, fp32", "raw training steps", "Study.extract, 1 ResNet-50",
                 "Study.extract, 2 ResNet-50s from one decode", "sweep job training steps", "pedlib rank",
                 "LogME + PED of fp16 features vs fp32"):
        assert what in table, what
    assert table.count("| ") >= 12 * 4
