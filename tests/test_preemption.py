"""A preemption notice (SIGTERM) checkpoints the step the run stands at, exits 75, and the
same command resumes there; one process, and two on JAX's distributed runtime. (Kills
and damaged checkpoints: test_crash_recovery.py.)"""

import os
import signal
import subprocess
import sys

from suite import compliance, preemption
from tests.helpers import ROOT, metadata, read_log, restore_tiny_resnet, run_main, values
from tests.test_multiprocess import _free_port

STEPS_PER_EPOCH = 12  # the tiny ResNet: 1,500 examples at batch 128


def _env(cache: str, devices: int) -> dict:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                JAXPERF_CACHE=cache, PYTHONUNBUFFERED="1")


def _signal_in_epoch_2(procs, to) -> list[tuple[str, str]]:
    """SIGTERMs procs[to] once process 0 logs epoch 2's epoch_start (--mllog_stdout), so
    the notice lands inside that epoch: its first step's check came before that event."""
    lines = []
    for line in procs[0].stdout:
        lines.append(line)
        if '"key": "epoch_start"' in line and '"epoch_num": 2' in line:
            procs[to].send_signal(signal.SIGTERM)
            break
    outs = [p.communicate(timeout=600) for p in procs]
    return [("".join(lines) + out if i == 0 else out, err) for i, (out, err) in enumerate(outs)]


def _restored_step(workdir: str, step: int) -> int:
    """The optimizer's step count in the newest checkpoint, which must be `step`'s."""
    newest, state, progress = restore_tiny_resnet(workdir)
    assert newest == step and progress["step"] == step
    return int(state.step)


def _assert_resumed_log(log: str, step: int, status: str) -> None:
    events = read_log(log)
    assert values(events, "jaxperf_preempted") == [step]
    assert metadata(events, "jaxperf_resume")[0]["step"] == step
    assert len(values(events, "run_start")) == 1 and len(values(events, "run_stop")) == 1
    # Each block started once and stopped once: the resumed block was not started again.
    firsts = [m["first_epoch_num"] for m in metadata(events, "block_start")]
    assert firsts == list(range(1, len(firsts) + 1))
    assert [m["first_epoch_num"] for m in metadata(events, "block_stop")] == firsts
    assert metadata(events, "run_stop")[0]["status"] == status
    assert compliance.check(log, "4.0.0").passed


def test_sigterm_checkpoints_its_step_and_the_same_command_resumes(tmp_path):
    cache, workdir = str(tmp_path / "cache"), str(tmp_path / "run")
    # Ends soon after the resume; the MLPerf events on stdout tell when to signal.
    flags = [f"--workdir={workdir}", "--config.max_epochs=3", "--mllog_stdout"]
    proc = subprocess.Popen([sys.executable, "-m", "suite.main", *flags], cwd=ROOT,
                            env=_env(cache, 1), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    (out, err), = _signal_in_epoch_2([proc], 0)
    assert proc.returncode == preemption.EXIT_CODE, out[-2000:] + err[-2000:]
    log = os.path.join(workdir, "mlperf_log.txt")
    step = values(read_log(log), "jaxperf_preempted")[0]
    assert f"preempted (SIGTERM) at step {step}, checkpointed; rerun the same command" in out
    assert "Traceback" not in err and values(read_log(log), "run_stop") == []
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH  # inside epoch 2
    # The optimizer's step in the checkpoint is the step the notice stopped at.
    assert _restored_step(workdir, step) == step
    again = run_main(flags, cache)
    assert again.returncode == 1, again.stdout[-2000:] + again.stderr[-2000:]
    assert "[resuming]" in again.stdout and "not reached within 3 epochs" in again.stdout
    _assert_resumed_log(log, step, "aborted")


def test_two_processes_stop_at_one_step_when_one_is_preempted(tmp_path):
    """JAX's preemption service tells the other process and picks the step both stop at."""
    cache, workdir = str(tmp_path / "cache"), str(tmp_path / "run")
    from input_pipelines import digits
    digits.prepare(os.path.join(cache, "tfds"))  # once: two processes would race on it
    port = _free_port()

    def job():  # a 3-epoch budget: the resumed job ends soon after (aborted, exit 1)
        return [subprocess.Popen(
            [sys.executable, "-m", "suite.main", "--multihost",
             f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
             f"--process_id={i}", f"--workdir={workdir}", "--config.max_epochs=3",
             "--mllog_stdout"],
            cwd=ROOT, env=_env(cache, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) for i in range(2)]

    procs = job()
    outs = _signal_in_epoch_2(procs, 1)  # the notice reaches process 1 only
    assert [p.returncode for p in procs] == [preemption.EXIT_CODE] * 2, \
        [o[1][-2000:] for o in outs]
    log = os.path.join(workdir, "mlperf_log.txt")
    step = values(read_log(log), "jaxperf_preempted")[0]
    assert step > STEPS_PER_EPOCH and f"at step {step}, checkpointed" in outs[0][0]
    assert _restored_step(workdir, step) == step
    port = _free_port()
    procs = job()
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], [o[1][-2000:] for o in outs]
    assert "[resuming]" in outs[0][0] and "not reached within 3 epochs" in outs[0][0]
    _assert_resumed_log(log, step, "aborted")
