"""The system under test: samples resident on the device, one compiled program per batch
size, and a worker thread that batches queries and answers LoadGen.

issue_query only enqueues, so LoadGen's issuing thread never waits on the device. The
worker takes what is queued, up to the scenario's batch; in Server mode it also waits for
more until the oldest sample has spent its batching budget (then a late query would cost
more latency than a fuller batch saves). Answers are copied to the host before
QuerySamplesComplete: JAX dispatches asynchronously, and a latency that stopped at dispatch
would not include the compute.
"""

import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np


class Predictor:
    """apply(variables, inputs) compiled for every batch size in buckets, ahead of time:
    nothing compiles once a test runs (calling a jax Compiled never recompiles)."""

    def __init__(self, apply, variables, sample_spec: dict, capacity: int, buckets):
        self.buckets = tuple(sorted(buckets))
        self.capacity = capacity
        self.variables = jax.device_put(variables)

        def gathered(variables, pool, rows):
            return apply(variables, {k: jnp.take(v, rows, axis=0) for k, v in pool.items()})

        pool_spec = {k: jax.ShapeDtypeStruct((capacity, *shape), dtype)
                     for k, (shape, dtype) in sample_spec.items()}
        var_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                self.variables)
        jitted = jax.jit(gathered)
        self.lowered = {b: jitted.lower(var_spec, pool_spec, jax.ShapeDtypeStruct((b,), jnp.int32))
                        for b in self.buckets}
        self.compiled = {b: lowered.compile() for b, lowered in self.lowered.items()}

    def matmul_types(self) -> dict[str, int]:
        """Convolutions and dots of the largest program by input types, from the compiled
        HLO: whether int8 really runs as int8 (suite.serving.quantize.matmuls)."""
        from suite.serving import quantize

        counts: dict[str, int] = {}
        for m in quantize.matmuls(self.compiled[self.buckets[-1]].as_text()):
            key = "x".join(m.input_types)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def bucket(self, n: int) -> int:
        for b in self.buckets:
            if b >= n:
                return b
        raise ValueError(f"batch of {n} is larger than the largest bucket {self.buckets[-1]}")

    def __call__(self, pool: dict, rows: np.ndarray) -> np.ndarray:
        """Answers of pool rows, on the host (the copy waits for the compute)."""
        n = len(rows)
        padded = np.zeros(self.bucket(n), np.int32)
        padded[:n] = rows
        out = self.compiled[len(padded)](self.variables, pool, padded)
        return np.asarray(out)[:n]


class Pool:
    """The samples LoadGen loaded, on the device in one fixed-size array per input (the
    programs are compiled for that size); sample index -> row."""

    def __init__(self, samples, capacity: int):
        self.samples, self.capacity = samples, capacity
        self.arrays, self.rows = None, {}

    def load(self, indices) -> None:
        # MultiStream rounds the set up to whole queries, repeating samples: one row each.
        indices = list(dict.fromkeys(indices))
        if len(indices) > self.capacity:
            raise ValueError(f"LoadGen loaded {len(indices)} samples, more than the "
                             f"{self.capacity} the programs were compiled for")
        host = self.samples.take(indices)
        padded = {k: np.zeros((self.capacity, *a.shape[1:]), a.dtype) for k, a in host.items()}
        for k, a in host.items():
            padded[k][:len(indices)] = a
        self.arrays = jax.device_put(padded)
        jax.block_until_ready(self.arrays)
        self.rows = {index: row for row, index in enumerate(indices)}

    def unload(self, indices) -> None:
        for index in indices:
            self.rows.pop(index, None)
        if not self.rows:
            self.arrays = None


class SUT:
    """Batches queued samples on a worker thread and completes them with LoadGen."""

    def __init__(self, lg, predictor: Predictor, pool: Pool, max_batch: int,
                 wait_s: float = 0.0):
        self.lg, self.predictor, self.pool = lg, predictor, pool
        self.max_batch, self.wait_s = max_batch, wait_s
        self.queue: queue.Queue = queue.Queue()
        self.batches = 0  # for tests and reports: how the samples were grouped
        self.samples = 0
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def issue_query(self, query_samples) -> None:
        now = time.monotonic()
        for s in query_samples:
            self.queue.put((s.id, s.index, now))

    def flush_queries(self) -> None:
        pass  # nothing is held back: the worker never waits past a sample's budget

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _batch(self, first) -> tuple[list, bool]:
        batch, deadline = [first], first[2] + self.wait_s
        while len(batch) < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _work(self) -> None:
        lg = self.lg
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch, done = self._batch(first)
            rows = np.fromiter((self.pool.rows[index] for _, index, _ in batch), np.int32,
                               len(batch))
            answers = np.ascontiguousarray(self.predictor(self.pool.arrays, rows))
            base, size = answers.ctypes.data, answers.itemsize * int(np.prod(answers.shape[1:]))
            # `answers` stays referenced until QuerySamplesComplete has copied the bytes.
            lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, base + i * size, size)
                                     for i, (sample_id, _, _) in enumerate(batch)])
            self.batches += 1
            self.samples += len(batch)
            if done:
                return
