"""tools.bench_input: the training input pipeline's throughput, and what it takes to feed a
device, measured on a real-format tiny ImageNet."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from common.errors import UserError
from suite import registry
from tests.helpers import ROOT, one_line_error
from tools import bench_input, make_tiny_imagenet


def test_bench_input_on_tiny_imagenet_reports_consistent_figures(tmp_path):
    data_dir = make_tiny_imagenet.make(str(tmp_path / "imagenet"), classes=2,
                                       train_per_class=3, val=2)
    out = tmp_path / "figures.json"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXPERF_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench_input", "--workload=resnet",
         f"--data_dir={data_dir}", "--config.global_batch_size=8", "--batches=3",
         "--warmup_batches=1", "--cores=1", "--device_rate=8500", f"--json={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert (r["workload"], r["unit"], r["batch"], r["batches"], r["cores"]) == (
        "resnet", "images", 8, 3, 1)
    assert r["samples_per_s"] == pytest.approx(3 * 8 / r["seconds"], rel=1e-12)
    assert r["samples_per_s_per_core"] == pytest.approx(r["samples_per_s"] / 1, rel=1e-12)
    assert r["cores_to_feed"] == math.ceil(8500 / r["samples_per_s_per_core"])
    # Bytes as the arrays hold them, whatever dtype the pipeline emits its images in.
    image, label = r["batch_layout"]["image"], r["batch_layout"]["label"]
    assert image["shape"] == [8, 224, 224, 3] and label["shape"] == [8]
    assert image["bytes"] == 8 * 224 * 224 * 3 * np.dtype(image["dtype"]).itemsize
    assert r["bytes_per_batch"] == image["bytes"] + label["bytes"]
    assert r["bytes_per_s"] == pytest.approx(3 * r["bytes_per_batch"] / r["seconds"])
    printed = proc.stdout
    assert f"{r['samples_per_s']:,.1f} images/s, " in printed
    assert f"{r['samples_per_s_per_core']:,.1f} images/s per core" in printed
    assert f"needs {r['cores_to_feed']} such cores" in printed
    assert f"image {image['dtype']}[8, 224, 224, 3] {image['bytes']:,} B" in printed


def test_batch_layout_counts_each_array_as_it_is():
    batch = {"image": np.zeros((4, 2, 2, 3), np.uint8), "label": np.zeros(4, np.int32)}
    assert bench_input.batch_layout(batch) == {
        "image": {"shape": [4, 2, 2, 3], "dtype": "uint8", "bytes": 48},
        "label": {"shape": [4], "dtype": "int32", "bytes": 16}}


def test_cores_to_feed_rounds_up():
    assert bench_input.cores_to_feed(8500, 196.0) == 44
    assert bench_input.cores_to_feed(400, 200.0) == 2
    assert bench_input.cores_to_feed(401, 200.0) == 3


def test_bad_input_is_one_line():
    one_line_error(lambda: bench_input.pin_cores(len(os.sched_getaffinity(0)) + 1),
                   "--cores must be between 0 and")
    resnet = registry.get("resnet")
    one_line_error(lambda: bench_input.bench(resnet, None, None, batches=0, warmup=1, cores=0),
                   "--batches and --warmup_batches must be >= 1")
    minigo = registry.get("minigo")
    with pytest.raises(UserError, match="no input pipeline to measure"):
        bench_input.bench(minigo, None, None, batches=1, warmup=1, cores=0)
