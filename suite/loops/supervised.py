"""Supervised training on a static dataset: blocks of steps over the training split, each
followed by one pass over the eval split (ResNet, the Transformer, BERT, DLRM)."""

import math
import time

import jax
import numpy as np
from mlperf_logging.mllog import constants as C

from input_pipelines import synthetic
from suite import compile as compile_lib
from suite import mesh as mesh_lib
from suite import perf, staging, training
from suite.loops.base import Abort, BlockReport, Loop, Preempted
from suite.workload import EvalSet


def sync_every_step() -> bool:
    """CPU jobs of several processes (gloo collectives) deadlock with more than one step in
    flight: seen with the Transformer, whose train and eval steps then hang in their
    all-reduces. There, and only there, each step is waited for; accelerators keep
    dispatching ahead."""
    return jax.process_count() > 1 and jax.default_backend() == "cpu"


class SupervisedLoop(Loop):
    def __init__(self, workload, cfg, opts, data, mesh):
        super().__init__(workload, cfg, opts, data, mesh)
        self.local_batch = cfg.global_batch_size // jax.process_count()
        self.fns = compile_lib.build(workload, cfg, mesh, self.local_batch,
                                     jax.process_count(), data)
        self.kept_eval: EvalSet | None = None  # a replayable eval set, for this run's evals

    def describe_input(self) -> str:
        return staging.describe(self.workload.batch_spec(self.cfg, "train", self.local_batch),
                                jax.process_count())

    @property
    def abstract_state(self):
        return self.fns.abstract_state

    @property
    def state_shardings(self):
        return self.fns.state_shardings

    def init_state(self, seed: int):
        state = self.fns.init(jax.random.key(seed))
        start = self.workload.initial_params(self.cfg, self.fns.abstract_state.params)
        if start is not None:
            state = state.replace(params=mesh_lib.place(start, self.fns.state_shardings.params))
        return state

    def final_weights(self, state):
        # The weights eval scored: the EMA where the run keeps one.
        return {"params": training.eval_params(state), "model_state": state.model_state}

    def prepare(self, progress):
        """The training input pipeline, built but not yet read from.

        Built before run_start: constructing a tf.data graph reads no data but takes seconds
        (tracing the decode/augment functions), which is set-up, not training. A run resumed
        inside an epoch skips the batches of that epoch it already trained, and one resumed
        at a later epoch must not replay the order it already saw.
        """
        spe, step = self.schedule.steps_per_epoch, progress["step"]
        if self.opts.data == "synthetic":
            return synthetic.batches(
                self.workload.batch_spec(self.cfg, "train", self.local_batch),
                seed=self.opts.seed, high=self.workload.synthetic_high(self.cfg))
        return self.workload.train_batches_from(
            self.cfg, self.data, step % spe, local_batch_size=self.local_batch,
            process_index=jax.process_index(), process_count=jax.process_count(),
            seed=self.opts.seed * 1000 + step // spe + 1)

    def blocks(self, state, progress, inputs, log, notice, tick):
        cfg, fns, schedule = self.cfg, self.fns, self.schedule
        spe, start_step = schedule.steps_per_epoch, progress["step"]
        # Made by a jitted function, not device_put: in a multi-process job the replicated
        # sharding spans devices this process cannot address directly.
        key = jax.jit(lambda: jax.random.fold_in(jax.random.key(self.opts.seed), start_step),
                      out_shardings=mesh_lib.replicated(fns.mesh))()
        last = schedule.blocks[-1]
        staged = staging.Staged(inputs, fns.batch_sharding)
        for block, first in schedule.remaining(start_step):
            t0, waited = time.perf_counter(), staged.wait_s
            step_metrics = []
            for step in range(first, block.end_step):
                if notice.reached(step):  # before any event of the step: none repeats
                    raise Preempted(step, state)
                if step == block.start_step:
                    log.start(C.BLOCK_START, **block.start_metadata())
                if schedule.logs_epochs and step % spe == 0:
                    log.start(C.EPOCH_START, epoch_num=step // spe + 1)
                batch = next(staged)
                state, m, key = fns.train_step(state, batch, key)
                if sync_every_step():
                    jax.block_until_ready(m)
                step_metrics.append(m)
                tick(step + 1)
                if schedule.logs_epochs and (step + 1) % spe == 0:
                    log.end(C.EPOCH_STOP, epoch_num=(step + 1) // spe)
            # One sync per block: fetching the metrics waits for the last step.
            step_metrics = jax.device_get(step_metrics)
            losses = np.asarray([x["loss"] for x in step_metrics], np.float64)
            steps = block.end_step - first
            stats = perf.BlockStats(steps * cfg.global_batch_size, steps,
                                    time.perf_counter() - t0, staged.wait_s - waited)
            log.end(C.BLOCK_STOP, **block.stop_metadata())
            position = block.eval_epoch
            if not np.all(np.isfinite(losses)):
                bad = int(np.argmin(np.isfinite(losses)))
                cause = self.workload.nonfinite_loss_cause(cfg, step_metrics[bad])
                raise Abort(f"non-finite training loss at step {first + bad + 1} "
                            f"({schedule.position(position)}); "
                            f"{cause or 'lower the learning rate or check the data'}", position)
            metrics = self.evaluate(state, log, position)
            eta = (last.end_step - block.end_step) * stats.seconds / steps
            yield BlockReport(block.end_step, position, losses, stats, metrics, eta, state)

    def evaluate(self, state, log, position) -> dict:
        workload, cfg, fns = self.workload, self.cfg, self.fns
        log.start(C.EVAL_START, epoch_num=position)
        global_batch = workload.eval_batch_size(cfg)
        local_batch = global_batch // jax.process_count()
        if self.opts.data == "synthetic":
            steps = math.ceil(self.data.eval_examples / global_batch)
            batches = synthetic.eval_batches(workload.batch_spec(cfg, "eval", local_batch),
                                             steps, high=workload.synthetic_high(cfg))
            context = workload.synthetic_eval_context(cfg)
        else:
            evalset = self.kept_eval or workload.eval_batches(
                cfg, self.data, local_batch_size=local_batch,
                process_index=jax.process_index(), process_count=jax.process_count())
            if evalset.replayable:
                self.kept_eval = evalset
            batches, context = evalset.batches, evalset.context
        outputs = []
        for b in staging.Staged(iter(batches), fns.batch_sharding):
            outputs.append(fns.eval_step(state, b))
            if sync_every_step():
                jax.block_until_ready(outputs[-1])
        metrics = workload.finalize_eval(cfg, jax.device_get(outputs), context)
        log.end(C.EVAL_STOP, epoch_num=position)
        if not np.isfinite(metrics[workload.target.metric]):
            cause = workload.nonfinite_loss_cause(cfg, metrics)
            raise Abort(f"non-finite eval {workload.target.metric} "
                        f"({self.schedule.position(position)}); "
                        f"{cause or 'lower the learning rate or check the data'}", position)
        log.event(C.EVAL_ACCURACY, metrics[workload.target.metric], epoch_num=position)
        return metrics
