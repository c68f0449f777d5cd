"""Timing train steps for the throughput tools: one device sync at the end, since JAX
dispatches ahead and a clock read after dispatch times nothing."""

import time
from collections.abc import Iterator
from typing import Any

import jax

from suite.loops.supervised import sync_every_step


def timed_steps(train_step, state, key, batches: Iterator, steps: int
                ) -> tuple[Any, Any, list, float]:
    """(state, key, each step's metrics, seconds) of `steps` steps, each on next(batches),
    waited for once at the end: each step needs the state of the one before."""
    t0 = time.perf_counter()
    metrics = []
    for _ in range(steps):
        state, m, key = train_step(state, next(batches), key)
        if sync_every_step():
            jax.block_until_ready(m)
        metrics.append(m)
    jax.block_until_ready(metrics[-1])
    return state, key, metrics, time.perf_counter() - t0
