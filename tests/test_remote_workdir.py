"""A workdir in a bucket (suite.remote_workdir), tried with file:// URLs of local folders:
the same epath calls, staging and copying as for gs://, without a cloud."""

import json
import os
import shutil

from suite import compliance, remote_workdir
from tests.helpers import metadata, one_line_error, read_log, run_main, run_main_without, values


def _write(path, text: str, mode: str = "w") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def _read(path) -> str:
    with open(path) as f:
        return f.read()


def test_the_copier_copies_what_changed_and_nothing_else(tmp_path):
    staging, remote = tmp_path / "staging", tmp_path / "bucket" / "run"
    _write(staging / "mlperf_log.txt", ":::MLLOG 1\n")
    _write(staging / "config.json", "{}")
    _write(staging / "tensorboard" / "events.1", "e")
    _write(staging / "checkpoints" / "12" / "x", "orbax writes these into the remote itself")
    copier = remote_workdir.Copier(str(staging), f"file://{remote}")
    assert copier.push() == ["config.json", "mlperf_log.txt", os.path.join("tensorboard",
                                                                           "events.1")]
    assert copier.push() == []  # nothing changed
    _write(staging / "mlperf_log.txt", ":::MLLOG 2\n", "a")
    assert copier.push() == ["mlperf_log.txt"]
    assert _read(remote / "mlperf_log.txt") == ":::MLLOG 1\n:::MLLOG 2\n"
    # Another copier over the same staging copy (the next process) knows what was copied.
    assert remote_workdir.Copier(str(staging), f"file://{remote}").push() == []
    assert sorted(os.listdir(remote)) == ["config.json", "mlperf_log.txt", "tensorboard"]


def test_a_reader_of_the_remote_never_sees_a_half_copied_file(tmp_path):
    staging, remote = tmp_path / "staging", tmp_path / "remote"
    _write(staging / "mlperf_log.txt", "old\n" * 1000)
    copier = remote_workdir.Copier(str(staging), f"file://{remote}")
    copier.push()
    with open(remote / "mlperf_log.txt") as reader:  # opened before the next copy
        _write(staging / "mlperf_log.txt", "new\n" * 3000)
        copier.push()
        # Written in place, the open file would have been truncated and rewritten under
        # the reader; a rename leaves it whole and puts the new one beside it.
        assert reader.read() == "old\n" * 1000
    assert _read(remote / "mlperf_log.txt") == "new\n" * 3000
    assert os.listdir(remote) == ["mlperf_log.txt"]  # no part file left behind


def test_pull_makes_the_staging_copy_what_the_remote_holds(tmp_path):
    remote, staging = tmp_path / "remote", tmp_path / "staging"
    _write(remote / "run_0" / "mlperf_log.txt", "log")
    _write(remote / "run_0" / "checkpoints" / "24" / "state", "big")
    _write(remote / "final_weights" / "params", "big")
    _write(remote / "final_weights.json", "{}")
    _write(staging / "mlperf_log.txt", "a staging copy an earlier process left")
    url = f"file://{remote}"
    assert remote_workdir.pull(url, str(staging)) == 2
    found = sorted(os.path.relpath(os.path.join(d, f), staging)
                   for d, _, files in os.walk(staging) for f in files)
    assert found == [remote_workdir.MANIFEST, "final_weights.json",
                     os.path.join("run_0", "mlperf_log.txt")]
    assert _read(staging / "run_0" / "mlperf_log.txt") == "log"
    assert remote_workdir.Copier(str(staging), url).push() == []  # all there already


def test_a_bucket_this_machine_cannot_open_is_one_line(tmp_path):
    # As on a TPU VM without TensorFlow or gcsfs: epath has no library for gs://.
    cache = str(tmp_path / "cache")
    proc = run_main_without(["tensorflow", "gcsfs"], ["--workdir=gs://bucket/exp/run"], cache)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: --workdir gs://bucket/exp/run cannot be opened "
                                "(ImportError: Please install gcsfs"), errors[0]
    assert "jaxperf[tpu]" in errors[0]
    assert not os.path.exists(cache)  # no staging copy either


def test_remote_paths_epath_cannot_name_are_one_line(tmp_path, monkeypatch):
    one_line_error(lambda: remote_workdir.check_url("ftp://host/run"),
                   "no filesystem library here opens ftp://")
    one_line_error(lambda: remote_workdir.fs_path("file://run"), "file:///dir/run")
    # The staging copy is the same for the same remote, another for another.
    monkeypatch.setenv("JAXPERF_CACHE", str(tmp_path))
    one = remote_workdir.staging_dir("gs://b/exp/run-1")
    assert one == remote_workdir.staging_dir("gs://b/exp/run-1/")
    assert one != remote_workdir.staging_dir("gs://b/exp_run-1")
    assert one.startswith(str(tmp_path / "workdirs" / "b_exp_run-1-"))


def test_a_new_machine_resumes_from_the_remote_workdir(tmp_path, monkeypatch):
    """Paused after 2 of 3 epochs with a file:// workdir, the staging copy deleted (a new
    VM), the same command resumes from the remote's checkpoint and ends there."""
    cache, remote = str(tmp_path / "cache"), tmp_path / "bucket" / "run"
    url = f"file://{remote}"
    monkeypatch.setenv("JAXPERF_CACHE", cache)
    staging = remote_workdir.staging_dir(url)
    args = [f"--workdir={url}", "--config.max_epochs=3"]
    first = run_main([*args, "--stop_after_blocks=2"], cache)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "paused after 2 blocks" in first.stdout
    assert f"workdir {staging} (copied to {url})" in first.stdout
    # After the pause the remote holds the run's record: log, config, eval metrics, the
    # checkpoint; the staging copy holds no checkpoint.
    for name in ("mlperf_log.txt", "config.json", "eval_metrics.jsonl"):
        assert _read(remote / name) == _read(os.path.join(staging, name)), name
    assert os.listdir(remote / "checkpoints") == ["24"]  # 12 steps an epoch
    assert not os.path.exists(os.path.join(staging, "checkpoints"))
    assert values(read_log(remote / "mlperf_log.txt"), "run_stop") == []

    shutil.rmtree(staging)
    second = run_main(args, cache)
    # 3 epochs do not reach the target: the budget ends the run (exit 1), run_stop aborted.
    assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
    assert "[resuming]" in second.stdout and "not reached within 3 epochs" in second.stdout
    log = remote / "mlperf_log.txt"
    assert _read(log) == _read(os.path.join(staging, "mlperf_log.txt"))
    events = read_log(log)
    assert values(events, "jaxperf_resume") == [3]
    assert [m["first_epoch_num"] for m in metadata(events, "block_start")] == [1, 2, 3]
    assert [m["status"] for m in metadata(events, "run_stop")] == ["aborted"]
    assert compliance.check(str(log), "4.0.0").passed
    # Pulled down and appended to: the first machine's evals and the new one's.
    assert [json.loads(line)["epochs"] for line in _read(remote / "eval_metrics.jsonl")
            .splitlines()] == [1, 2, 3]
    assert os.path.isdir(remote / "final_weights")
    assert json.loads(_read(remote / "final_weights.json"))["status"] == "aborted"
