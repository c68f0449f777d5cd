"""TensorBoard scalars of a run, under <workdir>/tensorboard, through tensorboardX (pure
Python: a synthetic run on an accelerator host, which has no TensorFlow, writes them too).

The x-axis is the global step, the optimizer steps done: a step's training loss and the
learning rate its update used (the schedule at the optimizer's count before it, as optax
applies it) sit at that step + 1, the block's eval, samples/s, step time and MFU at the
block's last step, as the MLPerf log's eval stands after it. A resumed run writes a new
events file into the same folder; it starts by purging, for TensorBoard's reader, whatever
an earlier process wrote past the step it resumed from (steps trained again after a kill).

One worker thread writes: an ImageNet block's thousands of events and the schedule's
evaluation take a few hundred milliseconds, which the run's clock would otherwise count.
"""

import concurrent.futures
import dataclasses
import glob
import os
import time

import jax
import numpy as np

from suite.recorders.base import BlockRecord, Recorder

FOLDER = "tensorboard"


def for_run(workload, cfg, opts, data) -> list[Recorder]:
    """Process 0's writer (one copy per job, copied up with a remote workdir's files)."""
    if jax.process_index() != 0:
        return []
    return [TensorBoard(os.path.join(opts.workdir, FOLDER), workload.learning_rate(cfg, data))]


def host_values(schedule, steps: np.ndarray) -> np.ndarray:
    """The schedule at each step, evaluated at once on the host's CPU (optax schedules are
    jnp functions), never queued behind the accelerator's work."""
    try:
        cpu = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS leaves the CPU out: the default device, then
        cpu = None
    with jax.default_device(cpu):
        values = np.asarray(jax.device_get(schedule(steps)), np.float64)
    return np.broadcast_to(values, steps.shape)  # a constant schedule returns one number


@dataclasses.dataclass(frozen=True)
class _Block:
    """What the worker writes of a block: plain host values, never the train state (the
    worker holding it would keep its buffers alive into the next block)."""

    step: int
    losses: np.ndarray
    seconds: float
    samples_per_s: float
    step_ms: float
    mfu: float | None
    host_overhead: float | None
    metrics: dict
    wall: float  # when the block was reported


class TensorBoard(Recorder):
    def __init__(self, directory: str, learning_rate):
        self.directory = directory
        self._learning_rate = learning_rate
        self._writer = None
        self._worker = concurrent.futures.ThreadPoolExecutor(1, "tensorboard")
        self._written: list[concurrent.futures.Future] = []

    def block(self, record: BlockRecord) -> None:
        r = record.report
        job = _Block(r.step, np.asarray(r.losses), r.stats.seconds, r.stats.samples_per_s,
                     r.stats.step_ms, record.mfu, r.stats.host_overhead,
                     {k: float(v) for k, v in r.metrics.items()}, time.time())
        self._written.append(self._worker.submit(self._write, job))

    def closed(self, status: str) -> None:
        self._worker.shutdown(wait=True)
        errors = [f.exception() for f in self._written if f.exception() is not None]
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if errors:  # the run itself is fine: its scalars are what is missing
            cause = (str(errors[0]).strip().splitlines() or [type(errors[0]).__name__])[0]
            print(f"warning: TensorBoard scalars of {len(errors)} blocks not written to "
                  f"{self.directory} ({cause[:200]})", flush=True)

    def _open(self, first_step: int):
        from tensorboardX import SummaryWriter

        os.makedirs(self.directory, exist_ok=True)
        # tensorboardX names files by the second and host: a count keeps two processes that
        # start within one second (a quick resume) from writing over each other's file.
        earlier = len(glob.glob(os.path.join(self.directory, "events.out.tfevents.*")))
        return SummaryWriter(self.directory, purge_step=first_step + 1,
                             filename_suffix=f".{earlier}")

    def _write(self, b: _Block) -> None:
        n = len(b.losses)
        first = b.step - n  # steps done before the block's first step in this process
        if self._writer is None:
            self._writer = self._open(first)
        w = self._writer
        rates = host_values(self._learning_rate, np.arange(first, b.step))  # optimizer counts
        for i, (loss, lr) in enumerate(zip(b.losses, rates, strict=True)):
            # The block's steps, spread over its measured time (their losses came together).
            wall = b.wall - b.seconds * (n - 1 - i) / n
            w.add_scalar("train/loss", float(loss), first + i + 1, walltime=wall)
            w.add_scalar("train/learning_rate", float(lr), first + i + 1, walltime=wall)
        w.add_scalar("perf/samples_per_s", b.samples_per_s, b.step, walltime=b.wall)
        w.add_scalar("perf/step_ms", b.step_ms, b.step, walltime=b.wall)
        if b.mfu is not None:
            w.add_scalar("perf/mfu", b.mfu, b.step, walltime=b.wall)
        if b.host_overhead is not None:
            w.add_scalar("perf/host_overhead", b.host_overhead, b.step, walltime=b.wall)
        for name, value in b.metrics.items():
            w.add_scalar(f"eval/{name}", value, b.step, walltime=b.wall)
        w.flush()  # a TensorBoard watching the run sees each block as it ends
