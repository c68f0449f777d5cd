"""Timing train steps and evals the way a run spends its time, for the throughput tools.

tools.bench_step times the step alone on one placed batch; tools.project_ttt times what a
run pays between run_start and run_stop: steps fed by the run's own input pipeline, a
whole eval, and what the first step and the first eval cost beyond later ones. Steps are
timed with timed_steps: one device sync at the end, since JAX dispatches ahead and a clock
read after dispatch times nothing.
"""

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import jax

from common.errors import UserError
from suite import loops, mlperf_log, staging
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
