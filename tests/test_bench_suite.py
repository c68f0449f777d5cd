"""tools.bench_suite: every workload's step in one JSON and table, and the Flax peers."""

import json
import os
import subprocess
import sys

import pytest

from common.errors import UserError
from suite import registry
from tests.helpers import ROOT
from tools import bench_suite


def _run(args: list[str], timeout: int = 600, devices: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.run([sys.executable, "-m", "tools.bench_suite", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_reference_batch_per_device_class_and_overrides():
    resnet = registry.get("resnet")
    # On 8 GPUs the reference takes the submitters' 400 images per device...
    cfg = bench_suite.suite_config(resnet, "reference", [], "gpu", 8)
    assert cfg.global_batch_size == 3200
    # ...an override wins over it, and another workload's override is not applied here.
    cfg = bench_suite.suite_config(
        resnet, "reference", ["resnet:global_batch_size=16", "bert:global_batch_size=3"],
        "gpu", 8)
    assert cfg.global_batch_size == 16
    # A CPU keeps the preset's own batch (the tiny one here).
    assert bench_suite.suite_config(resnet, "tiny", [], "cpu", 1).global_batch_size == 128
    with pytest.raises(UserError, match="WORKLOAD:FIELD=VALUE"):
        bench_suite.suite_config(resnet, "tiny", ["global_batch_size=16"], "cpu", 1)
    with pytest.raises(UserError, match="unknown config field 'no_such_field'"):
        bench_suite.suite_config(resnet, "tiny", ["resnet:no_such_field=1"], "cpu", 1)


def test_a_failure_is_one_line():
    error = RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 123 bytes.\n"
                         "Buffer 1: ...\nBuffer 2: ...")
    assert bench_suite._reason(error) == (
        "RuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating 123 bytes.")


def test_tiny_suite_writes_json_and_table(tmp_path):
    """Four workloads on 2 devices, one of which cannot run (BERT's batch of 3 does not
    split over them) and one skipped (MiniGo's data is its own games): the others go on."""
    out = tmp_path / "suite.json"
    proc = _run(["--preset=tiny", "--workloads=transformer,bert,minigo,resnet",
                 "--override=transformer:global_batch_size=8",
                 "--override=bert:global_batch_size=3", "--override=resnet:global_batch_size=8",
                 "--steps=2", "--rounds=2", "--warmup=1", "--offline_batches=2",
                 f"--suite_json={out}"],
                devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {(r["workload"], r["measure"]): r for r in result["rows"]}
    assert list(rows) == [("transformer", "train_step"), ("bert", "train_step"),
                          ("minigo", "train_step"), ("resnet", "train_step"),
                          ("resnet", "offline")]
    assert result["devices"] == 2
    assert rows["bert", "train_step"]["status"] == "failed"
    assert "must divide evenly over 2" in rows["bert", "train_step"]["reason"]
    assert "\n" not in rows["bert", "train_step"]["reason"]
    assert rows["minigo", "train_step"]["status"] == "skipped"
    for key in (("transformer", "train_step"), ("resnet", "train_step")):
        r = rows[key]
        assert r["status"] == "ok" and r["global_batch"] == 8, r
        assert r["samples_per_s"] > 0 and r["compile_s"] > 0 and r["bytes_accessed"] > 0
        assert r["tflops_per_s"] == pytest.approx(
            r["device_flops"] * 2 / 8 * r["samples_per_s"] / 1e12)
        assert r["mfu"] is None and r["bound"] is None  # a CPU has no listed peak
    # Offline runs on one device at the step's per-device batch.
    offline = rows["resnet", "offline"]
    assert offline["status"] == "ok" and offline["global_batch"] == 4
    assert offline["samples_per_s"] > 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["workload", "measure", "batch", "samples/s"]
    assert any(line.startswith("bert") and "FAILED:" in line for line in lines)
    assert any(line.startswith("minigo") and "SKIPPED:" in line for line in lines)


def test_bad_override_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "suite.json"
    proc = _run(["--preset=tiny", "--workloads=resnet", "--override=resnet:image_size=x",
                 f"--suite_json={out}"], timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "image_size" in proc.stderr and not out.exists()


FLAX = os.environ.get("JAXPERF_FLAX_CHECKOUT")


@pytest.mark.skipif(not FLAX, reason="set JAXPERF_FLAX_CHECKOUT to a google/flax checkout "
                    "to compare with its examples")
def test_peers_alternate_with_ours(tmp_path):
    out = tmp_path / "peers.json"
    proc = _run(["--preset=tiny", "--workloads=resnet,transformer", f"--peers={FLAX}",
                 "--override=resnet:global_batch_size=8",
                 "--override=transformer:global_batch_size=8", "--steps=1", "--rounds=3",
                 "--warmup=1", "--offline_batches=0", f"--suite_json={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["workload"]: r for r in json.loads(out.read_text())["rows"]}
    for name, example in (("resnet", "examples/imagenet"), ("transformer", "examples/wmt")):
        r = rows[name]
        assert r["status"] == "ok", r
        assert r["peer"]["example"] == example and len(r["peer"]["rounds_ms"]) == 3
        assert r["ours_over_theirs"] == pytest.approx(
            r["samples_per_s"] / r["peer"]["samples_per_s"])
        assert f"{name}: ours " in proc.stdout and "ours/theirs" in proc.stdout


def test_table_shows_bound_ratio_and_failures():
    ok = {"workload": "resnet", "measure": "train_step", "status": "ok", "global_batch": 512,
          "samples_per_s": 7000.0, "tflops_per_s": 280.0, "mfu": 0.283, "peak_bytes": 2**36,
          "temp_bytes": 15 * 2**30, "argument_bytes": 2**30, "compile_s": 40.0,
          "bound": "FLOP", "bound_mfu": 1.0, "step_ms": 73.1,
          "ours_over_theirs": 1.05,
          "peer": {"example": "examples/imagenet", "step_ms": 76.8}}
    bad = {"workload": "transformer", "measure": "train_step", "status": "ok",
           "global_batch": 32, "samples_per_s": 900.0, "tflops_per_s": 300.0, "mfu": 0.30,
           "compile_s": 30.0, "temp_bytes": 2**30, "argument_bytes": 2**30, "bound": None,
           "peer": {"status": "failed", "reason": "ValueError: no"}}
    lines = bench_suite.table({"rounds": 5, "steps": 10, "rows": [ok, bad]}).splitlines()
    assert lines[1].split() == ["resnet", "train_step", "512", "7,000.0", "280.00", "28.3%",
                                "16.00", "40.0", "FLOP,", "MFU", "<=", "100%", "1.05x"]
    assert lines[2].split()[6] == "2.00"  # XLA's arguments + temporaries, not the peak
    assert lines[3] == ("resnet: ours 73.1 ms/step, examples/imagenet 76.8 ms/step (medians "
                        "of 5 alternating rounds of 10 steps): ours/theirs 1.05x samples/s")
    assert lines[4] == "transformer: the Flax example failed: ValueError: no"
