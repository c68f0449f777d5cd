"""The Transformer benchmark through `python -m suite.main`, judged by the official checker."""

import json
import os

import pytest

from suite import compliance
from tests.helpers import (
    assert_log_keys_as_recorded,
    metadata,
    read_log,
    run_main,
    run_main_without,
    successful_run,
    values,
)

RULESET = "0.7.0"
# Every key closed_transformer.yaml (0.7.0) requires exactly once.
CLOSED_KEYS = ("global_batch_size", "opt_name", "opt_base_learning_rate",
               "opt_learning_rate_warmup_steps", "opt_adam_beta_1", "opt_adam_beta_2",
               "opt_adam_epsilon", "max_sequence_length", "submission_benchmark",
               "submission_org", "submission_platform", "submission_division",
               "submission_status", "train_samples", "eval_samples", "seed", "init_stop",
               "run_start", "run_stop")
# A Transformer small enough for CPU tests, on the reference preset's datasets.
SMALL_MODEL = ["--config.emb_dim=128", "--config.num_heads=4", "--config.mlp_dim=512",
               "--config.enc_layers=2", "--config.dec_layers=2", "--config.vocab_size=512",
               "--config.vocab_sentences=100000", "--config.max_length=64",
               "--config.eval_max_length=48", "--config.decode_extra_length=16",
               "--config.global_batch_size=64", "--config.eval_batch_size=128",
               "--config.base_lr=0.003", "--config.warmup_steps=100",
               "--config.dropout_rate=0", "--config.attention_dropout_rate=0"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache):
    workdir = str(tmp_path_factory.mktemp("tiny") / "run")
    return workdir, run_main(["--workload=transformer", f"--workdir={workdir}"], cache)


def test_tiny_preset_reaches_its_bleu_and_passes_the_checker(tiny_run, cache):
    workdir, proc = tiny_run
    events = successful_run(proc, workdir, reached="bleu >= 0.9", ruleset=RULESET,
                            once_keys=CLOSED_KEYS)
    log = os.path.join(workdir, "mlperf_log.txt")
    assert_log_keys_as_recorded(events, "transformer")
    assert values(events, "submission_benchmark") == ["transformer"]
    assert values(events, "opt_name") == ["adam"]
    assert values(events, "opt_adam_epsilon") == [1e-9]
    assert metadata(events, "max_sequence_length")[0]["method"] == "discard"
    assert values(events, "train_samples") == [20000]
    assert values(events, "eval_samples") == [500]
    bleus = values(events, "eval_accuracy")
    assert bleus[-1] >= 0.9 and all(b < 0.9 for b in bleus[:-1])
    assert metadata(events, "run_stop")[0]["status"] == "success"
    assert compliance.check(log, RULESET).passed
    # The vocabulary travels with the run: built once into the cache, copied to the workdir.
    with open(os.path.join(workdir, "config.json")) as f:
        vocab_path = json.load(f)["data"]["vocab_path"]
    assert vocab_path.startswith(cache)
    with open(vocab_path, "rb") as a, open(os.path.join(workdir, "vocab.model"), "rb") as b:
        assert a.read() == b.read()


def test_reference_preset_reads_wmt_in_its_real_format(tmp_path, cache):
    """tfds's own wmt17/wmt14 builders read a tiny copy; a given vocabulary is loaded."""
    from tools import make_tiny_wmt

    data_dir = make_tiny_wmt.make(str(tmp_path / "wmt"), train_examples=20000,
                                  validation_examples=10, test_examples=200)
    from input_pipelines import numbers_translate, subwords

    vocab = str(tmp_path / "given.model")
    subwords.build_vocab([s for p in numbers_translate.pairs("train") for s in p], 512, vocab)
    workdir = str(tmp_path / "run")
    proc = run_main([f"--data_dir={data_dir}", "--workload=transformer", "--division=open",
                     f"--workdir={workdir}", "--config.max_epochs=2",
                     f"--config.vocab_path={vocab}", *SMALL_MODEL], cache)
    assert "transformer (reference, open division, seed 0)" in proc.stdout, \
        proc.stderr[-3000:]
    assert "wmt17_translate/de-en:train -> wmt14_translate/de-en:test" in proc.stdout
    log = os.path.join(workdir, "mlperf_log.txt")
    events = read_log(log)
    assert values(events, "train_samples") == [20000]
    assert values(events, "eval_samples") == [200]
    # The reference target, BLEU 25.0, is within reach of this easy corpus.
    assert values(events, "jaxperf_target") == ["bleu >= 0.25"]
    assert values(events, "eval_accuracy")[-1] >= 0.25
    assert metadata(events, "run_stop")[0]["status"] == "success"
    assert compliance.check(log, RULESET).passed
    assert open(os.path.join(workdir, "vocab.model"), "rb").read() == open(vocab, "rb").read()


def test_synthetic_run_needs_no_tensorflow(tmp_path, cache):
    workdir = str(tmp_path / "synthetic")
    proc = run_main_without(
        ["tensorflow", "tensorflow_datasets", "sentencepiece"],
        ["--workload=transformer", "--data=synthetic", f"--workdir={workdir}",
         "--config.max_epochs=1", "--config.train_examples=640", "--config.eval_examples=128"],
        cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run_stop aborted: synthetic data: throughput only" in proc.stdout
    events = read_log(os.path.join(workdir, "mlperf_log.txt"))
    assert values(events, "jaxperf_data") == ["synthetic"]
    assert len(values(events, "eval_accuracy")) == 1


def _one_line_error(proc, workdir, *needles):
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not os.path.exists(workdir), "a failed start must not leave a workdir behind"


def test_missing_vocabulary_file_is_one_line(tmp_path, cache):
    workdir = str(tmp_path / "w")
    proc = run_main(["--workload=transformer", f"--workdir={workdir}",
                     f"--config.vocab_path={tmp_path / 'nope.model'}"], cache)
    _one_line_error(proc, workdir, f"vocabulary file {tmp_path / 'nope.model'} does not exist",
                    "--config.vocab_path")


def test_dataset_without_the_eval_split_is_one_line(tmp_path, cache):
    from tools import make_tiny_wmt

    data_dir = str(tmp_path / "wmt")
    pairs = [("one", "eins"), ("two", "zwei")]
    make_tiny_wmt.write_dataset(data_dir, make_tiny_wmt.TRAIN_DATASET, {"train": pairs})
    make_tiny_wmt.write_dataset(data_dir, make_tiny_wmt.EVAL_DATASET, {"validation": pairs})
    workdir = str(tmp_path / "w")
    proc = run_main(["--workload=transformer", f"--data_dir={data_dir}", "--division=open",
                     f"--workdir={workdir}"], cache)
    _one_line_error(proc, workdir, "wmt14_translate/de-en", "has no split 'test'",
                    "it has: validation")


def test_vocabulary_of_the_wrong_size_is_one_line(tiny_run, tmp_path, cache):
    workdir = str(tmp_path / "w")
    given = os.path.join(tiny_run[0], "vocab.model")
    proc = run_main(["--workload=transformer", f"--workdir={workdir}",
                     f"--config.vocab_path={given}", "--config.vocab_size=1000"], cache)
    _one_line_error(proc, workdir, "has 512 pieces but --config.vocab_size=1000")


def test_hyperparameters_are_borrowed_from_a_transformer_log(tiny_run):
    from suite import division
    from suite.workloads.resnet import ResNetWorkload
    from suite.workloads.transformer import TransformerWorkload

    log = os.path.join(tiny_run[0], "mlperf_log.txt")
    borrowed = division.borrow(TransformerWorkload(), log)
    tiny = TransformerWorkload().config("tiny")
    assert borrowed == {"global_batch_size": tiny.global_batch_size, "base_lr": tiny.base_lr,
                        "warmup_steps": tiny.warmup_steps, "adam_b1": tiny.adam_b1,
                        "adam_b2": tiny.adam_b2}
    with pytest.raises(Exception, match="is a log of 'transformer', not 'resnet'"):
        division.borrow(ResNetWorkload(), log)


def test_submission_needs_the_benchmarks_run_count(tmp_path, cache):
    workdir = str(tmp_path / "w")
    proc = run_main(["--workload=transformer", "--runs=5", f"--submission_dir={tmp_path / 's'}",
                     f"--workdir={workdir}"], cache)
    _one_line_error(proc, workdir, "--submission_dir needs --runs=10", "transformer")


def test_ten_run_package_passes_the_official_package_checker(tiny_run, tmp_path):
    """MLPerf scores the Transformer on 10 runs. Ten copies of the tiny run's log, each
    given its own seed, stand in for ten runs: this checks the 0.7.0 package, not training."""
    from suite import benchmark, registry
    from suite.config import RunOptions

    with open(os.path.join(tiny_run[0], "mlperf_log.txt")) as f:
        text = f.read()
    assert text.count('"key": "seed", "value": 0,') == 1
    logs = []
    for seed in range(10):
        path = tmp_path / f"run_{seed}.txt"
        path.write_text(text.replace('"key": "seed", "value": 0,',
                                     f'"key": "seed", "value": {seed},'))
        logs.append(str(path))
    opts = RunOptions(workload="transformer", preset="tiny", workdir=str(tmp_path),
                      submission_platform="1xcpu")
    assert benchmark.package(registry.get("transformer"), opts, logs, str(tmp_path / "pkg"),
                             system_name=None, system_fields=[])
    assert os.path.exists(tmp_path / "pkg" / "jaxperf" / "results" / "1xcpu" / "transformer"
                          / "result_9.txt")
