"""Synthetic batches from a workload's batch spec: for throughput runs only, never a result.

One batch is generated per split and fed again every step, so the host still
hands a fresh batch to the devices each step (as a real pipeline does) without
spending host time making random numbers.
"""

from collections.abc import Iterator

import numpy as np


def _fill(shape: tuple[int, ...], dtype, rng: np.random.Generator, name: str,
          high=None) -> np.ndarray:
    dtype = np.dtype(dtype)
    if name == "mask":
        return np.ones(shape, dtype)
    if high is not None:
        return rng.integers(0, high, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.integer) or name == "label":  # float labels: clicks, 0 or 1
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype)


def batches(spec: dict, seed: int = 0, high: dict | None = None
            ) -> Iterator[dict[str, np.ndarray]]:
    """Endless copies of one random batch shaped like spec (name -> ShapeDtypeStruct).

    high: exclusive upper bounds of integer fields, broadcast against the field (a
    workload's synthetic_high: ids spread over whole tables, as real lookups are).
    """
    rng = np.random.default_rng(seed)
    high = high or {}
    batch = {k: _fill(tuple(s.shape), s.dtype, rng, k, high.get(k)) for k, s in spec.items()}
    while True:
        yield batch


def eval_batches(spec: dict, steps: int, seed: int = 1, high: dict | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
    it = batches(spec, seed, high)
    for _ in range(steps):
        yield next(it)
