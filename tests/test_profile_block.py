"""--profile_block=K: an XProf trace of block K in the workdir, and its bad values."""

import gzip
import json
import os

import pytest

from suite import config as config_lib
from suite import profiling
from tests.helpers import assert_one_error, one_line_error, read_log, run_main

TOY = "tests.toy_workload.workload:LinearDigits"  # trains a block in well under a second


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """One built-in data cache for this file's runs: the toy data is prepared once."""
    return str(tmp_path_factory.mktemp("cache"))


def _trace_events(path: str) -> set[str]:
    """Names of the events in the trace viewer's copy of an XProf trace (beside it)."""
    with gzip.open(path.replace(".xplane.pb", ".trace.json.gz")) as f:
        return {e.get("name") for e in json.load(f)["traceEvents"]}


def test_profile_block_traces_that_block_into_the_workdir_across_a_resume(tmp_path, cache):
    workdir = str(tmp_path / "run")
    args = [f"--workload={TOY}", f"--workdir={workdir}", "--stop_after_blocks=1"]
    first = run_main([*args, "--profile_block=2"], cache)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert profiling.traces(workdir) == []  # block 1 ran, block 2 was asked for

    # Resumed, the run counts on from its checkpoint: its first block now is block 2.
    second = run_main([*args, "--profile_block=2"], cache)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "profiling block 2 into" in second.stdout
    [trace] = profiling.traces(workdir)
    assert trace.startswith(os.path.join(workdir, "profile") + os.sep)
    assert os.path.getsize(trace) > 0
    names = _trace_events(trace)
    # The block's training steps and its eval, as the runner jits them.
    assert {"PjitFunction(jit(train))", "PjitFunction(jit(evaluate))"} <= names

    # A run option like --stop_after_blocks: in config.json, never in the MLPerf log.
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert not [e for e in events if "profile" in e["key"]]


def test_a_block_trained_before_the_resume_is_said_to_be_untraced():
    said = []
    profiling.note_resume(2, 2, said.append)
    profiling.note_resume(3, 2, said.append)
    profiling.note_resume(None, 2, said.append)
    assert said == ["--profile_block=2: that block was trained before this resume (2 done); "
                    "nothing will be traced"]


def test_profile_block_below_one_is_refused():
    opts = config_lib.RunOptions(workload="resnet", preset="tiny", workdir="w", profile_block=0)
    one_line_error(lambda: config_lib.validate_options(None, opts), "--profile_block must be >= 1")
    ok = config_lib.RunOptions(workload="resnet", preset="tiny", workdir="w", profile_block=3)
    config_lib.check_profile_block(ok, 3)
    one_line_error(lambda: config_lib.check_profile_block(ok, 2), "past the run's last block",
                   "pass 1 to 2")


def test_profile_block_past_the_last_block_through_main_writes_nothing(tmp_path, cache):
    workdir = tmp_path / "run"
    proc = run_main([f"--workload={TOY}", f"--workdir={workdir}", "--profile_block=31"], cache)
    assert_one_error(proc, "--profile_block=31 is past the run's last block: it has 30")
    assert not workdir.exists()
