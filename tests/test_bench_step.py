"""tools.bench_step: the train-step throughput benchmark, on the 8 fake CPU devices."""

import subprocess
import sys

import pytest

from suite.workloads.resnet import ResNetWorkload
from tests.helpers import ROOT
from tools import bench_step


def test_throughput_figures_are_consistent():
    r = bench_step.bench("resnet", "tiny", 64, "float32", steps=3, warmup=1)
    assert r["device"] == "8xcpu" and r["global_batch"] == 64 and r["dtype"] == "float32"
    assert r["samples_per_s"] * r["step_ms"] / 1e3 == pytest.approx(64)
    cfg = ResNetWorkload().config("tiny")
    flops = ResNetWorkload().flops_per_example(cfg)
    assert r["tflops_per_s"] == pytest.approx(flops * r["samples_per_s"] / 1e12)
    assert r["mfu"] is None  # no known peak for a CPU
    assert r["compile_s"] > 0 and r["temp_bytes"] > 0


def test_bad_preset_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "tools.bench_step", "--preset=huge"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown preset 'huge'; choose one of reference, tiny")
