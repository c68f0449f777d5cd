"""The MLPerf run lifecycle, the same for every kind of benchmark.

cache_clear -> init_start -> setup events -> (the loop compiles; init or resume) ->
init_stop -> run_start -> blocks (the loop trains and evaluates; here: progress line,
target, checkpoints, pause) -> run_stop with a status and a one-line reason. What a block
is, and which events it logs, belongs to the loop the workload's kind selects.
"""

import dataclasses
import json
import os
import time

import jax
from mlperf_logging.mllog import constants as C

from suite import (
    console,
    loops,
    mlperf_log,
    perf,
    preemption,
    profiling,
    recorders,
    remote_workdir,
    weights,
)
from suite import mesh as mesh_lib
from suite.checkpoint import Checkpointer
from suite.config import RunOptions
from suite.hparams import Logged
from suite.loops.base import Abort, Preempted
from suite.workload import DataInfo, Workload


@dataclasses.dataclass
class RunResult:
    status: str  # "success" | "aborted" | "paused" | "preempted"
    reason: str
    time_to_train_s: float | None  # run_start -> run_stop; None while paused or preempted
    epochs: int | float  # where it stopped, in the schedule's unit (epochs or samples)
    metrics: dict
    log_path: str
    unit: str = "epochs"  # what `epochs` counts


SYNTHETIC_DONE = "synthetic data: throughput only, never a result"


def platform_name() -> str:
    devices = jax.devices()
    return f"{len(devices)}x{devices[0].device_kind}"


def _log_setup(log, workload, cfg, opts, data, steps_per_epoch, notes, mesh_sizes):
    log.event(C.CACHE_CLEAR, True)
    log.start(C.INIT_START)
    mlperf_log.submission_events(
        log, benchmark=workload.benchmark, org=opts.submission_org, division=opts.division,
        status=opts.submission_status, platform=opts.submission_platform or platform_name(),
    )
    log.event(C.SEED, opts.seed)
    log.event(C.GLOBAL_BATCH_SIZE, cfg.global_batch_size)
    log.event(C.GRADIENT_ACCUMULATION_STEPS, cfg.grad_accum_steps)
    log.event(C.TRAIN_SAMPLES, data.train_examples)
    log.event(C.EVAL_SAMPLES, data.eval_examples)
    choices = workload.resolved_choices(cfg, mesh_sizes)
    for key, value in {**workload.mllog_hparams(cfg, steps_per_epoch), **choices}.items():
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
    with preemption.Notice() as notice:  # from the start: a notice during compile counts
        return _run(workload, cfg, opts, data, resume, notes, notice)


def _run(workload, cfg, opts, data, resume, notes, notice) -> RunResult:
    log = mlperf_log.MLPerfLog(opts.workdir, enabled=jax.process_index() == 0,
                               echo=opts.mllog_stdout)
    ckpt = Checkpointer(remote_workdir.files_root(opts))
    run_start_ms, unit = None, "epochs"
    hooks = recorders.for_run(workload, cfg, opts, data)
    status = "error"
    ended = False  # once the blocks are over, run_stop (or a pause) is in the log already
    try:
        loop_class = loops.get(workload.kind)
        mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model)
        if not resume:
            _log_setup(log, workload, cfg, opts, data, data.epoch_steps(cfg.global_batch_size),
                       notes or {}, dict(mesh.shape))
        loop = loop_class(workload, cfg, opts, data, mesh)
        unit = loop.schedule.unit
        if resume:
            for name in ckpt.uncommitted():
                say(f"warning: ignoring {ckpt.directory}/{name}: a checkpoint never "
                    "committed (its run died while writing it)")
            step, state, progress = ckpt.restore_newest_readable(
                loop.abstract_state, loop.state_shardings, say)
            moved, lost = log.cut(progress.get("log_bytes", log.size()))
            if moved:
                say(f"warning: {moved} MLPerf events were logged after the checkpoint at "
                    f"step {step} resumed from: moved to {lost}, as those steps train again")
            value, metadata = loop.resume_point(progress)
            inputs = loop.prepare(progress)
            log.event("jaxperf_resume", value, **metadata)
            run_start_ms = progress["run_start_ms"]
            for hook in hooks:
                hook.started(run_start_ms, resumed=True)
        else:
            progress = {"step": 0, "epoch": 0, "blocks": 0, "run_start_ms": None}
            state = loop.init_state(opts.seed)
            inputs = loop.prepare(progress)
            jax.block_until_ready(state)
            log.end(C.INIT_STOP)
            run_start_ms = progress["run_start_ms"] = int(time.time() * 1e3)
            log.start(C.RUN_START, time_ms=run_start_ms)
            for hook in hooks:
                hook.started(run_start_ms, resumed=False)
        if (line := loop.describe_input()) is not None:
            say(line)
        bar = console.BlockBar(loop.schedule, cfg.global_batch_size,
                               enabled=console.live(opts))
        try:
            result, final_state = _blocks(workload, cfg, opts, loop, state, progress, inputs,
                                          log, ckpt, notice, hooks, bar)
        finally:
            bar.close()  # before any line that ends the run
        ended, status = True, result.status
        if final_state is not None:
            _save_weights(workload, cfg, opts, loop, final_state, result)
    except KeyboardInterrupt:
        _close(ckpt, log, hooks, "error")
        raise
    except BaseException as e:
        stop_ms = int(time.time() * 1e3)
        if run_start_ms is not None and not ended:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            _stopping(hooks, log)
            log.end(C.RUN_STOP, time_ms=stop_ms, status=C.ABORTED, reason=reason[:300])
        aborted = isinstance(e, Abort)
        _close(ckpt, log, hooks, C.ABORTED if aborted else "error")
        if aborted:
            return RunResult(C.ABORTED, str(e), (stop_ms - run_start_ms) / 1e3, e.position,
                             {}, log.path, unit)
        raise
    _close(ckpt, log, hooks, status)
    return result


def _stopping(hooks, log) -> None:
    for hook in hooks:
        hook.stopping(log)


def _close(ckpt, log, hooks, status: str) -> None:
    ckpt.close()
    log.close()
    for hook in hooks:
        hook.closed(status)


EVAL_METRICS = "eval_metrics.jsonl"


def _record_eval(workdir: str, unit: str, position, metrics: dict) -> None:
    """Every metric of every eval, one JSON line each, beside the MLPerf log (which holds
    the target metric only): e.g. how many eval examples were scored."""
    if jax.process_index() != 0:
        return
    line = {unit: position, **{k: float(v) for k, v in metrics.items()}}
    with open(os.path.join(workdir, EVAL_METRICS), "a") as f:
        f.write(json.dumps(line) + "\n")


def say(*args, **kwargs) -> None:
    """print on process 0 only: one copy of each line per job, not per host."""
    if jax.process_index() == 0:
        print(*args, **kwargs, flush=True)


def _save_weights(workload, cfg, opts, loop, state, result: RunResult) -> None:
    """After run_stop, outside the timed run: the weights inference serves, kept whether or
    not the target was reached (final_weights.json says which)."""
    target = workload.target_for(cfg)
    weights.save(opts.workdir, remote_workdir.files_root(opts), loop.final_weights(state), {
        "workload": workload.name, "benchmark": workload.benchmark, "preset": opts.preset,
        "division": opts.division, "status": result.status, "reason": result.reason,
        "reached_target": result.status == C.SUCCESS, "target": target.describe(),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        result.unit: result.epochs, "time_to_train_s": result.time_to_train_s,
    })


def _blocks(workload, cfg, opts, loop, state, progress, inputs, log, ckpt, notice,
            hooks, bar) -> tuple[RunResult, object]:
    """The run's result, and the final state where the run ended by its own rules (target
    reached or budget spent on real data), else None."""
    schedule, target = loop.schedule, workload.target_for(cfg)
    peak = perf.peak_flops(jax.devices()[0].device_kind)
    flops = workload.flops_per_example(cfg)
    blocks_this_run, metrics, position = 0, {}, progress["epoch"]
    total, last = len(schedule.blocks), schedule.blocks[-1]
    unit = schedule.unit

    def stop(status, reason) -> RunResult:
        stop_ms = int(time.time() * 1e3)
        _stopping(hooks, log)
        log.end(C.RUN_STOP, time_ms=stop_ms, status=status, reason=reason, epoch_num=position)
        return RunResult(status, reason, (stop_ms - progress["run_start_ms"]) / 1e3, position,
                         metrics, log.path, unit)

    saved = time.time()  # this process's start counts as the last checkpoint
    profiling.note_resume(opts.profile_block, progress["blocks"], say)
    reports = loop.blocks(state, progress, inputs, log, notice, bar.tick)
    while True:
        try:
            with profiling.block(opts.profile_block, progress["blocks"] + 1, opts.workdir,
                                 say):
                report = next(reports, None)
        except Preempted as p:
            _stopping(hooks, log)
            return _preempted(p, progress, position, metrics, log, ckpt, schedule), None
        if report is None:
            break
        state, metrics, position = report.state, report.metrics, report.position
        progress = {"step": report.step, "epoch": position, "blocks": progress["blocks"] + 1,
                    "run_start_ms": progress["run_start_ms"]}
        blocks_this_run += 1
        _record_eval(opts.workdir, unit, position, metrics)
        util = perf.mfu(flops, report.stats.samples_per_s, peak, jax.device_count())
        bar.close()  # the progress line takes the bar's place
        say(f"block {progress['blocks']}/{total} "
             f"{schedule.position(position, last.eval_epoch)} | "
             f"loss {report.losses.mean():.4f} | {report.stats.samples_per_s:,.1f} samples/s | "
             f"step {report.stats.step_ms:.1f} ms | {_host(report.stats)}"
             f"MFU {'n/a' if util is None else f'{util:.1%}'} | "
             f"{target.metric} {metrics[target.metric]:.4f} (target {target.describe()}) | "
             f"ETA <= {perf.format_eta(report.eta_s)}")
        record = recorders.BlockRecord(progress["blocks"], report, util, unit)
        for hook in hooks:
            hook.block(record)
        if opts.data == "real" and target.reached(metrics):
            return stop(C.SUCCESS, f"reached {target.describe()}"), state
        paused = opts.stop_after_blocks and blocks_this_run >= opts.stop_after_blocks
        every = opts.checkpoint_every_blocks
        if paused or (every and progress["blocks"] % every == 0) or _minutes_due(opts, saved):
            ckpt.save(report.step, state, {**progress, "log_bytes": log.size()})
            saved = time.time()
        if paused and report.step < last.end_step:
            _stopping(hooks, log)
            ckpt.wait()
            return RunResult("paused", f"paused after {blocks_this_run} blocks at "
                             f"{schedule.position(position)}", None, position, metrics,
                             log.path, unit), None
    if opts.data == "synthetic":
        return stop(C.ABORTED, SYNTHETIC_DONE), None
    return stop(C.ABORTED, f"{target.describe()} not reached within {schedule.budget()}"), state


def _host(stats: perf.BlockStats) -> str:
    share = stats.host_overhead
    return "" if share is None else f"host overhead {share:.1%} | "


def _preempted(p: Preempted, progress, position, metrics, log, ckpt,
               schedule) -> RunResult:
    """Checkpoints the step the notice stopped at (unless a block-end checkpoint holds it
    already) and logs it; no run_stop: the same command resumes the same log."""
    # Logged before the checkpoint records the log's length: the resumed run keeps it.
    log.event("jaxperf_preempted", p.step, signal=preemption.SIGNAL_NAME)
    progress = {**progress, "step": p.step, "log_bytes": log.size()}
    if ckpt.latest_step() != p.step:
        ckpt.save(p.step, p.state, progress)
    ckpt.wait()  # committed before the process exits
    return RunResult("preempted", f"preempted ({preemption.SIGNAL_NAME}) at step {p.step}, "
                     "checkpointed", None, position, metrics, log.path, schedule.unit)


def _minutes_due(opts, saved: float) -> bool:
    """--checkpoint_every_minutes at a block end; every process of a job takes process 0's
    word (their clocks differ, and all of them must save, or none)."""
    if not opts.checkpoint_every_minutes:
        return False
    due = time.time() - saved >= opts.checkpoint_every_minutes * 60
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        due = bool(multihost_utils.broadcast_one_to_all(np.int32(due)))
    return due
