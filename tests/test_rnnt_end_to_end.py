"""RNN-T through `python -m suite.main`, judged by the official checker (ruleset 3.1.0)."""

import os

import pytest

from suite import compliance
from tests.helpers import metadata, run_main, successful_run, values
from tests.test_rnnt_workload import _closed_rules

RULESET = "3.1.0"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    workdir = str(tmp_path_factory.mktemp("tiny") / "run")
    return workdir, run_main(["--workload=rnnt", f"--workdir={workdir}"], cache, timeout=900)


def test_tiny_preset_reaches_its_wer_on_held_out_voices_and_passes_the_checker(tiny_run):
    workdir, proc = tiny_run
    once = [r["NAME"] for r in _closed_rules() if r["REQ"] == "EXACTLY_ONE"]
    events = successful_run(proc, workdir, reached="wer <= 0.15", ruleset=RULESET,
                            once_keys=[*once, "submission_benchmark", "init_stop",
                                       "run_start", "run_stop"])
    assert values(events, "submission_benchmark") == ["rnnt"]
    assert values(events, "eval_samples") == [200]  # every dev utterance, held-out voices
    assert values(events, "train_samples") == [1992]  # 2,000 less each bucket's remainder
    assert values(events, "data_speed_perturbaton_max") == [1.15]
    assert values(events, "jaxperf_augment") == [True]
    wers = values(events, "eval_accuracy")
    epochs = [m["epoch_num"] for m in metadata(events, "eval_accuracy")]
    assert epochs == list(range(1, len(wers) + 1))
    assert wers[-1] <= 0.15 and all(w > 0.15 for w in wers[:-1])
    assert wers[0] > 0.5  # it learned: the first epoch's model is far from the target
    assert metadata(events, "run_stop")[0]["status"] == "success"
    assert compliance.check(os.path.join(workdir, "mlperf_log.txt"), RULESET).passed
    # The vocabulary the run trained with travels with its workdir.
    assert os.path.getsize(os.path.join(workdir, "vocab.model")) > 0
