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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """One real 5-run benchmark of the tiny preset, packaged: shared by the tests of
    scoring, packaging and reporting, since five trainings dominate their cost.

    Returns (workdir holding run_<i>/, submission dir, the finished process).
    """
    import subprocess

    base = tmp_path_factory.mktemp("tiny-benchmark")
    workdir, submission_dir = str(base / "runs"), str(base / "submission")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXPERF_CACHE=str(base / "cache"), PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "suite.main", "--workload=resnet", "--runs=5",
         f"--workdir={workdir}", f"--submission_dir={submission_dir}",
         "--submission_platform=1xcpu", "--nocheck_log"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, submission_dir, proc


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (--dist loadgroup), each test file runs in one worker, so module
    fixtures (a tiny training shared by a file's tests) run once; files that share a
    session fixture name one group (tiny_benchmark)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
