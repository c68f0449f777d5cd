"""The system under test: samples resident on the device, one compiled program per batch
size, and a worker thread that batches queries and answers LoadGen.

issue_query only enqueues, so LoadGen's issuing thread never waits on the device. The
worker takes what is queued, up to the scenario's batch; in Server mode it also waits for
more until the oldest sample has spent its batching budget (then a late query would cost
more latency than a fuller batch saves). Answers are copied to the host before
QuerySamplesComplete: JAX dispatches asynchronously, and a latency that stopped at dispatch
would not include the compute.
"""

import os
import queue
import sys
import threading
import time
import traceback

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
        self.compiled = {
            b: jitted.lower(var_spec, pool_spec, jax.ShapeDtypeStruct((b,), jnp.int32)).compile()
            for b in self.buckets}

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

    def dispatch(self, pool: dict, rows: np.ndarray):
        """Starts the answers of pool rows on the device; returns (device array, count)."""
        n = len(rows)
        padded = np.zeros(self.bucket(n), np.int32)
        padded[:n] = rows
        return self.compiled[len(padded)](self.variables, pool, padded), n

    def __call__(self, pool: dict, rows: np.ndarray) -> np.ndarray:
        """Answers of pool rows, on the host (the copy waits for the compute)."""
        out, n = self.dispatch(pool, rows)
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
        self.queue: queue.SimpleQueue = queue.SimpleQueue()  # C-level: cheap hand-offs
        self.batches = 0  # for tests and reports: how the samples were grouped
        self.samples = 0
        self.thread = threading.Thread(target=self._work_or_exit, daemon=True)
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

    def _batch(self, first, wait: bool) -> tuple[list, bool]:
        """Samples queued after `first`, up to max_batch; with wait, also those arriving
        within first's batching budget."""
        batch, deadline = [first], first[2] + (self.wait_s if wait else 0.0)
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

    def _complete(self, batch, out, n) -> None:
        lg = self.lg
        answers = np.ascontiguousarray(np.asarray(out)[:n])  # waits for the compute
        size = answers.itemsize * (answers.size // max(n, 1))
        base = answers.ctypes.data
        # `answers` stays referenced until QuerySamplesComplete has copied the bytes.
        lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, base + i * size, size)
                                 for i, (sample_id, _, _) in enumerate(batch)])
        self.batches += 1
        self.samples += n

    def _work_or_exit(self) -> None:
        # LoadGen waits for every sample it issued: a worker that died would leave the test
        # waiting forever, so a failure ends the process, its last line naming the cause.
        try:
            self._work()
        except BaseException as e:  # noqa: BLE001 - any failure, reported, then exit
            traceback.print_exc()
            print(f"the system under test failed: {type(e).__name__}: {e}", file=sys.stderr,
                  flush=True)
            os._exit(3)

    def _work(self) -> None:
        # Two batches in flight: the next one is dispatched before the previous one's answers
        # are fetched and completed, so the device never waits on that host work. When
        # nothing more is queued the batch in flight is completed at once (a latency-bound
        # query must not wait for a successor that LoadGen issues only after it).
        pending = None
        while True:
            if pending is None:
                first = self.queue.get()
            else:
                try:
                    first = self.queue.get_nowait()
                except queue.Empty:
                    self._complete(*pending)
                    pending = None
                    continue
            if first is None:  # stop()
                if pending is not None:
                    self._complete(*pending)
                return
            batch, stop = self._batch(first, wait=pending is None)
            rows = np.fromiter((self.pool.rows[index] for _, index, _ in batch), np.int32,
                               len(batch))
            out, n = self.predictor.dispatch(self.pool.arrays, rows)
            if pending is not None:
                self._complete(*pending)
            pending = (batch, out, n)
            if stop:
                self._complete(*pending)
                return
