"""Host memory freed by one CPU step kept for the next.

XLA:CPU allocates a step's temporaries and outputs afresh at every call: a ResNet-50 step at
batch 8 takes 1.1 GB of temporaries. glibc serves allocations that large with mmap and hands
them back to the kernel at free, so every step faulted all those pages in again: about
250 k page faults and 0.5 s of kernel time in a 2.7 s step on the 2-core CI host. With one
arena, no mmap and no trimming the freed memory stays in the process and the next step
reuses it (0 faults; the step took 2.3 s). The price is that the process keeps its peak.

It has to happen before XLA's threads first allocate: a thread that already has an arena of
its own keeps it, and a non-main arena serves large blocks with mmap whatever the settings.
So the entry points call it before any JAX backend starts. It applies only where JAX can run
on nothing but the CPU: on an accelerator host the device's allocator holds the big buffers,
and one arena would make the input pipeline's threads queue on one lock.
"""

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import os

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
OPT_OUT = "JAXPERF_HOST_MALLOC"  # =default leaves glibc's malloc as it is


def cpu_only() -> bool:
    """True where JAX has no platform but the CPU: JAX_PLATFORMS names only cpu, or no
    accelerator plugin (CUDA, ROCm, TPU) is installed. Decided without starting JAX."""
    named = [p.strip() for p in os.environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    if named:
        return all(p == "cpu" for p in named)
    if any(True for _ in importlib.metadata.entry_points(group="jax_plugins")):
        return False
    return not any(importlib.util.find_spec(name) for name in ("jax_plugins", "libtpu"))


def keep_freed_memory() -> bool:
    """Sets glibc's malloc to keep what is freed, on a CPU-only host; True if it did."""
    if os.environ.get(OPT_OUT) == "default" or not cpu_only():
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl and macOS differ
    except (OSError, AttributeError, TypeError):
        return False
    # Each call returns 1 on success; a trim threshold of -1 turns trimming off.
    return all(libc.mallopt(param, value) == 1 for param, value in
               ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
