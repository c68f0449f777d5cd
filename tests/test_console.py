"""The console a person reads, and the TensorBoard scalars every run writes.

One tiny ResNet run in two parts: block 1 with --mllog_stdout, its output captured (not a
terminal), then the same command without that flag, resumed under a pseudo-terminal for
block 2. The event files are read back with TensorFlow's own reader."""

import dataclasses
import glob
import io
import os
import pty
import re
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from suite import console
from suite.config import RunOptions
from suite.recorders import tensorboard
from suite.schedule import EpochBlocks
from suite.workload import DataInfo
from suite.workloads.dlrm import DLRMWorkload
from suite.workloads.resnet import ResNetWorkload
from tests.helpers import ROOT, metadata, read_log

STEPS_PER_EPOCH = 12  # the tiny ResNet: 1,500 examples at batch 128
# Start-up lines a person should not have to read (TensorFlow's native libraries, tfds
# while the built-in data is prepared).
NOISE = ("oneDNN custom operations", "absl::InitializeLog", "has no dataset_info.json",
         "Downloading and preparing dataset", "Subsequent calls will reuse this data")
PROGRESS = re.compile(r"^block (\d+)/\d+ epoch \S+ \| loss ([\d.]+) \| ([\d,.]+) samples/s \| "
                      r"step ([\d.]+) ms \| host overhead ([\d.]+)% \| MFU (\S+) \|")
BAR = re.compile(r"block 2/14: +\d+%\|.*\| +\d+/12 steps \[")


def _env(cache: str) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXPERF_CACHE=cache, PYTHONUNBUFFERED="1")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the test session's own; a user has none
    return env


def _in_terminal(args: list[str], env: dict, timeout: float = 600) -> tuple[int, str]:
    """(exit code, what the terminal received) of `python -m suite.main` whose stdin,
    stdout and stderr are a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "suite.main", *args], cwd=ROOT, env=env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while select.select([master], [], [], max(deadline - time.monotonic(), 0))[0]:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every writer of the terminal has exited
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def _shown(terminal: str) -> list[str]:
    """The lines a terminal shows at the end: each line's text after its last carriage
    return (a bar redraws itself in place, and is cleared for the line that follows)."""
    return [line.rsplit("\r", 1)[-1] for line in terminal.replace("\r\n", "\n").split("\n")]


def _progress(lines: list[str]) -> dict[int, tuple[float, float, float, float, str]]:
    """block -> (loss, samples/s, step ms, host overhead %, MFU) as its progress line
    prints them."""
    found = {}
    for line in lines:
        if m := PROGRESS.match(line):
            found[int(m[1])] = (float(m[2]), float(m[3].replace(",", "")), float(m[4]),
                                float(m[5]), m[6])
    return found


def _events(directory: str) -> list[list]:
    """Each events file's events, files in TensorBoard's reading order."""
    from common import quiet_tf

    tf = quiet_tf.import_tensorflow()
    paths = sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*")))
    return [list(tf.compat.v1.train.summary_iterator(p)) for p in paths]


def _scalars(files: list[list]) -> dict[str, dict[int, float]]:
    """tag -> {step: value}; a step recorded twice fails."""
    found: dict[str, dict[int, float]] = {}
    for events in files:
        for e in events:
            for v in e.summary.value:
                steps = found.setdefault(v.tag, {})
                assert e.step not in steps, (v.tag, e.step)
                steps[e.step] = v.simple_value
    return found


@pytest.fixture(scope="module")
def two_part_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("console")
    cache, workdir = str(base / "cache"), str(base / "run")
    env = _env(cache)
    args = [f"--workdir={workdir}", "--stop_after_blocks=1"]
    first = subprocess.run([sys.executable, "-m", "suite.main", *args, "--mllog_stdout"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    with open(os.path.join(workdir, "mlperf_log.txt")) as f:
        log_after_first = f.read()
    code, terminal = _in_terminal(args, env)  # --mllog_stdout is no changed setting
    assert code == 0, terminal[-3000:]
    return workdir, first, log_after_first, terminal


def test_the_console_shows_progress_not_mllog_lines_nor_start_up_noise(two_part_run):
    workdir, first, log_after_first, terminal = two_part_run
    # Captured (not a terminal), with --mllog_stdout: the log's very lines, and no bar.
    echoed = [line for line in first.stdout.splitlines(keepends=True)
              if line.startswith(":::MLLOG")]
    assert echoed and "".join(echoed) == log_after_first
    assert "\r" not in first.stdout and " steps [" not in first.stdout
    assert "paused after 1 blocks at epoch 1" in first.stdout
    # In a terminal, by default: a live bar inside block 2, the progress lines, no MLLOG.
    assert "[resuming]" in terminal
    assert BAR.search(terminal), terminal[-3000:]
    shown = _shown(terminal)
    assert any(line.startswith("block 2/14 epoch 2/14 | loss") for line in shown)
    assert ":::MLLOG" not in terminal
    for noise in NOISE:  # stdout and stderr alike (the terminal shows both)
        assert noise not in first.stdout + first.stderr + terminal, noise
    with open(os.path.join(workdir, "mlperf_log.txt")) as f:
        log = f.read()
    # The resumed part's events went to the file only.
    assert log.startswith(log_after_first) and '"jaxperf_resume"' in log[len(log_after_first):]


def test_tensorboard_holds_what_the_log_and_the_progress_lines_say(two_part_run):
    workdir, first, _, terminal = two_part_run
    files = _events(os.path.join(workdir, "tensorboard"))
    assert len(files) == 2  # one per process: the resumed one wrote its own
    # The resumed process hides, for TensorBoard, anything past the step it resumed at.
    starts = [e.step for e in files[1] if e.HasField("session_log")]
    assert starts == [STEPS_PER_EPOCH + 1]
    scalars = _scalars(files)
    losses = scalars["train/loss"]
    assert sorted(losses) == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    printed = {**_progress(first.stdout.splitlines()), **_progress(_shown(terminal))}
    assert sorted(printed) == [1, 2]
    for block, (loss, samples_per_s, step_ms, host, mfu) in printed.items():
        end = block * STEPS_PER_EPOCH
        steps = range(end - STEPS_PER_EPOCH + 1, end + 1)
        assert np.mean([losses[s] for s in steps]) == pytest.approx(loss, abs=6e-5)
        assert scalars["perf/samples_per_s"][end] == pytest.approx(samples_per_s, abs=0.06)
        assert scalars["perf/step_ms"][end] == pytest.approx(step_ms, abs=0.06)
        assert 100 * scalars["perf/host_overhead"][end] == pytest.approx(host, abs=0.06)
        assert mfu == "n/a"  # a CPU's peak is unknown: no MFU scalar
    assert "perf/mfu" not in scalars
    # Each eval at its block's last step, as the MLPerf log holds it.
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    accuracy = {m["epoch_num"] * STEPS_PER_EPOCH: e["value"] for e, m in
                zip([e for e in events if e["key"] == "eval_accuracy"],
                    metadata(events, "eval_accuracy"), strict=True)}
    assert sorted(accuracy) == [12, 24]
    assert scalars["eval/top1"] == pytest.approx(accuracy, abs=1e-6)
    assert scalars["eval/eval_examples"] == {12: 297.0, 24: 297.0}
    # The rate each step's update used: LARS warms up linearly over the first epoch, then
    # decays polynomially (written out here from the tiny config, not from the workload).
    cfg = ResNetWorkload().config("tiny")
    warmup = round(cfg.warmup_epochs * STEPS_PER_EPOCH)
    decay = cfg.train_epochs * STEPS_PER_EPOCH - warmup
    rate = scalars["train/learning_rate"]
    assert sorted(rate) == sorted(losses)
    assert rate[1] == 0.0
    assert rate[7] == pytest.approx(cfg.base_lr * 6 / warmup, rel=1e-6)
    assert rate[13] == pytest.approx(cfg.base_lr, rel=1e-6)
    assert rate[19] == pytest.approx(
        (cfg.base_lr - cfg.end_lr) * (1 - 6 / decay) ** cfg.lr_decay_power + cfg.end_lr,
        rel=1e-6)


def test_the_bar_follows_the_blocks_and_starts_part_way_in_a_resumed_one():
    schedule = EpochBlocks(10, max_epochs=3, epochs_per_block=1, offset_epochs=1)
    out = io.StringIO()
    bar = console.BlockBar(schedule, 128, enabled=True, stream=out)
    for steps_done in range(15, 22):  # resumed at step 14, inside block 2
        bar.tick(steps_done)
    drawn = out.getvalue()
    assert re.search(r"block 2/3: +50%\|.*\| 5/10 steps \[", drawn)  # opened part-way
    assert re.search(r"block 3/3: +10%\|.*\| 1/10 steps \[", drawn)
    assert "block 1/3" not in drawn
    bar.close()
    assert out.getvalue().endswith("\r")  # cleared: the progress line takes its place
    quiet = io.StringIO()
    silent = console.BlockBar(schedule, 128, enabled=False, stream=quiet)
    silent.tick(1)
    assert quiet.getvalue() == ""


def test_a_live_bar_only_on_a_terminal_and_without_mllog_lines_on_stdout():
    opts = RunOptions("resnet", "tiny", "/nowhere")
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        assert console.live(opts, terminal)
        assert not console.live(dataclasses.replace(opts, mllog_stdout=True), terminal)
    os.close(master)
    assert not console.live(opts, io.StringIO())


def test_learning_rates_are_read_from_the_optimizers_own_schedule():
    dlrm = DLRMWorkload()
    cfg = dlrm.config("tiny")
    steps = np.arange(5, 9)
    constant = tensorboard.host_values(dlrm.learning_rate(cfg, DataInfo(1, 1, "x")), steps)
    assert constant.tolist() == [cfg.base_lr] * 4
    resnet = ResNetWorkload()
    cfg = resnet.config("reference")
    data = DataInfo(393 * cfg.global_batch_size, 1, "x")
    rates = tensorboard.host_values(resnet.learning_rate(cfg, data), np.array([0, 393, 786]))
    assert rates.tolist() == pytest.approx([0.0, cfg.base_lr / 2, cfg.base_lr])
