"""A run killed outright (kill -9) or left with a damaged checkpoint resumes from what
orbax committed, and its MLPerf log stays one the official checker accepts; a run killed
before its first checkpoint starts over with --restart."""

import os
import signal
import subprocess
import sys

from suite import compliance
from tests.helpers import ROOT, metadata, read_log, run_main, values
from tests.test_preemption import STEPS_PER_EPOCH, _env


def _flags(workdir: str) -> list[str]:
    # A 4-epoch budget: two kills and a resume fit, and the last run ends soon after; the
    # MLPerf events on stdout tell when to kill.
    return [f"--workdir={workdir}", "--checkpoint_every_blocks=1", "--config.max_epochs=4",
            "--mllog_stdout"]


def _checkpoints(workdir: str) -> tuple[list[int], list[str]]:
    """(committed steps, uncommitted folders) in the run's checkpoints folder."""
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    return (sorted(int(n) for n in names if n.isdigit()),
            sorted(n for n in names if ".orbax-checkpoint-tmp" in n))


def _kill_when(workdir: str, cache: str, seen) -> tuple[str, list[int], list[str]]:
    """Runs the command until seen(line) holds for a stdout line, then kill -9; returns
    (stdout so far, committed checkpoints, uncommitted ones) as the kill left them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "suite.main", *_flags(workdir)], cwd=ROOT, env=_env(cache, 1),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if seen(line):
            proc.kill()
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines)[-2000:] + proc.stderr.read()
    return "".join(lines), *_checkpoints(workdir)


def _assert_resumed(out: str, workdir: str, committed: list[int], partial: list[str],
                    moved: bool) -> None:
    assert "[resuming]" in out, out[-2000:]
    for name in partial:
        assert f"warning: ignoring {workdir}/checkpoints/{name}: a checkpoint never " \
               "committed" in out, out[-3000:]
    assert (f"after the checkpoint at step {committed[-1]} resumed from: moved" in out) == moved


def test_kill_9_resumes_from_the_last_committed_checkpoint(tmp_path):
    """kill -9 as a checkpoint is being written (right after the progress line that
    precedes it), then inside a block; each rerun resumes from the newest committed
    checkpoint, says which uncommitted ones it ignores, moves the events logged after
    that checkpoint aside, and the finished log passes the official checker."""
    cache, workdir = str(tmp_path / "cache"), str(tmp_path / "run")
    log = os.path.join(workdir, "mlperf_log.txt")
    out, committed, partial = _kill_when(workdir, cache, lambda line: line.startswith("block 2/"))
    assert committed, out[-2000:]  # block 1's, at least
    first = committed[-1]
    starts = []

    def second_epoch_start(line):  # the resumed run's second epoch: inside that block
        starts.append('"key": "epoch_start"' in line)
        return sum(starts) == 2

    out, later, later_partial = _kill_when(workdir, cache, second_epoch_start)
    # Block 2's events are moved aside only where its checkpoint was not committed.
    _assert_resumed(out, workdir, committed, partial, moved=first < 2 * STEPS_PER_EPOCH)
    again = run_main(_flags(workdir), cache)
    assert again.returncode == 1, again.stdout[-2000:] + again.stderr[-2000:]
    _assert_resumed(again.stdout, workdir, later, later_partial, moved=True)
    events = read_log(log)
    # The last resume started from the newest commit (where the second attempt committed
    # nothing, its own resume event went aside with the rest of what it logged).
    assert [m["step"] for m in metadata(events, "jaxperf_resume")][-1] == later[-1]
    firsts = [m["first_epoch_num"] for m in metadata(events, "block_start")]
    assert firsts == list(range(1, len(firsts) + 1))  # no block twice in the log
    assert [m["epoch_num"] for m in metadata(events, "eval_accuracy")] == firsts
    assert metadata(events, "run_stop")[0]["status"] == "aborted"  # the 4-epoch budget
    assert compliance.check(log, "4.0.0").passed
    with open(os.path.join(workdir, "mlperf_log.lost-0.txt")) as f:
        assert '"key": "epoch_start"' in f.read()


def _one_error_line(proc, needle: str) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def _damage(workdir: str, step: int) -> None:
    """Truncates every data file of a committed checkpoint to half, as a full disk or a
    copy cut short leaves it."""
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(step), "state")):
        for name in files:
            path = os.path.join(root, name)
            os.truncate(path, os.path.getsize(path) // 2)


def test_a_damaged_checkpoint_falls_back_to_the_one_before(tmp_path):
    cache, workdir = str(tmp_path / "cache"), str(tmp_path / "run")
    args = [f"--workdir={workdir}", "--checkpoint_every_blocks=1"]
    first = run_main([*args, "--stop_after_blocks=2"], cache)
    assert first.returncode == 0 and "paused after 2 blocks" in first.stdout, first.stderr[-2000:]
    assert _checkpoints(workdir)[0] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    _damage(workdir, 2 * STEPS_PER_EPOCH)
    again = run_main([*args, "--stop_after_blocks=1"], cache)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    warnings = [line for line in again.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, warnings  # the damaged checkpoint; block 2's events aside
    assert warnings[0].startswith(
        f"warning: checkpoint {workdir}/checkpoints/24 is damaged ("), warnings
    assert warnings[0].endswith("; resuming from 12 instead")
    assert "logged after the checkpoint at step 12 resumed from: moved to" in warnings[1]
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert metadata(events, "jaxperf_resume")[-1]["step"] == STEPS_PER_EPOCH
    # Block 2's events from the first run went aside; it trained again, once in the log.
    firsts = [m["first_epoch_num"] for m in metadata(events, "block_start")]
    assert firsts == [1, 2]
    # Nothing readable left: one line, no traceback, and nothing resumed.
    for step in _checkpoints(workdir)[0]:
        _damage(workdir, step)
    _one_error_line(run_main(args, cache), "can be restored")


def test_restart_starts_over_a_run_killed_before_its_first_checkpoint(tmp_path):
    cache, workdir = str(tmp_path / "cache"), str(tmp_path / "run")
    first = subprocess.Popen(
        [sys.executable, "-m", "suite.main", f"--workdir={workdir}", "--mllog_stdout"],
        cwd=ROOT, env=_env(cache, 1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in first.stdout:
        if '"key": "epoch_start"' in line:
            first.kill()
            break
    first.communicate(timeout=60)
    _one_error_line(run_main([f"--workdir={workdir}"], cache), "--restart")
    # Started over: the old files kept aside; a checkpoint every block end (minutes).
    again = run_main([f"--workdir={workdir}", "--restart", "--config.max_epochs=2",
                      "--checkpoint_every_minutes=0.0001"], cache)
    assert again.returncode == 1, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"the unfinished run's files moved to {workdir}/restarted-0" in again.stdout
    old = read_log(os.path.join(workdir, "restarted-0", "mlperf_log.txt"))
    assert values(old, "run_start") and not values(old, "run_stop")
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert len(values(events, "run_start")) == 1 and len(values(events, "run_stop")) == 1
    assert values(events, "jaxperf_resume") == []
    assert STEPS_PER_EPOCH in _checkpoints(workdir)[0]  # block 1's end, by the minutes
    _one_error_line(run_main([f"--workdir={tmp_path / 'other'}",
                              "--checkpoint_every_minutes=-1"], cache),
                    "--checkpoint_every_minutes must be >= 0")
