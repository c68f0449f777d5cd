"""The system under test's worker thread, driven by the official LoadGen."""

import os
import subprocess
import sys

from tests.helpers import ROOT

BROKEN_DEVICE = """
import mlperf_loadgen as lg
from suite.serving import sut

class Broken:  # a predictor whose device fails on the first batch
    def dispatch(self, pool, rows):
        raise RuntimeError("device lost")

class Rows:
    rows, arrays = {i: i for i in range(8)}, None

s = sut.SUT(lg, Broken(), Rows(), max_batch=1)
settings = lg.TestSettings()
settings.scenario, settings.mode = lg.TestScenario.SingleStream, lg.TestMode.PerformanceOnly
settings.min_query_count, settings.min_duration_ms = 10, 0
sut_handle = lg.ConstructSUT(s.issue_query, s.flush_queries)
qsl = lg.ConstructQSL(8, 8, lambda i: None, lambda i: None)
lg.StartTest(sut_handle, qsl, settings)
print("LoadGen returned")
"""


def test_a_failing_worker_ends_the_process_instead_of_leaving_loadgen_waiting(tmp_path):
    # LoadGen waits for every issued sample; a dead worker would hang it until the timeout.
    proc = subprocess.run([sys.executable, "-c", BROKEN_DEVICE], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "LoadGen returned" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "the system under test failed: RuntimeError: device lost", proc.stderr
