"""`--runs=5 --submission_dir`: the whole path from runs to an official, checked package."""

import os
import re

import pytest

from suite import scoring


def test_five_runs_are_scored_packaged_and_checked(tiny_benchmark):
    workdir, submission_dir, proc = tiny_benchmark
    out = proc.stdout
    logs = [os.path.join(workdir, f"run_{i}", "mlperf_log.txt") for i in range(5)]
    records = [scoring.read_run(p) for p in logs]
    assert [r.seed for r in records] == [0, 1, 2, 3, 4]
    assert all(r.converged for r in records)
    score = scoring.olympic([r.seconds for r in records])
    printed = re.search(r"score \(olympic mean of 3 of 5 runs, dropped runs (\d) and (\d)\): "
                        r"([0-9.]+) s = ([0-9.]+) min", out)
    assert printed, out[-3000:]
    assert tuple(int(x) for x in printed.group(1, 2)) == score.dropped
    assert float(printed[3]) == pytest.approx(score.seconds, abs=0.006)
    assert "spread: CV" in out and "runs needed for a +-2 % interval" in out
    assert "package checker: PASS" in out
    official = float(re.search(r"result summarizer: ([0-9.]+) min", out)[1])
    assert official == pytest.approx(score.minutes, abs=6e-5)  # printed to 4 decimals
    assert "(jaxperf:" not in out  # the two agree when every run converged
    results = os.path.join(submission_dir, "jaxperf", "results", "1xcpu", "resnet")
    assert sorted(os.listdir(results)) == [f"result_{i}.txt" for i in range(5)]


def test_rerun_keeps_the_runs_that_finished_with_the_same_settings(tiny_benchmark):
    """As after a preemption: the same command keeps each finished run (and would resume
    an unfinished one); the score is the same. Other settings never reuse a run."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    workdir, _, first = tiny_benchmark
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXPERF_CACHE=os.path.join(os.path.dirname(workdir), "cache"))
    args = [sys.executable, "-m", "suite.main", "--workload=resnet", "--runs=5",
            f"--workdir={workdir}", "--submission_platform=1xcpu", "--nocheck_log"]
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    for i in range(5):
        assert (f"run {i + 1} finished before with these settings: kept "
                f"({workdir}/run_{i}/mlperf_log.txt)") in again.stdout
    assert "block 1/" not in again.stdout  # nothing trained
    score = re.compile(r"score \(olympic mean .*")
    assert score.search(again.stdout)[0] == score.search(first.stdout)[0]
    other = subprocess.run([*args, "--config.base_lr=3.0"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "already holds a finished run" in other.stderr
