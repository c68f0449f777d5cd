"""The timed MLPerf run: init -> compile -> run_start -> blocks of epochs -> eval -> run_stop."""

import dataclasses
import itertools
import math
import time

import jax
import numpy as np
from mlperf_logging.mllog import constants as C

from input_pipelines import synthetic
from suite import compile as compile_lib
from suite import config as config_lib
from suite import mesh as mesh_lib
from suite import mlperf_log, perf
from suite.checkpoint import Checkpointer
from suite.config import RunOptions
from suite.workload import DataInfo, Logged, Workload


@dataclasses.dataclass
class RunResult:
    status: str  # "success" | "aborted" | "paused"
    reason: str
    time_to_train_s: float | None  # run_start -> run_stop; None while paused
    epochs: int | float  # epochs trained (a fraction where evals fall inside epochs)
    metrics: dict
    log_path: str


SYNTHETIC_DONE = "synthetic data: throughput only, never a result"


class _Abort(Exception):
    """Ends the run with run_stop status=aborted and this one-line reason."""

    def __init__(self, reason: str, epoch: int | float):
        super().__init__(reason)
        self.epoch = epoch


def _sync_every_step() -> bool:
    """CPU jobs of several processes (gloo collectives) deadlock with more than one step in
    flight: seen with the Transformer, whose train and eval steps then hang in their
    all-reduces. There, and only there, each step is waited for; accelerators keep
    dispatching ahead."""
    return jax.process_count() > 1 and jax.default_backend() == "cpu"


def platform_name() -> str:
    devices = jax.devices()
    return f"{len(devices)}x{devices[0].device_kind}"


def _log_setup(log, workload, cfg, opts, data, steps_per_epoch, notes):
    log.event(C.CACHE_CLEAR, True)
    log.start(C.INIT_START)
    mlperf_log.submission_events(
        log, benchmark=workload.benchmark, org=opts.submission_org, division=opts.division,
        status=opts.submission_status, platform=opts.submission_platform or platform_name(),
    )
    log.event(C.SEED, opts.seed)
    log.event(C.GLOBAL_BATCH_SIZE, cfg.global_batch_size)
    log.event(C.GRADIENT_ACCUMULATION_STEPS, 1)
    log.event(C.TRAIN_SAMPLES, data.train_examples)
    log.event(C.EVAL_SAMPLES, data.eval_examples)
    for key, value in workload.mllog_hparams(cfg, steps_per_epoch).items():
        if isinstance(value, Logged):
            log.event(key, value.value, **value.metadata)
        else:
            log.event(key, value)
    # jaxperf's own keys: the checker ignores unknown keys, readers of the log do not.
    log.event("jaxperf_preset", opts.preset)
    log.event("jaxperf_data", opts.data, source=data.source)
    log.event("jaxperf_target", workload.target_for(cfg).describe())
    for key, value in notes.items():
        log.event(key, value)


def run(workload: Workload, cfg, opts: RunOptions, data: DataInfo, resume: bool,
        notes: dict | None = None) -> RunResult:
    """One timed run; notes are extra jaxperf_* events for the log's setup section."""
    is_main = jax.process_index() == 0
    say = print if is_main else (lambda *a, **k: None)
    log = mlperf_log.MLPerfLog(opts.workdir, enabled=is_main)
    steps_per_epoch = data.epoch_steps(cfg.global_batch_size)
    target = workload.target_for(cfg)
    ckpt = Checkpointer(opts.workdir)
    run_started, run_start_ms = False, None
    progress = {"step": 0, "epoch": 0, "blocks": 0, "run_start_ms": None}
    try:
        if not resume:
            _log_setup(log, workload, cfg, opts, data, steps_per_epoch, notes or {})
        mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model)
        local_batch = cfg.global_batch_size // jax.process_count()
        fns = compile_lib.build(workload, cfg, mesh, local_batch, jax.process_count())
        if resume:
            state, progress = ckpt.restore(ckpt.latest_step(), fns.abstract_state,
                                           fns.state_shardings)
            step = progress["step"]
            train_iter = _train_batches(workload, cfg, opts, step // steps_per_epoch + 1,
                                        skip=step % steps_per_epoch)
            log.event("jaxperf_resume", step // steps_per_epoch + 1, step=step)
            run_started = True
            run_start_ms = progress["run_start_ms"]
        else:
            state = fns.init(jax.random.key(opts.seed))
            start = workload.initial_params(cfg, fns.abstract_state.params)
            if start is not None:
                state = state.replace(params=mesh_lib.place(start, fns.state_shardings.params))
            train_iter = _train_batches(workload, cfg, opts, 1)
            jax.block_until_ready(state)
            log.end(C.INIT_STOP)
            run_start_ms = int(time.time() * 1e3)
            log.start(C.RUN_START, time_ms=run_start_ms)
            run_started = True
        result = _train(workload, cfg, opts, data, fns, state, train_iter, log, ckpt, target,
                        steps_per_epoch, progress, run_start_ms, say)
    except KeyboardInterrupt:
        ckpt.close()
        log.close()
        raise
    except BaseException as e:
        stop_ms = int(time.time() * 1e3)
        if run_started:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.end(C.RUN_STOP, time_ms=stop_ms, status=C.ABORTED, reason=reason[:300])
        ckpt.close()
        log.close()
        if isinstance(e, _Abort):
            return RunResult(C.ABORTED, str(e), (stop_ms - run_start_ms) / 1e3, e.epoch, {},
                             log.path)
        raise
    ckpt.close()
    log.close()
    return result


def _train_batches(workload, cfg, opts, start_epoch: int, skip: int = 0):
    """The training input pipeline, built but not yet read from.

    Built before run_start: constructing a tf.data graph reads no data but takes seconds
    (tracing the decode/augment functions), which is set-up, not training. A run resumed
    inside an epoch (evals within epochs) skips the batches of that epoch it already trained.
    """
    local_batch = cfg.global_batch_size // jax.process_count()
    if opts.data == "synthetic":
        return synthetic.batches(workload.batch_spec(cfg, "train", local_batch), seed=opts.seed,
                                 high=workload.synthetic_high(cfg))
    # A resumed run must not replay the order it already saw.
    batches = workload.train_batches(
        cfg, opts.data_dir, local_batch_size=local_batch, process_index=jax.process_index(),
        process_count=jax.process_count(), seed=opts.seed * 1000 + start_epoch)
    return itertools.islice(batches, skip, None) if skip else batches


def _train(workload, cfg, opts, data, fns, state, train_iter, log, ckpt, target,
           steps_per_epoch, progress, run_start_ms, say) -> RunResult:
    spe = steps_per_epoch
    interval = workload.eval_every_samples(cfg)
    schedule = config_lib.block_schedule(cfg, spe, interval)
    # Where the rules count samples (BERT), the log has no epochs: blocks say how many
    # samples they train and evals say how many have been trained.
    where = _sample_position if interval else _epoch_position
    start_step = progress["step"]
    # Made by a jitted function, not device_put: in a multi-process job the replicated
    # sharding spans devices this process cannot address directly.
    key = jax.jit(lambda: jax.random.fold_in(jax.random.key(opts.seed), start_step),
                  out_shardings=mesh_lib.replicated(fns.mesh))()
    peak = perf.peak_flops(jax.devices()[0].device_kind)
    flops = workload.flops_per_example(cfg)
    blocks_this_run, metrics, epoch = 0, {}, progress["epoch"]
    for block in schedule:
        if block.end_step <= start_step:
            continue
        log.start(C.BLOCK_START, **block.start_metadata())
        t0 = time.perf_counter()
        step_metrics = []
        for step in range(block.start_step, block.end_step):
            if not interval and step % spe == 0:
                log.start(C.EPOCH_START, epoch_num=step // spe + 1)
            batch = mesh_lib.to_global(next(train_iter), fns.batch_sharding)
            state, m, key = fns.train_step(state, batch, key)
            if _sync_every_step():
                jax.block_until_ready(m)
            step_metrics.append(m)
            if not interval and (step + 1) % spe == 0:
                log.end(C.EPOCH_STOP, epoch_num=(step + 1) // spe)
        # One sync per block: fetching the losses waits for the last step.
        losses = np.asarray([x["loss"] for x in jax.device_get(step_metrics)], np.float64)
        steps = block.end_step - block.start_step
        stats = perf.BlockStats(steps * cfg.global_batch_size, steps, time.perf_counter() - t0)
        log.end(C.BLOCK_STOP, **block.stop_metadata())
        epoch = block.eval_epoch
        if not np.all(np.isfinite(losses)):
            bad = block.start_step + int(np.argmin(np.isfinite(losses))) + 1
            raise _Abort(f"non-finite training loss at step {bad} ({where(epoch)}); lower "
                         "the learning rate or check the data", epoch)
        metrics = _evaluate(workload, cfg, opts, data, fns, state, log, epoch)
        progress = {"step": block.end_step, "epoch": epoch, "blocks": progress["blocks"] + 1,
                    "run_start_ms": run_start_ms}
        blocks_this_run += 1
        util = perf.mfu(flops, stats.samples_per_s, peak, jax.device_count())
        eta = (schedule[-1].end_step - block.end_step) * stats.seconds / steps
        say(f"block {progress['blocks']}/{len(schedule)} {where(epoch, schedule[-1].eval_epoch)} | "
            f"loss {losses.mean():.4f} | {stats.samples_per_s:,.1f} samples/s | "
            f"step {stats.step_ms:.1f} ms | MFU {'n/a' if util is None else f'{util:.1%}'} | "
            f"{target.metric} {metrics[target.metric]:.4f} (target {target.describe()}) | "
            f"ETA <= {perf.format_eta(eta)}", flush=True)
        if opts.data == "real" and target.reached(metrics):
            return _stop(log, C.SUCCESS, f"reached {target.describe()}", epoch, metrics,
                         run_start_ms)
        paused = opts.stop_after_blocks and blocks_this_run >= opts.stop_after_blocks
        every = opts.checkpoint_every_blocks
        if paused or (every and progress["blocks"] % every == 0):
            ckpt.save(block.end_step, state, progress)
        if paused and block is not schedule[-1]:
            ckpt.wait()
            return RunResult("paused", f"paused after {blocks_this_run} blocks at "
                             f"{where(epoch)}", None, epoch, metrics, log.path)
    if opts.data == "synthetic":
        reason = SYNTHETIC_DONE
    else:
        budget = (f"{schedule[-1].eval_epoch:,} samples" if interval
                  else f"{cfg.max_epochs} epochs")
        reason = f"{target.describe()} not reached within {budget}"
    return _stop(log, C.ABORTED, reason, epoch, metrics, run_start_ms)


def _epoch_position(epoch, last=None) -> str:
    return f"epoch {epoch:g}" + (f"/{last:g}" if last is not None else "")


def _sample_position(samples, last=None) -> str:
    return f"{samples:,} samples" + (f"/{last:,}" if last is not None else "")


def _stop(log, status, reason, epoch, metrics, run_start_ms) -> RunResult:
    stop_ms = int(time.time() * 1e3)
    log.end(C.RUN_STOP, time_ms=stop_ms, status=status, reason=reason, epoch_num=epoch)
    return RunResult(status, reason, (stop_ms - run_start_ms) / 1e3, epoch, metrics, log.path)


def _evaluate(workload, cfg, opts, data, fns, state, log, epoch) -> dict:
    log.start(C.EVAL_START, epoch_num=epoch)
    global_batch = workload.eval_batch_size(cfg)
    local_batch = global_batch // jax.process_count()
    if opts.data == "synthetic":
        steps = math.ceil(data.eval_examples / global_batch)
        batches = synthetic.eval_batches(workload.batch_spec(cfg, "eval", local_batch), steps,
                                         high=workload.synthetic_high(cfg))
    else:
        batches = workload.eval_batches(
            cfg, opts.data_dir, local_batch_size=local_batch,
            process_index=jax.process_index(), process_count=jax.process_count())
    outputs = []
    for b in batches:
        outputs.append(fns.eval_step(state, mesh_lib.to_global(b, fns.batch_sharding)))
        if _sync_every_step():
            jax.block_until_ready(outputs[-1])
    metrics = workload.finalize_eval(cfg, jax.device_get(outputs))
    log.end(C.EVAL_STOP, epoch_num=epoch)
    target_metric = workload.target.metric
    log.event(C.EVAL_ACCURACY, metrics[target_metric], epoch_num=epoch)
    return metrics
