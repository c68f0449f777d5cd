"""tools.bench_step: the train-step throughput benchmark, on the 8 fake CPU devices."""

import itertools
import math
import subprocess
import sys

from suite.workloads.resnet import ResNetWorkload
from tests.helpers import ROOT
from tools import bench_step


def test_timed_steps_train_and_the_compile_reports_memory():
    workload = ResNetWorkload()
    cfg = workload.config("tiny")
    cfg.global_batch_size, cfg.compute_dtype = 64, "float32"
    r = bench_step.bench(workload, cfg, steps=6, warmup=1)
    assert r["device"] == "8xcpu" and r["global_batch"] == 64 and r["dtype"] == "float32"
    # bench feeds one fixed batch every step, so the real optimizer fits its random labels
    # and the loss falls each step. Measured (8 CPU devices): 2.311, 2.309, 2.304, 2.295,
    # 2.281, 2.264. Steps that skipped the update would repeat one loss, and fresh random
    # labels (uniform over the 10 classes) each step could not be learnt below ln(10) = 2.303.
    losses = r["losses"]
    assert len(losses) == 6 and r["loss"] == losses[-1]
    assert all(b < a for a, b in itertools.pairwise(losses)), losses
    assert losses[-1] < math.log(10) - 0.02, losses
    assert r["mfu"] is None  # no known peak for a CPU
    # Measured: XLA temp memory 4,582,392 bytes at batch 64.
    assert r["compile_s"] > 0 and r["temp_bytes"] > 0 and r["step_ms"] > 0
    # On a CPU XLA sees every convolution and dot, so its FLOPs of one device's step match
    # the hand count within a few percent (measured 1.04x); no peak, so no roofline.
    assert r["device_flops"] == workload.flops_per_example(cfg) * 64 / 8
    assert 0.9 < r["xla_flops"] / r["device_flops"] < 1.2, r
    assert r["bytes_accessed"] > 0 and r["bound"] is None


def test_roofline_line_reads_measured_mfu_against_the_bound():
    r = {"device_flops": 9.89e12, "xla_flops": None, "bytes_accessed": 96e9,
         "bound": "bandwidth", "bound_step_ms": 20.0, "bound_mfu": 0.5, "mfu": 0.3}
    assert bench_step.roofline_line(r) == (
        "per device and step: 9,890.00 GFLOP by hand count, XLA counts n/a FLOP and "
        "96.00 GB accessed; roofline: bandwidth-bound, step >= 20.00 ms, MFU <= 50.0% "
        "(measured 30.0%: 60% of the bound)")


def test_config_overrides_reach_the_step():
    """--config.* through suite.main's parser: bfloat16 compute and a batch of 32."""
    proc = subprocess.run([sys.executable, "-m", "tools.bench_step", "--workload=resnet",
                           "--preset=tiny", "--config.global_batch_size=32",
                           "--config.compute_dtype=bfloat16", "--steps=2", "--warmup=0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resnet/tiny on 8xcpu, bfloat16, global batch 32:" in proc.stdout


def test_bad_preset_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "tools.bench_step", "--preset=huge"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown preset 'huge'; choose one of reference, tiny")
