"""One run from resolved inputs: data check, workdir, the timed loop, the checker's verdict."""

import dataclasses
import json
import os
import shutil

import jax

from common.errors import UserError
from suite import compliance, energy_log, lifecycle, mlperf_log, remote_workdir
from suite import config as config_lib
from suite import workdir as workdir_lib
from suite.config import RunOptions
from suite.lifecycle import RunResult, say
from suite.workload import DataInfo, Workload


def _prepare_workdir(workdir: str, resolved: dict, files_root: str) -> bool:
    """Process 0 owns the workdir; every process learns whether the run resumes."""
    if jax.process_count() == 1:
        return workdir_lib.prepare(workdir, resolved, files_root)
    import numpy as np
    from jax.experimental import multihost_utils

    code, error = 2, None
    if jax.process_index() == 0:
        try:
            code = int(workdir_lib.prepare(workdir, resolved, files_root))
        except UserError as e:
            error = e
    # Every process must reach the broadcast, so process 0 raises only after it.
    code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
    if error is not None:
        raise error
    if code == 2:
        raise UserError(f"process 0 refused --workdir {workdir}; see its output")
    return bool(code)


def data_info(workload: Workload, cfg, opts: RunOptions) -> DataInfo:
    """The data's facts (true sizes, resolved files); raises UserError when it is missing."""
    if opts.data == "synthetic":
        return workload.synthetic_data_info(cfg)
    data = workload.data_info(cfg, opts.data_dir)
    return dataclasses.replace(data, data_dir=opts.data_dir)


def _resolved(cfg, opts: RunOptions, data: DataInfo) -> dict:
    # Through JSON, so it compares equal to what an earlier run wrote.
    return json.loads(json.dumps(config_lib.resolved(cfg, opts, data)))


def finished_log(workload: Workload, cfg, opts: RunOptions, data: DataInfo) -> str | None:
    """The log of a run that finished in opts.workdir with these very settings, else None.
    Process 0's word for every process: it alone holds a remote workdir's staging copy."""
    finished = workdir_lib.finished_with(opts.workdir, _resolved(cfg, opts, data))
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        finished = bool(multihost_utils.broadcast_one_to_all(np.int32(finished)))
    return os.path.join(opts.workdir, mlperf_log.LOG_NAME) if finished else None


def run_one(workload: Workload, cfg, opts: RunOptions, data: DataInfo, *, notes: dict,
            check_log: bool) -> RunResult:
    workdir_lib.check_writable(opts.workdir)
    resolved = _resolved(cfg, opts, data)
    resume = _prepare_workdir(opts.workdir, resolved, remote_workdir.files_root(opts))
    if jax.process_index() == 0 and not resume:
        config_lib.write(cfg, opts, data, opts.workdir)
        # Files the data came with (a vocabulary): a synthetic run has none to copy.
        for name, path in (workload.artifacts(cfg, data) if opts.data == "real" else {}).items():
            shutil.copyfile(path, os.path.join(opts.workdir, name))
    say(f"{workload.name} ({opts.preset}, {opts.division} division, seed {opts.seed}) on "
        f"{lifecycle.platform_name()}: data {data.source}, global batch {cfg.global_batch_size}, "
        f"target {workload.target_for(cfg).describe()}, workdir {opts.workdir}"
        + (f" (copied to {opts.remote_workdir})" if opts.remote_workdir else "")
        + (" [resuming]" if resume else ""))
    result = lifecycle.run(workload, cfg, opts, data, resume, notes)
    if result.status in ("paused", "preempted"):
        say(f"{result.reason}; rerun the same command to resume. Log: {result.log_path}")
        return result
    ttt = f"{result.time_to_train_s:.1f} s" if result.time_to_train_s is not None else "n/a"
    # From the log (process 0's): with a resumed run's earlier processes' energy too.
    energy_used = energy_log.describe(energy_log.from_log(result.log_path))
    ttt += f", {energy_used}" if energy_used else ""
    say(f"run_stop {result.status}: {result.reason}. time-to-train {ttt}, "
        f"{result.epochs} {result.unit}. "
        f"MLPerf log: {result.log_path}")
    if check_log and jax.process_index() == 0:
        say(f"compliance: {compliance.check(result.log_path, workload.ruleset).summary()}")
    return result


def succeeded(result: RunResult) -> bool:
    """A synthetic run that used its budget did what was asked; else only success counts."""
    return result.status in ("success", "paused") or result.reason == lifecycle.SYNTHETIC_DONE
