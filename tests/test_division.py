"""Closed-division rules on config changes, and borrowing another submission's hyperparameters."""

import json
import os

import pytest

from common.errors import UserError
from suite import division
from suite.workloads.resnet import ResNetWorkload
from tests.helpers import read_log, run_main, values


def test_closed_allows_tunable_and_runtime_fields_only():
    workload = ResNetWorkload()
    reference = workload.config("reference")
    cfg = workload.config("reference")
    cfg.base_lr, cfg.global_batch_size, cfg.compute_dtype = 9.0, 2048, "bfloat16"
    cfg.mesh.fsdp = 2
    diff = division.changes(reference, cfg)
    assert set(diff) == {"base_lr", "global_batch_size", "compute_dtype", "mesh.fsdp"}
    division.check_closed(workload, diff)  # all allowed
    cfg.label_smoothing = 0.2
    with pytest.raises(UserError, match="fixes label_smoothing at 0.1 .got 0.2."):
        division.check_closed(workload, division.changes(reference, cfg))
    cfg = workload.config("reference")
    cfg.model = "resnet_tiny"
    with pytest.raises(UserError, match="fixes model"):
        division.check_closed(workload, division.changes(reference, cfg))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def test_closed_run_with_a_fixed_field_changed_is_refused(tmp_path, cache):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    workdir = tmp_path / "w"
    proc = run_main([f"--data_dir={data_dir}", "--config.label_smoothing=0.2",
                     f"--workdir={workdir}"], cache)
    assert proc.returncode == 2
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "label_smoothing" in errors[0] and "--division=open" in errors[0]
    assert not workdir.exists()


@pytest.fixture(scope="module")
def lender_log(tmp_path_factory, cache):
    workdir = str(tmp_path_factory.mktemp("lender") / "run")
    proc = run_main(["--data=synthetic", f"--workdir={workdir}", "--config.max_epochs=1",
                     "--config.base_lr=1.7", "--config.global_batch_size=64",
                     "--config.warmup_epochs=2"], cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return os.path.join(workdir, "mlperf_log.txt")


def test_borrowed_hparams_are_used_and_recorded(tmp_path, cache, lender_log):
    workdir = str(tmp_path / "borrower")
    # An explicit field wins over a borrowed one from an absl --flagfile too.
    flagfile = tmp_path / "borrower.flags"
    flagfile.write_text("--config.momentum=0.8\n")
    proc = run_main(["--data=synthetic", f"--workdir={workdir}", "--config.max_epochs=1",
                     f"--borrow_hparams={lender_log}", f"--flagfile={flagfile}"], cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert values(events, "lars_opt_base_learning_rate") == [1.7]
    assert values(events, "global_batch_size") == [64]
    assert values(events, "lars_opt_learning_rate_warmup_epochs") == [2.0]
    assert values(events, "lars_opt_momentum") == [0.8]  # the explicit flag wins
    borrowed = json.loads(values(events, "jaxperf_borrowed_hparams")[0])
    assert borrowed["from"] == os.path.abspath(lender_log)
    assert borrowed["values"]["base_lr"] == 1.7 and "momentum" not in borrowed["values"]
    changes = json.loads(values(events, "jaxperf_config_changes")[0])
    assert changes["base_lr"] == 1.7 and changes["momentum"] == 0.8


def test_borrowing_from_another_benchmark_is_refused(tmp_path, cache, lender_log):
    other = tmp_path / "bert_result_0.txt"
    text = open(lender_log).read().replace('"value": "resnet"', '"value": "bert"')
    other.write_text(text)
    workdir = tmp_path / "w"
    proc = run_main(["--data=synthetic", f"--workdir={workdir}", f"--borrow_hparams={other}"],
                    cache)
    assert proc.returncode == 2
    assert "is a log of 'bert', not 'resnet'" in proc.stderr
    assert not workdir.exists()
