"""Two processes on JAX's own distributed runtime (gloo on CPU), as on a multi-host pod."""

import json
import os
import re
import socket
import subprocess
import sys

from suite import compliance
from tests.helpers import ROOT, metadata, read_log, values
from tests.test_energy import bump_when, write_zone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir: str, env: dict, args: list[str]):
    """suite.main as processes 0 and 1 of one jax.distributed job; (procs, (out, err) each)."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "suite.main", "--multihost",
             f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
             f"--process_id={i}", f"--workdir={workdir}", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    return procs, [p.communicate(timeout=600) for p in procs]


def test_two_processes_train_one_run_and_process_0_alone_logs(tmp_path):
    workdir = str(tmp_path / "run")
    # Both processes read the one CPU package of their host, whose counter moves 7 J as
    # they train: counted once in the job's energy, not once per process.
    powercap = tmp_path / "powercap"
    write_zone(powercap, "intel-rapl:0", "package-0", 1_000_000)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAXPERF_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1",
               JAXPERF_POWERCAP_ROOT=str(powercap))
    # Built once up front: two processes preparing one fresh dataset would race.
    from input_pipelines import digits
    digits.prepare(os.path.join(env["JAXPERF_CACHE"], "tfds"))
    bumped = bump_when(os.path.join(workdir, "mlperf_log.txt"), powercap, "intel-rapl:0",
                       8_000_000, '"key": "epoch_start"')
    procs, outs = _two_processes(workdir, env, ["--config.max_epochs=2"])
    bumped.set()
    # Both end the same way: the 2-epoch budget runs out before the target.
    assert [p.returncode for p in procs] == [1, 1], [o[1][-2000:] for o in outs]
    assert "on 8xcpu" in outs[0][0] and "block 2/" in outs[0][0]
    assert "block " not in outs[1][0] and ":::MLLOG" not in outs[1][0]
    log = os.path.join(workdir, "mlperf_log.txt")
    events = read_log(log)
    assert values(events, "submission_platform") == ["8xcpu"]
    assert len(values(events, "run_start")) == 1
    assert metadata(events, "run_stop")[0]["status"] == "aborted"
    assert values(events, "jaxperf_energy_j") == [7.0]
    energy = metadata(events, "jaxperf_energy_j")[0]
    assert (energy["domains"], energy["hosts"], energy["processes"]) == (1, 1, 2)
    assert "time-to-train" in outs[0][0] and ", 7.0 J (rapl, 1 CPU package), " in outs[0][0]
    # Each eval counted all 297 validation images, once each, across the two processes
    # (padding rows masked out): the count every eval scored, from the eval metrics file.
    for acc in values(events, "eval_accuracy"):
        assert abs(acc * 297 - round(acc * 297)) < 1e-6
    with open(os.path.join(workdir, "eval_metrics.jsonl")) as f:
        counts = [json.loads(line)["eval_examples"] for line in f]
    assert counts == [297.0, 297.0]
    # And it learned: the mean training loss fell from the first block to the second.
    losses = [float(x) for x in re.findall(r"\| loss ([0-9.]+) \|", outs[0][0])]
    assert len(losses) == 2 and losses[1] < losses[0] - 0.05, losses
    assert compliance.check(log, "4.0.0").passed


def test_two_processes_decode_and_score_the_whole_eval_set(tmp_path):
    """Transformer: each process packs its own share of the training pairs and decodes its
    share of the test set; the decoded tokens of all 500 sentences come back to every
    process for scoring, and process 0 alone logs."""
    workdir = str(tmp_path / "run")
    cache = str(tmp_path / "cache")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAXPERF_CACHE=cache, PYTHONUNBUFFERED="1")
    from input_pipelines import numbers_translate
    numbers_translate.prepare(os.path.join(cache, "tfds"))
    # Greedy decoding (beam 1): the cross-process gather is the same, at a quarter the cost.
    args = ["--workload=transformer", "--config.max_epochs=1", "--config.eval_batch_size=64",
            "--config.beam_size=1"]
    procs, outs = _two_processes(workdir, env, args)
    assert [p.returncode for p in procs] == [1, 1], [o[1][-2000:] for o in outs]
    assert "on 4xcpu" in outs[0][0] and "block 1/" in outs[0][0]
    log = os.path.join(workdir, "mlperf_log.txt")
    events = read_log(log)
    (bleu,) = values(events, "eval_accuracy")
    assert 0.1 < bleu < 1.0  # one epoch in: learning, short of the 0.9 target
    assert values(events, "eval_samples") == [500]
    # Both processes used the same vocabulary file, built once by whichever came first.
    assert os.path.exists(os.path.join(workdir, "vocab.model"))
    assert compliance.check(log, "0.7.0").passed


def test_two_processes_split_dlrm_tables_across_hosts(tmp_path):
    """DLRM-DCNv2: the tables' rows split over a model axis that spans both processes; each
    process reads its own contiguous shard of the click logs, and process 0 alone logs."""
    workdir = str(tmp_path / "run")
    cache = str(tmp_path / "cache")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAXPERF_CACHE=cache, PYTHONUNBUFFERED="1")
    from input_pipelines import planted_clicks
    planted_clicks.prepare(cache)
    # Batch 4,096 (78 steps an epoch): few steps, since gloo runs them one at a time.
    args = ["--workload=dlrm_dcnv2", "--config.mesh.model=4", "--config.evals_per_epoch=4",
            "--config.global_batch_size=4096", "--config.target_value=0.79"]
    procs, outs = _two_processes(workdir, env, args)
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert "on 4xcpu" in outs[0][0] and "run_stop success: reached auc >= 0.79" in outs[0][0]
    assert ":::MLLOG" not in outs[1][0]
    log = os.path.join(workdir, "mlperf_log.txt")
    events = read_log(log)
    assert values(events, "eval_samples") == [40_000]
    assert values(events, "eval_accuracy")[-1] >= 0.79
    assert compliance.check(log, "6.0.0").passed
