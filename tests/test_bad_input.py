"""Bad input: one line naming the problem and the fix, exit 2, no traceback, nothing written."""

import os

import pytest

from tests.helpers import run_main


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _expect_one_line_error(args, workdir, cache, *needles):
    proc = run_main([*args, f"--workdir={workdir}"], cache)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not os.path.exists(workdir), "a failed start must not leave a workdir behind"
    return errors[0]


@pytest.mark.parametrize("args,needles", [
    (["--workload=nope"], ["unknown workload 'nope'", "resnet"]),
    (["--preset=huge"], ["unknown preset 'huge'", "reference, tiny"]),
    (["--data=fake"], ["--data must be one of real, synthetic"]),
    (["--division=closed"], ["open division only", "--division=open"]),
    (["--submission_status=x"], ["--submission_status must be one of"]),
    (["--seed=abc"], ["--seed=abc"]),
    (["--config.base_lr=abc"], ["--config.base_lr=abc"]),
    (["--config.no_such_field=1"], ["unknown config field 'no_such_field'", "base_lr"]),
    (["--config.global_batch_size=0"], ["--config.global_batch_size must be a positive"]),
    (["--config.model=resnet18"], ["--config.model must be one of", "resnet_tiny224"]),
    (["--data_dir=/no/such/dir"], ["--data_dir /no/such/dir does not exist"]),
    (["--preset=reference"], ["pass --data_dir", "--data=synthetic"]),
    (["stray_argument"], ["unexpected arguments stray_argument"]),
])
def test_bad_flags(args, needles, tmp_path, cache):
    _expect_one_line_error(args, str(tmp_path / "w"), cache, *needles)


def test_batch_that_does_not_split_over_devices(tmp_path, cache):
    proc = run_main(["--config.global_batch_size=100", f"--workdir={tmp_path / 'w'}"], cache,
                    devices=8)
    assert proc.returncode == 2
    assert "must divide evenly over 8 data-parallel devices" in proc.stderr
    assert not os.path.exists(tmp_path / "w")


def test_rnnt_data_dir_without_librispeech(tmp_path, cache):
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_one_line_error(["--workload=rnnt", f"--data_dir={empty}"], str(tmp_path / "w"),
                           cache, "LibriSpeech/train-clean-100 not found", "openslr.org/12")


def test_data_dir_without_the_dataset(tmp_path, cache):
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_one_line_error([f"--data_dir={empty}"], str(tmp_path / "w"), cache,
                           "no prepared imagenet2012", "tfds build imagenet2012")


def test_unwritable_workdir(tmp_path, cache):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    _expect_one_line_error([], str(blocker / "run"), cache, "is a file, not a directory")


def test_finished_workdir_is_not_reused(tmp_path, cache):
    workdir = tmp_path / "done"
    workdir.mkdir()
    (workdir / "mlperf_log.txt").write_text(
        ':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "INTERVAL_END", '
        '"key": "run_stop", "value": null, "metadata": {"status": "success"}}\n')
    before = sorted(os.listdir(workdir))
    proc = run_main([f"--workdir={workdir}"], cache)
    assert proc.returncode == 2
    assert "already holds a finished run; pass a new --workdir" in proc.stderr
    assert sorted(os.listdir(workdir)) == before


def test_help_lists_the_workloads_and_flags(cache):
    proc = run_main(["--help"], cache)
    listed = " ".join(proc.stdout.split())
    assert "Registered: bert, dlrm_dcnv2, minigo, resnet, rnnt, transformer" in listed
    for flag in ("--preset", "--data_dir", "--data:", "--workdir", "--division", "--seed"):
        assert flag in proc.stdout, flag
