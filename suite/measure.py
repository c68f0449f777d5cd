"""Timing train steps and evals the way a run spends its time, for the throughput tools.

tools.bench_step times the step alone on one placed batch (Stepper); tools.project_ttt times what a
run pays between run_start and run_stop: steps fed by the run's own input pipeline, a
whole eval, and what the first step and the first eval cost beyond later ones. Steps are
timed with timed_steps: one device sync at the end, since JAX dispatches ahead and a clock
read after dispatch times nothing.
"""

import dataclasses
import itertools
import time
from collections.abc import Iterator
from typing import Any

import jax

from common.errors import UserError
from input_pipelines import synthetic
from suite import compile as compile_lib
from suite import config as config_lib
from suite import loops, mlperf_log, perf, staging
from suite import mesh as mesh_lib
from suite.config import RunOptions
from suite.loops.supervised import SupervisedLoop, sync_every_step
from suite.projection import Costs
from suite.workload import DataInfo, Workload


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


class Stepper:
    """One workload's compiled train step, its state and one placed synthetic batch: run(n)
    times n steps. tools.bench_step times it alone, tools.bench_suite alternates it with
    another program's step and tools.bench_loop with the loop's blocks."""

    def __init__(self, workload: Workload, cfg, mesh=None, fns=None):
        """Compiles the step of cfg (resolved here); or, given the mesh and the compiled
        functions a caller built itself (tools.bench_loop: its loop's own step), times those,
        with cfg the resolved config they were built for."""
        if (mesh is None) != (fns is None):
            raise ValueError("pass both mesh and fns, or neither")
        if fns is None:
            cfg = config_lib.resolve(workload, cfg, jax.device_count(), jax.default_backend())
            mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model)
        self.workload, self.cfg, self.mesh = workload, cfg, mesh
        self.local = cfg.global_batch_size // jax.process_count()
        t0 = time.perf_counter()
        self.fns = fns or compile_lib.build(workload, cfg, mesh, self.local,
                                            jax.process_count(), every_shape=False)
        self.compile_s = None if fns else time.perf_counter() - t0  # None: not compiled here
        self.state = self.key = self.batch = None

    def figures(self) -> dict:
        """What the compiled step says before it runs: memory, FLOPs, bytes, roofline."""
        cfg = self.cfg
        memory = self.fns.train_step.memory_analysis()
        costs = self.fns.train_step.cost_analysis()
        # One device's share of the step, hand-counted: what MFU and the roofline are about.
        device_flops = (self.workload.flops_per_example(cfg) * cfg.global_batch_size
                        / jax.device_count())
        bound = perf.roofline(jax.devices()[0].device_kind, device_flops,
                              costs.get("bytes accessed"))
        return {"device": f"{jax.device_count()}x{jax.devices()[0].device_kind}",
                "dtype": cfg.compute_dtype, "global_batch": cfg.global_batch_size,
                "compile_s": self.compile_s,
                "temp_bytes": getattr(memory, "temp_size_in_bytes", None),
                "argument_bytes": getattr(memory, "argument_size_in_bytes", None),
                "device_flops": device_flops, "xla_flops": costs.get("flops"),
                "bytes_accessed": costs.get("bytes accessed"),
                "bound": bound and bound.bound,
                "bound_step_ms": bound and 1e3 * bound.min_step_s,
                "bound_mfu": bound and bound.max_mfu}

    def start(self, state=None) -> None:
        """The state (given, e.g. a loop's own init, or a fresh init), the step's key and the
        one batch every step reads."""
        self.state = self.fns.init(jax.random.key(0)) if state is None else state
        self.key = jax.jit(lambda: jax.random.key(1),
                           out_shardings=mesh_lib.replicated(self.mesh))()
        batches = synthetic.batches(self.workload.batch_spec(self.cfg, "train", self.local),
                                    high=self.workload.synthetic_high(self.cfg))
        # Placed once: this times the step, not the host-to-device copy.
        self.batch = mesh_lib.to_global(next(batches), self.fns.batch_sharding)

    def run(self, steps: int) -> tuple[float, list]:
        """(seconds, each step's metrics, still on the device) of `steps` steps."""
        self.state, self.key, metrics, seconds = timed_steps(
            self.fns.train_step, self.state, self.key, itertools.repeat(self.batch), steps)
        return seconds, metrics

    def rates(self, steps: int, seconds: float) -> dict:
        rate = steps * self.cfg.global_batch_size / seconds
        flops = self.workload.flops_per_example(self.cfg)
        return {"step_ms": 1e3 * seconds / steps, "samples_per_s": rate,
                "tflops_per_s": flops * rate / 1e12,
                "mfu": perf.mfu(flops, rate, perf.peak_flops(jax.devices()[0].device_kind),
                                jax.device_count())}


@dataclasses.dataclass(frozen=True)
class Measurement:
    costs: Costs
    steps: int  # timed steady steps
    seconds: float  # they took
    setup_s: float  # compile and init: outside MLPerf's clock, and outside the projection
    first_s: float  # the first step from the fresh pipeline
    first_eval_s: float  # the first eval
    eval_metrics: dict  # of the measured eval (its example count, say)


WARMUP_STEPS = 3


def run_costs(workload: Workload, cfg, opts: RunOptions, data: DataInfo,
              minutes: float) -> Measurement:
    """Compiles and initialises as a run does (untimed), then, within `minutes`: the first
    step from the freshly built input pipeline, warm-up steps, two evals of the whole eval
    split (the first one's excess is start-up), and steady steps in chunks of a block's
    length (a run syncs once per block). The evals take what they take, budget or not."""
    if not minutes > 0:
        raise UserError(f"--minutes must be > 0, got {minutes}")
    if loops.get(workload.kind) is not SupervisedLoop:
        raise UserError(f"{workload.name} trains in a {workload.kind} loop; projection "
                        "measures supervised training only")
    t0 = time.perf_counter()
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model)
    loop = SupervisedLoop(workload, cfg, opts, data, mesh)
    state = loop.init_state(opts.seed)
    jax.block_until_ready(state)
    inputs = loop.prepare({"step": 0})  # built before run_start, as a run builds it
    setup_s = time.perf_counter() - t0

    train_step = loop.fns.train_step
    batches = staging.Staged(inputs, loop.fns.batch_sharding)  # as the loop reads them
    deadline = time.perf_counter() + 60 * minutes
    t0 = time.perf_counter()
    # What a run does after run_start: its key made as the loop makes it, the first batch.
    key = jax.jit(lambda: jax.random.key(opts.seed),
                  out_shardings=mesh_lib.replicated(mesh))()
    state, key, _, _ = timed_steps(train_step, state, key, batches, 1)
    first_s = time.perf_counter() - t0
    state, key, _, warm_s = timed_steps(train_step, state, key, batches, WARMUP_STEPS)
    # The loop's own eval: the eval pipeline built afresh and read whole, as every eval is.
    # Twice: the first also pays what a process does once (the eval program's first run).
    log = mlperf_log.MLPerfLog("", enabled=False)
    evals = []
    for _ in range(2):
        t0 = time.perf_counter()
        metrics = loop.evaluate(state, log, 0)
        evals.append(time.perf_counter() - t0)
    first_eval_s, eval_s = evals

    block = max(b.end_step - b.start_step for b in loop.schedule.blocks)
    estimate = warm_s / WARMUP_STEPS
    steps, seconds = 0, 0.0
    while steps == 0 or time.perf_counter() + estimate < deadline:
        left = deadline - time.perf_counter()
        n = max(2, min(block, int(left / estimate)))
        state, key, _, s = timed_steps(train_step, state, key, batches, n)
        steps, seconds = steps + n, seconds + s
        estimate = seconds / steps
    step_s = seconds / steps
    # What the first step and the first eval take beyond later ones (the pipeline's first
    # batch, each program's first run): a run pays it once.
    startup_s = max(first_s - step_s, 0.0) + max(first_eval_s - eval_s, 0.0)
    costs = Costs(step_s=step_s, eval_s=eval_s, startup_s=startup_s)
    return Measurement(costs, steps, seconds, setup_s, first_s, first_eval_s, metrics)
