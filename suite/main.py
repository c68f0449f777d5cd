"""Trains one MLPerf-style benchmark to its target and reports time-to-train.

  python -m suite.main --workload=resnet                     # tiny preset, built-in data
  python -m suite.main --workload=resnet --data_dir=/data/tfds   # reference, ImageNet
  python -m suite.main --workload=resnet --config.base_lr=9.0    # any config field

Bad input ends in one line on stderr and exit code 2; a run that misses its target exits
1; a preempted run (SIGTERM) checkpoints, exits 75, and the same command resumes it.
"""

# This module and suite/cli.py (the config flags, shared with the tools) read FLAGS.

import math
import os
import sys
import time

from absl import app, flags

from common.errors import UserError
from flags import config_flags, package_flags
from flags import run_flags as F
from suite import cli, division, preemption, registry, remote_workdir
from suite import config as config_lib
from suite import workdir as workdir_lib

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(F)  # so --help lists the run flags, not only --helpfull
flags.adopt_module_key_flags(config_flags)
flags.adopt_module_key_flags(package_flags)
# flags/ knows nothing of suite/: the registered names join the help text here.
FLAGS["workload"].help += f" Registered: {', '.join(registry.names())}."


def check_options(workload, preset: str) -> None:
    config_lib.validate_options(workload, run_options(workload, preset))


def run_options(workload, preset: str) -> config_lib.RunOptions:
    """The run's options from the flags (tools.sweep reads its points' options here too)."""
    division = F.DIVISION.value or ("closed" if preset == "reference" else "open")
    workdir = F.WORKDIR.value or os.path.join(
        "runs", f"{workload.name}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    remote = None
    if remote_workdir.is_remote(workdir):
        remote_workdir.check_url(workdir)
        remote, workdir = workdir, remote_workdir.staging_dir(workdir)
    return config_lib.RunOptions(
        workload=workload.name, preset=preset, workdir=workdir, remote_workdir=remote,
        data=F.DATA.value, data_dir=F.DATA_DIR.value, seed=F.SEED.value, division=division,
        submission_org=F.SUBMISSION_ORG.value, submission_platform=F.SUBMISSION_PLATFORM.value,
        submission_status=F.SUBMISSION_STATUS.value,
        checkpoint_every_blocks=F.CHECKPOINT_EVERY_BLOCKS.value,
        checkpoint_every_minutes=F.CHECKPOINT_EVERY_MINUTES.value,
        stop_after_blocks=F.STOP_AFTER_BLOCKS.value, borrow_hparams=F.BORROW_HPARAMS.value,
        restart=F.RESTART.value, mllog_stdout=F.MLLOG_STDOUT.value,
        profile_block=F.PROFILE_BLOCK.value,
    )


def main(argv) -> None:
    cli.call(argv, run)


def _config(workload, preset: str, opts: config_lib.RunOptions, num_devices: int, backend: str):
    """The run's config: preset, then borrowed hparams, then --config.* (the user's word wins)."""
    cfg = cli.config()
    borrowed = {}
    if opts.borrow_hparams:
        explicit = cli.explicit_fields()
        borrowed = {k: v for k, v in division.borrow(workload, opts.borrow_hparams).items()
                    if k not in explicit}
        for field, value in borrowed.items():
            cfg[field] = value
    cfg = config_lib.resolve(workload, cfg, num_devices, backend)
    reference = config_lib.resolve(workload, workload.config(preset), num_devices, backend)
    diff = division.changes(reference, cfg)
    if opts.division == "closed":
        division.check_closed(workload, diff)
        workload.check_closed(cfg)
    return cfg, division.log_notes(diff, opts.borrow_hparams, borrowed)


def run() -> None:
    import jax

    if F.MULTIHOST.value:
        try:
            jax.distributed.initialize(F.COORDINATOR_ADDRESS.value, F.NUM_PROCESSES.value,
                                       F.PROCESS_ID.value)
        except ValueError as e:
            raise UserError(
                f"--multihost: {e}; pass --coordinator_address, --num_processes and "
                "--process_id where JAX cannot detect the cluster"
            ) from e
    from suite import benchmark, runner

    workload = cli.workload()
    preset = cli.preset_name()
    opts = run_options(workload, preset)
    if F.RUNS.value < 1:
        raise UserError(f"--runs must be >= 1, got {F.RUNS.value}")
    if F.SUBMISSION_DIR.value and F.RUNS.value != _required_runs(workload):
        raise UserError(f"--submission_dir needs --runs={_required_runs(workload)}: MLPerf "
                        f"scores {workload.name} on exactly that many runs")
    if F.PRESET.value is None and preset == "tiny":
        runner.say("No --data_dir given: running the tiny preset on built-in data (for the "
                   f"full benchmark pass --data_dir: {workload.data_dir_help}).")
    cfg, notes = _config(workload, preset, opts, jax.device_count(), jax.default_backend())
    # Before the data check, which can take seconds (preparing built-in data, say).
    workdir_lib.check_writable(opts.workdir)
    if opts.remote_workdir:
        remote_workdir.check_reachable(opts.remote_workdir)
    data = runner.data_info(workload, cfg, opts)
    config_lib.check_profile_block(opts, len(workload.schedule(cfg, data).blocks))
    if opts.remote_workdir and jax.process_index() == 0:  # it alone reads and writes the
        remote_workdir.pull(opts.remote_workdir, opts.workdir)  # workdir's files
    if F.RUNS.value == 1:
        result = runner.run_one(workload, cfg, opts, data, notes=notes,
                                check_log=F.CHECK_LOG.value)
        if result.status == "preempted":
            sys.exit(preemption.EXIT_CODE)
        if not runner.succeeded(result):
            sys.exit(1)
        return
    logs = benchmark.run_many(workload, cfg, opts, data, runs=F.RUNS.value, notes=notes,
                              check_log=F.CHECK_LOG.value)
    if logs is None:  # a run was preempted; the same command resumes it
        sys.exit(preemption.EXIT_CODE)
    if jax.process_index() != 0:
        return
    from suite import scoring

    lines, score = benchmark.describe([scoring.read_run(p) for p in logs])
    print("\n".join(lines), flush=True)
    packaged = True
    if F.SUBMISSION_DIR.value:
        packaged = benchmark.package(workload, opts, logs, F.SUBMISSION_DIR.value,
                                     system_name=F.SYSTEM_NAME.value,
                                     system_fields=F.SYSTEM.value)
    if score is None or math.isinf(score.seconds) or not packaged:
        sys.exit(1)


def _required_runs(workload) -> int:
    from mlperf_logging import benchmark_meta

    return benchmark_meta.get_result_file_counts("training").get(workload.benchmark, 5)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser(check_options))
