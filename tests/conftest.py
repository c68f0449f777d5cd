"""Test session setup: 8 fake CPU devices, so sharding is tested without accelerators.

Must run before anything imports jax; subprocess runs get their own environment.
"""

import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One XLA compilation cache for the session, subprocesses included: the same small programs
# compile in many tests (the five runs of a tiny benchmark, the steps of every end-to-end
# run), and compiling is most of a tiny run's cost on two cores.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxperf-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# Runs see no RAPL counters unless a test gives them a fake powercap tree: on a host whose
# counters are readable (bare metal, as root) every log would gain energy events.
if "JAXPERF_POWERCAP_ROOT" not in os.environ:
    os.environ["JAXPERF_POWERCAP_ROOT"] = tempfile.mkdtemp(prefix="jaxperf-no-powercap-")
    atexit.register(shutil.rmtree, os.environ["JAXPERF_POWERCAP_ROOT"], True)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# As every entry point does before JAX starts: steps reuse freed host memory (no page faults).
from common import host_memory  # noqa: E402

host_memory.keep_freed_memory()


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """One real 5-run benchmark of the tiny preset, packaged: shared by the tests of
    scoring, packaging and reporting, since five trainings dominate their cost.

    Under pytest-xdist each worker has its own session, so the first worker to get here
    trains it, under a lock, in the directory all workers share; the others wait and reuse
    it. Tests only read it. Returns (workdir holding run_<i>/, submission dir, the
    finished process's outputs).
    """
    import fcntl
    import json
    import subprocess
    import types

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers' own base directories
    base = root / "tiny-benchmark"
    workdir, submission_dir = str(base / "runs"), str(base / "submission")
    with open(root / "tiny-benchmark.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = base / "finished.json"
        if not done.exists():
            env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
                       JAXPERF_CACHE=str(base / "cache"), PYTHONUNBUFFERED="1")
            proc = subprocess.run(
                [sys.executable, "-m", "suite.main", "--workload=resnet", "--runs=5",
                 f"--workdir={workdir}", f"--submission_dir={submission_dir}",
                 "--submission_platform=1xcpu", "--nocheck_log"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
            done.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout,
                                        "stderr": proc.stderr}))
        proc = types.SimpleNamespace(**json.loads(done.read_text()))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, submission_dir, proc


@pytest.fixture(scope="session")
def numbers_dir(tmp_path_factory) -> str:
    """The built-in en->de numbers corpus, prepared as a tfds dataset (translation tests)."""
    from input_pipelines import numbers_translate as nt

    data_dir = str(tmp_path_factory.mktemp("numbers"))
    nt.prepare(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def numbers(numbers_dir):
    from input_pipelines import numbers_translate as nt
    from input_pipelines import translation as tr

    return tr.open_builder(nt.NAME, numbers_dir)


@pytest.fixture(scope="session")
def vocab(numbers, tmp_path_factory):
    from input_pipelines import subwords as sw
    from input_pipelines import translation as tr

    path = str(tmp_path_factory.mktemp("vocab") / "numbers.model")
    return sw.build_vocab(tr.train_texts(numbers, "train"), 512, path)


@pytest.fixture(scope="session")
def tiny_wmt(tmp_path_factory) -> str:
    from tools import make_tiny_wmt

    out = str(tmp_path_factory.mktemp("tiny_wmt"))
    return make_tiny_wmt.make(out, train_examples=300, validation_examples=20, test_examples=50)


@pytest.fixture
def featurised(monkeypatch):
    """The utterances speech_batches featurises, in order, by the real function."""
    from input_pipelines import speech_batches

    calls = []
    real = speech_batches.features

    def counted(utterance, *args, **kwargs):
        calls.append(utterance.id)
        return real(utterance, *args, **kwargs)

    monkeypatch.setattr(speech_batches, "features", counted)
    return calls
