"""Batches staged on the devices ahead of the step that reads them.

A training step dispatches asynchronously, so the host is free while the device computes.
Staged uses that time: when step n's batch is handed out, batch n+1 is already on the
devices and batch n+2 is read from the host pipeline and sent, so the host read and the
host-to-device copy overlap the compute instead of sitting between two steps.
"""

import collections
import math
import time
from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding

from suite import mesh as mesh_lib

DEPTH = 2  # the batch a step reads, and the next one in flight


class Staged:
    """next() -> a global batch on the devices; `depth` of them placed ahead.

    Each process places its own rows (mesh.to_global), so a multi-host job stages exactly
    as a single host does. wait_s is the host time spent reading from the pipeline and
    starting the copies: the input's share of the loop, not hidden behind the compute.
    """

    def __init__(self, batches: Iterator[dict], sharding: NamedSharding, depth: int = DEPTH):
        if depth < 1:
            raise ValueError(f"staging depth must be >= 1, got {depth}")
        self._batches, self._sharding, self._depth = batches, sharding, depth
        self._ahead: collections.deque = collections.deque()
        self.wait_s = 0.0

    def __iter__(self) -> "Staged":
        return self

    def __next__(self) -> dict[str, jax.Array]:
        while len(self._ahead) < self._depth:
            t0 = time.perf_counter()
            try:
                local = next(self._batches)
            except StopIteration:
                self.wait_s += time.perf_counter() - t0
                break
            self._ahead.append(mesh_lib.to_global(local, self._sharding))
            self.wait_s += time.perf_counter() - t0
        if not self._ahead:
            raise StopIteration
        return self._ahead.popleft()


def batch_bytes(spec: dict) -> int:
    """Bytes of one batch shaped like spec (name -> ShapeDtypeStruct)."""
    return sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in spec.values())


def describe(spec: dict, processes: int) -> str:
    """One line: what a step moves from host to devices, field by field."""
    fields = ", ".join(f"{name} {np.dtype(s.dtype).name}{list(s.shape)}"
                       for name, s in spec.items())
    per_process = batch_bytes(spec)
    total = per_process * processes
    where = "" if processes == 1 else f" ({processes} processes x {per_process / 1e6:,.2f} MB)"
    return (f"input: {total / 1e6:,.2f} MB a step host-to-device{where}, staged "
            f"{DEPTH} steps ahead: {fields}")
