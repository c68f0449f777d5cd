"""suite.infer's refusals and the checker's missing repo: no timing is measured, so these
run with the parallel tests, apart from the served fixture (tests/test_inference.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from suite import weights
from suite.serving import results
from tests.helpers import ROOT, assert_one_error, run_infer, run_main


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("infer-input-cache"))


@pytest.mark.parametrize("args,needle", [
    (["--checkpoint=/nonexistent/run"], "does not exist"),
    (["--scenario=Streaming"], "--scenario"),
    (["--precision=int4"], "--precision"),
    (["--division=closed"], "open-division"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, needle, tmp_path, cache):
    workdir = tmp_path / "out"
    proc = run_infer([*args, f"--workdir={workdir}"], cache)
    assert_one_error(proc, needle)
    assert not workdir.exists()


def test_an_unconverged_run_is_refused_unless_open_allows_it(tmp_path, cache):
    workdir = str(tmp_path / "short")
    proc = run_main(["--workload=resnet", f"--workdir={workdir}", "--config.max_epochs=1",
                     "--nocheck_log"], cache)
    assert proc.returncode == 1, proc.stderr[-2000:]
    with open(os.path.join(workdir, weights.META)) as f:
        assert json.load(f)["reached_target"] is False
    out = tmp_path / "out"
    proc = run_infer([f"--checkpoint={workdir}", f"--workdir={out}"], cache)
    assert proc.returncode == 2 and "never reached its target" in proc.stderr
    assert not out.exists()
    proc = run_infer([f"--checkpoint={workdir}", f"--workdir={out}", "--allow_unconverged",
                      "--scenario=SingleStream", "--mode=accuracy"], cache)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    answers, seen = results.answers(str(out / "SingleStream" / "accuracy"), np.int32, 297)
    assert seen.all()


def test_submission_check_without_the_inference_repo_says_how_to_get_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.submission", "check", str(tmp_path),
                           f"--inference_repo={tmp_path / 'missing'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "git clone https://github.com/mlcommons/inference" \
        in proc.stderr
