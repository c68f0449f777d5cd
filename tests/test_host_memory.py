"""Freed host memory kept for the next step on a CPU-only host, and the CPU step that
donates nothing (suite.compile.donates_state)."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from common import host_memory
from suite import compile as compile_lib
from suite import config as config_lib
from suite import mesh as mesh_lib
from tests.helpers import ROOT
from tests.toy_workload.workload import LinearDigits

# A fresh process: allocates and frees 256 MB four times on a thread of its own (where XLA
# allocates), counting the page faults of each round after the first.
_ROUNDS = textwrap.dedent("""
    import ctypes, resource, sys, threading
    from common import host_memory
    kept = host_memory.keep_freed_memory()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    faults = []
    def rounds():
        for _ in range(4):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            p = libc.malloc(256 << 20)
            ctypes.memset(p, 1, 256 << 20)
            libc.free(p)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    t = threading.Thread(target=rounds)
    t.start(); t.join()
    print(kept, max(faults[1:]))
""")


def _faults(**env) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _ROUNDS], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


def test_freed_memory_is_reused_without_faulting_it_in_again():
    kept, faults = _faults(JAX_PLATFORMS="cpu")
    assert kept == "True"
    assert faults < 1000  # 256 MB is 65,536 pages
    kept, faults = _faults(JAX_PLATFORMS="cpu", **{host_memory.OPT_OUT: "default"})
    assert kept == "False"
    assert faults > 60_000  # glibc's own way: every round faults every page in again


@pytest.mark.parametrize("platforms, only", [("cpu", True), ("cuda", False),
                                             ("cpu,cuda", False), ("tpu", False)])
def test_cpu_only_reads_jax_platforms(monkeypatch, platforms, only):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert host_memory.cpu_only() is only


def test_a_cpu_step_donates_nothing_unless_asked():
    workload = LinearDigits()
    cfg = config_lib.resolve(workload, workload.config("tiny"), 1, "cpu")
    mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
    assert not compile_lib.donates_state(mesh)
    for donate, aliased in ((None, False), (True, True)):
        fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1, donate=donate)
        assert (fns.train_step.memory_analysis().alias_size_in_bytes > 0) is aliased
