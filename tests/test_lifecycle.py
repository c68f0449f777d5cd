"""The run lifecycle in-process, on the toy workload (tests/toy_workload)."""

import os

import jax
import pytest

from suite import config as config_lib
from suite import lifecycle, runner
from suite.config import RunOptions
from tests.helpers import metadata, read_log
from tests.toy_workload.workload import LinearDigits


def test_a_failure_after_run_stop_logs_no_second_run_stop(tmp_path, monkeypatch):
    """Saving the final weights comes after run_stop: if it fails, the error propagates and
    the log keeps its one run_stop (success), which a second, aborted one would spoil."""
    workload = LinearDigits()
    cfg = config_lib.resolve(workload, workload.config("tiny"), jax.device_count(),
                             jax.default_backend())
    opts = RunOptions(workload="tests.toy_workload.workload:LinearDigits", preset="tiny",
                      workdir=str(tmp_path / "run"))
    data = runner.data_info(workload, cfg, opts)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(lifecycle.weights, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        runner.run_one(workload, cfg, opts, data, notes={}, check_log=False)
    events = read_log(os.path.join(opts.workdir, "mlperf_log.txt"))
    assert [m["status"] for m in metadata(events, "run_stop")] == ["success"]
