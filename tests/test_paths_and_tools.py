"""The other ways in: real ImageNet format, synthetic data without TensorFlow, tools.check_log."""

import glob
import os
import subprocess
import sys

import pytest

from suite import compliance
from tests.helpers import ROOT, metadata, read_log, run_main, run_main_without, values
from tools import make_tiny_imagenet


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def test_reference_preset_reads_imagenet_in_its_real_format(tmp_path, cache):
    # A tiny ImageNet in the ILSVRC2012 tar layout, prepared by tfds's own builder: the
    # full benchmark's reader, model (ResNet-50) and optimizer, on data a laptop can hold.
    data_dir = make_tiny_imagenet.make(str(tmp_path / "imagenet"))
    workdir = str(tmp_path / "run")
    proc = run_main([f"--data_dir={data_dir}", "--division=open", f"--workdir={workdir}",
                     "--config.global_batch_size=8", "--config.max_epochs=1",
                     "--config.image_size=64", "--config.eval_offset_epochs=1"], cache)
    assert "resnet (reference, open division, seed 0)" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 1  # one epoch on 40 images reaches no 75.9 %
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert values(events, "train_samples") == [40]
    assert values(events, "eval_samples") == [20]
    assert values(events, "global_batch_size") == [8]
    assert metadata(events, "run_stop")[0]["status"] == "aborted"
    assert compliance.check(os.path.join(workdir, "mlperf_log.txt"), "4.0.0").passed


def test_synthetic_run_needs_no_tensorflow_and_is_never_a_result(tmp_path, cache):
    workdir = str(tmp_path / "synthetic")
    proc = run_main_without(["tensorflow", "tensorflow_datasets"],
                            ["--data=synthetic", f"--workdir={workdir}", "--config.max_epochs=2"],
                            cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run_stop aborted: synthetic data: throughput only" in proc.stdout
    assert "samples/s" in proc.stdout
    # TensorBoard's scalars too, written without TensorFlow.
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert values(events, "jaxperf_data") == ["synthetic"]
    assert metadata(events, "run_stop")[0]["status"] == "aborted"
    assert compliance.check(os.path.join(workdir, "mlperf_log.txt"), "4.0.0").passed


def _check_log(path):
    return subprocess.run([sys.executable, "-m", "tools.check_log", path], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_check_log_passes_a_good_log_and_explains_a_bad_one(tmp_path, cache):
    workdir = str(tmp_path / "run")
    proc = run_main(["--data=synthetic", f"--workdir={workdir}", "--config.max_epochs=1"], cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    good = _check_log(workdir)
    assert good.returncode == 0 and "PASS" in good.stdout, good.stdout + good.stderr
    lines = open(os.path.join(workdir, "mlperf_log.txt")).read().splitlines(keepends=True)
    broken = tmp_path / "broken.txt"
    broken.write_text("".join(x for x in lines if '"key": "run_start"' not in x))
    bad = _check_log(str(broken))
    assert bad.returncode == 1
    assert "FAIL" in bad.stdout and "Required EXACTLY_ONE occurrence of 'run_start'" in bad.stdout


def test_check_log_on_a_missing_log_is_one_line(tmp_path):
    proc = _check_log(str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no MLPerf log at")
    assert len(proc.stderr.strip().splitlines()) == 1
