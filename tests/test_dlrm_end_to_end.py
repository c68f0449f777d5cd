"""DLRM-DCNv2 through `python -m suite.main`, judged by the official checker (ruleset 6.0.0)."""

import math
import os

import pytest

from input_pipelines import criteo
from suite import compliance
from tests.helpers import (
    assert_log_keys_as_recorded,
    metadata,
    read_log,
    run_main,
    successful_run,
    values,
)

RULESET = "6.0.0"
# Every key closed_dlrm_dcnv2.yaml (6.0.0) and common.yaml require exactly once.
ONCE_KEYS = ("global_batch_size", "opt_name", "opt_base_learning_rate",
             "opt_adagrad_learning_rate_decay", "opt_weight_decay",
             "opt_adagrad_initial_accumulator_value", "opt_adagrad_epsilon",
             "opt_learning_rate_warmup_steps", "opt_learning_rate_decay_start_step",
             "opt_learning_rate_decay_steps", "eval_samples", "train_samples",
             "gradient_accumulation_steps", "submission_benchmark", "init_stop", "run_start",
             "run_stop")
CAPPED_VOCAB = tuple(min(v, 1000) for v in criteo.REFERENCE_VOCAB_SIZES)
# The reference architecture at toy width, for the reference layout on CPU.
SMALL_MODEL = [f"--config.vocab_sizes={CAPPED_VOCAB}", "--config.embed_dim=16",
               "--config.bottom_mlp=(32,16)", "--config.top_mlp=(32,1)",
               "--config.dcn_low_rank=16", "--config.global_batch_size=512",
               "--config.eval_batch_size=512", "--config.evals_per_epoch=4"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def reference_days(tmp_path_factory):
    """24 days of 1,000 rows in the reference's layout and hotness (214 ids a row)."""
    from tools import make_tiny_criteo

    out = str(tmp_path_factory.mktemp("criteo"))
    make_tiny_criteo.make(out, rows_per_day=1000, reference_shape=True, vocab_cap=1000)
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache):
    workdir = str(tmp_path_factory.mktemp("tiny") / "run")
    return workdir, run_main(["--workload=dlrm_dcnv2", f"--workdir={workdir}"], cache)


def test_tiny_preset_reaches_its_auc_and_passes_the_checker(tiny_run):
    workdir, proc = tiny_run
    events = successful_run(proc, workdir, reached="auc >= 0.81", ruleset=RULESET,
                            once_keys=ONCE_KEYS)
    log = os.path.join(workdir, "mlperf_log.txt")
    assert_log_keys_as_recorded(events, "dlrm_dcnv2")
    assert values(events, "submission_benchmark") == ["dlrm_dcnv2"]
    assert values(events, "opt_name") == ["adagrad"]
    assert values(events, "opt_adagrad_epsilon") == [1e-8]
    # What auto became: the tiny tables update densely; one device splits none of them.
    assert values(events, "jaxperf_sparse_update") == [[]]
    assert values(events, "jaxperf_id_routing") == [None]
    routing = metadata(events, "jaxperf_id_routing")[0]
    assert (routing["setting"], routing["route_capacity"]) == ("auto", 0.0)
    assert values(events, "train_samples") == [320_000]
    assert values(events, "eval_samples") == [40_000]
    # Evals every 0.05 epoch (312 steps of 1,024: blocks of 15 or 16 steps) inside epoch 1.
    epochs = [m["epoch_num"] for m in metadata(events, "eval_accuracy")]
    assert all(0 < e < 1 for e in epochs) and len(epochs) >= 3
    assert all(abs(e - round(e * 20) / 20) < 0.005 for e in epochs), epochs
    aucs = values(events, "eval_accuracy")
    assert aucs[-1] >= 0.81 and all(a < 0.81 for a in aucs[:-1])
    assert aucs[0] < aucs[-1] - 0.02  # it learned: the first eval is far below the last
    assert values(events, "epoch_start") == [None] and not values(events, "epoch_stop")
    assert metadata(events, "run_stop")[0]["status"] == "success"
    assert compliance.check(log, RULESET).passed


def test_pause_inside_the_epoch_and_resume_exactly_where_it_stopped(tmp_path, cache, tiny_run):
    """Paused after 2 of the 20 in-epoch blocks, then resumed from the step-31 checkpoint:
    the reader skips the batches already trained, so every eval matches the unbroken run."""
    workdir = str(tmp_path / "run")
    args = ["--workload=dlrm_dcnv2", f"--workdir={workdir}"]
    first = run_main([*args, "--stop_after_blocks=2"], cache)
    assert first.returncode == 0 and "paused after 2 blocks at epoch 0.099359" in first.stdout
    second = run_main(args, cache)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert [m["step"] for m in metadata(events, "jaxperf_resume")] == [31]
    unbroken = read_log(os.path.join(tiny_run[0], "mlperf_log.txt"))
    assert values(events, "eval_accuracy") == pytest.approx(values(unbroken, "eval_accuracy"),
                                                            abs=1e-6)
    assert compliance.check(os.path.join(workdir, "mlperf_log.txt"), RULESET).passed


def test_reference_layout_with_row_sharded_tables_on_8_devices(tmp_path, cache,
                                                               reference_days):
    workdir = str(tmp_path / "run")
    proc = run_main([f"--data_dir={reference_days}", "--workload=dlrm_dcnv2", "--division=open",
                     f"--workdir={workdir}", "--config.mesh.model=4",
                     "--config.target_value=0.99", *SMALL_MODEL], cache, devices=8)
    # An unreachable target: the whole epoch runs, and an aborted run exits 1.
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "run_stop aborted: auc >= 0.99 not reached within 1 epochs" in proc.stdout
    assert "dlrm_dcnv2 (reference, open division, seed 0) on 8xcpu" in proc.stdout
    log = os.path.join(workdir, "mlperf_log.txt")
    events = read_log(log)
    assert values(events, "train_samples") == [23 * 1000]  # days 0-22
    assert values(events, "eval_samples") == [500]  # the first half of day 23
    assert values(events, "jaxperf_embedding_sharding") == ["row"]
    # Sparse: the one-id tables of more rows (1,000 or 976) than a batch's 512 ids. Routes:
    # all_gather for all, as route_capacity 0 (room for every id) moves more by all_to_all.
    assert values(events, "jaxperf_sparse_update") == [[2, 6, 7, 17]]
    assert values(events, "jaxperf_id_routing") == [["all_gather"] * 26]
    # One epoch of 44 steps, evaluated at each quarter, then out of budget: aborted.
    assert [m["epoch_num"] for m in metadata(events, "eval_accuracy")] == [0.25, 0.5, 0.75, 1.0]
    assert values(events, "epoch_stop") == [None]
    assert metadata(events, "run_stop")[0]["status"] == "aborted"
    assert 0.55 < values(events, "eval_accuracy")[-1] <= 1.0
    assert compliance.check(log, RULESET).passed


def test_truncated_day_file_is_a_one_line_error(tmp_path, cache, reference_days):
    data = tmp_path / "criteo"
    os.makedirs(data)
    for name in os.listdir(reference_days):
        os.link(os.path.join(reference_days, name), data / name)
    victim = data / "day_7_dense.npy"
    size = os.path.getsize(victim)
    os.unlink(victim)  # a new file, not the shared link
    with open(os.path.join(reference_days, "day_7_dense.npy"), "rb") as f:
        victim.write_bytes(f.read()[:size - 13 * 4 * 10])
    workdir = str(tmp_path / "run")
    proc = run_main([f"--data_dir={data}", "--workload=dlrm_dcnv2", "--division=open",
                     f"--workdir={workdir}", *SMALL_MODEL], cache)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(victim) in errors[0] and "truncated" in errors[0], errors[0]
    assert not os.path.exists(workdir)
    assert math.isclose(os.path.getsize(victim), size - 520)


def test_batch_too_large_for_the_evals_is_a_one_line_error(tmp_path, cache):
    workdir = str(tmp_path / "run")
    proc = run_main(["--workload=dlrm_dcnv2", f"--workdir={workdir}",
                     "--config.global_batch_size=65536"], cache)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: 320000 training rows make 4 steps of batch 65536: fewer than the "
                      "20 evals per epoch; lower --config.global_batch_size"], proc.stderr
    assert not os.path.exists(workdir)
