"""The real training loop through `python -m suite.main`, judged by the official checker."""

import os
import re

import pytest

from suite import compliance
from suite.recorders import counters
from tests.helpers import (
    assert_log_keys_as_recorded,
    metadata,
    read_log,
    restore_tiny_resnet,
    run_main,
    values,
)
from tests.test_energy import bump_when, set_energy, write_zone


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jaxperf-cache"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache):
    workdir = str(tmp_path_factory.mktemp("tiny") / "run")
    proc = run_main(["--workload=resnet", f"--workdir={workdir}"], cache)
    return workdir, proc


def test_tiny_preset_reaches_its_target_and_passes_the_checker(tiny_run):
    workdir, proc = tiny_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "No --data_dir given: running the tiny preset" in out
    assert "run_stop success: reached top1 >= 0.95" in out
    assert "compliance: PASS" in out
    # A CPU run without RAPL counters (conftest.py hides the host's): one line says so,
    # and the log holds no number.
    assert out.count("energy: not measured") == 1
    assert "energy: not measured (no NVML device, no readable RAPL counters)\n" in out
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert values(events, "jaxperf_energy_j") == []
    assert_log_keys_as_recorded(events, "resnet")
    accuracies = values(events, "eval_accuracy")
    assert accuracies[-1] >= 0.95 and all(a < 0.95 for a in accuracies[:-1])
    assert metadata(events, "run_stop")[0]["status"] == "success"
    # Everything the closed ResNet ruleset requires is there even in an open run.
    for key in ("cache_clear", "seed", "global_batch_size", "train_samples", "eval_samples",
                "gradient_accumulation_steps", "opt_name", "lars_opt_base_learning_rate",
                "lars_opt_end_learning_rate", "lars_opt_learning_rate_decay_poly_power",
                "lars_opt_learning_rate_decay_steps", "lars_epsilon",
                "lars_opt_learning_rate_warmup_epochs", "lars_opt_momentum",
                "lars_opt_weight_decay", "submission_org", "submission_platform"):
        assert len(values(events, key)) == 1, key
    assert values(events, "submission_division") == ["open"]
    assert values(events, "train_samples") == [1500]
    assert values(events, "eval_samples") == [297]
    assert values(events, "jaxperf_data") == ["real"]
    assert values(events, "jaxperf_preset") == ["tiny"]
    # init_stop comes after compilation, before the clock starts.
    keys = [e["key"] for e in events]
    assert keys.index("init_start") < keys.index("init_stop") < keys.index("run_start")
    verdict = compliance.check(os.path.join(workdir, "mlperf_log.txt"), "4.0.0")
    assert verdict.passed, verdict.output
    assert os.path.exists(os.path.join(workdir, "config.json"))


def _block_losses(stdout: str) -> list[float]:
    """The mean training loss of each block, from the progress lines (`| loss X |`)."""
    return [float(x) for x in re.findall(r"^block \d+/\d+ .*?\| loss ([0-9.]+) \|", stdout,
                                         re.MULTILINE)]


def test_eight_devices_train_like_one(tiny_run, tmp_path, cache):
    """Same data, seed and math on 8 devices as on 1; only the summation order differs.

    That difference is legitimate and LARS amplifies it over epochs (seed 0's 2nd eval is 2
    images apart, so the old one-image bound failed), so this compares what must agree
    early: the first two epochs' losses, the first eval, and the eval set each run covers.
    """
    one_dir, one_proc = tiny_run
    workdir = str(tmp_path / "eight")
    proc = run_main([f"--workdir={workdir}", "--config.max_epochs=2"], cache, devices=8)
    assert "on 8xcpu" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 1  # the 2-epoch budget ends the run before the target
    assert "run_stop aborted: top1 >= 0.95 not reached within 2 epochs" in proc.stdout
    eight_log = read_log(os.path.join(workdir, "mlperf_log.txt"))
    one_log = read_log(os.path.join(one_dir, "mlperf_log.txt"))
    assert values(eight_log, "eval_samples") == values(one_log, "eval_samples") == [297]
    eight, one = _block_losses(proc.stdout), _block_losses(one_proc.stdout)[:2]
    assert len(eight) == 2 and len(one) == 2, (proc.stdout[-3000:], one_proc.stdout[-3000:])
    # Measured, 8 devices against 1, seeds 0-15, losses printed to 4 decimals: the 1st
    # epoch's mean loss differs by at most 0.0001 (one rounding step; 7e-6 unrounded for
    # seed 7), the 2nd by at most 0.0006 (seed 14). For scale: other seeds' 1st-epoch losses
    # lie 0.0006 to 0.008 from seed 0's.
    assert abs(eight[0] - one[0]) <= 3e-4, (eight, one)
    assert abs(eight[1] - one[1]) <= 2e-3, (eight, one)
    eight_acc, one_acc = values(eight_log, "eval_accuracy"), values(one_log, "eval_accuracy")
    assert len(eight_acc) == 2
    # Measured, seeds 0-15: the 1st eval agrees in 15 seeds and is 1 image apart in one
    # (seed 12); the 2nd is up to 4 images apart (seed 15), so it is not compared.
    # Allowed: 3 of the 297 images.
    assert abs(eight_acc[0] - one_acc[0]) <= 3.5 / 297, (eight_acc, one_acc)


def test_nan_loss_aborts_the_run(tmp_path, cache):
    workdir = str(tmp_path / "nan")
    proc = run_main([f"--workdir={workdir}", "--config.base_lr=1e30"], cache)
    assert proc.returncode == 1
    assert "run_stop aborted: non-finite training loss" in proc.stdout
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    stop = metadata(events, "run_stop")
    assert len(stop) == 1 and stop[0]["status"] == "aborted"
    assert "non-finite" in stop[0]["reason"]
    assert "Traceback" not in proc.stderr


def test_pause_and_resume_continue_the_steps_and_the_log(tmp_path, cache, monkeypatch):
    workdir = str(tmp_path / "resume")
    args = [f"--workdir={workdir}", "--checkpoint_every_blocks=1"]
    log = os.path.join(workdir, "mlperf_log.txt")
    # A CPU package whose counter moves 7 J while the first process trains, 100 J while
    # the run is paused (not measured) and 5 J while the resumed process trains.
    powercap = tmp_path / "powercap"
    write_zone(powercap, "intel-rapl:0", "package-0", 1_000_000)
    monkeypatch.setenv(counters.POWERCAP_ENV, str(powercap))
    training = '"key": "epoch_start"'
    bumped = bump_when(log, powercap, "intel-rapl:0", 8_000_000, training)
    first = run_main([*args, "--stop_after_blocks=2"], cache)
    bumped.set()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "paused after 2 blocks at epoch 2" in first.stdout
    assert values(read_log(log), "run_stop") == []
    set_energy(powercap, "intel-rapl:0", 108_000_000)
    bumped = bump_when(log, powercap, "intel-rapl:0", 113_000_000, training)
    second = run_main(args, cache)
    bumped.set()
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[resuming]" in second.stdout
    events = read_log(log)
    # Each process's energy, logged as it stopped, kept by the resume (none moved away).
    assert values(events, "jaxperf_energy_j") == [7.0, 5.0]
    assert [(m["source"], m["domains"], m["partial"])
            for m in metadata(events, "jaxperf_energy_j")] == [("rapl", 1, False),
                                                                 ("rapl", 1, True)]
    assert "MLPerf events were logged after the checkpoint" not in second.stdout
    assert re.search(r"time-to-train [0-9.]+ s, 12\.0 J \(rapl, 1 CPU package; resumed 1x: "
                     r"the time it was stopped is not counted\), ", second.stdout)
    # One run: exactly one init/run start, and epochs that continue where they stopped.
    assert len(values(events, "run_start")) == 1 and len(values(events, "init_stop")) == 1
    firsts = [m["first_epoch_num"] for m in metadata(events, "block_start")]
    assert firsts == list(range(1, len(firsts) + 1))
    assert [m["epoch_num"] for m in metadata(events, "eval_accuracy")] == firsts
    assert values(events, "jaxperf_resume") == [3]
    assert compliance.check(log, "4.0.0").passed
    # The optimizer's own step count went on from the checkpoint, not from zero: the
    # newest checkpoint (saved after the resume) holds exactly 12 steps per epoch so far.
    step, state, progress = restore_tiny_resnet(workdir)
    assert step >= 3 * 12  # 1500 examples at batch 128: 12 steps per epoch
    assert progress["step"] == step and progress["epoch"] * 12 == step
    assert int(state.step) == step
