"""Trains one MLPerf-style benchmark to its target and reports time-to-train.

  python -m suite.main --workload=resnet                     # tiny preset, built-in data
  python -m suite.main --workload=resnet --data_dir=/data/tfds   # reference, ImageNet
  python -m suite.main --workload=resnet --config.base_lr=9.0    # any config field

Bad input ends in one line on stderr and exit code 2.
"""

# This module is the only reader of FLAGS.

import dataclasses
import json
import os
import sys
import time

from absl import app, flags, logging

from flags import run_flags as F
from suite import compliance, registry
from suite import config as config_lib
from suite import workdir as workdir_lib
from suite.errors import UserError

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(F)  # so --help lists the run flags, not only --helpfull
_CONFIG = None


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _parse(argv: list[str]) -> list[str]:
    """Two passes: --workload/--preset/--data_dir pick the config; then --config.* apply to it."""
    global _CONFIG
    default = None
    try:
        FLAGS(argv, known_only=True)
        workload = registry.get(F.WORKLOAD.value)
        preset = F.PRESET.value or ("reference" if F.DATA_DIR.value else "tiny")
        config_lib.validate_options(workload, _options(workload, preset))
        default = workload.config(preset)
        _CONFIG = F.define_config(default)
        return FLAGS(argv)
    except UserError as e:
        _fail(str(e))
    except flags.Error as e:
        _fail(f"{e}; see --help")
    except (AttributeError, KeyError) as e:
        # ml_collections reports an override of a field the config lacks this way.
        field = str(e).strip("'\"")
        known = ", ".join(sorted(default.keys())) if default is not None else "?"
        _fail(f"unknown config field {field!r} in a --config.* flag; fields: {known}")


def _options(workload, preset: str) -> config_lib.RunOptions:
    division = F.DIVISION.value or ("closed" if preset == "reference" else "open")
    workdir = F.WORKDIR.value or os.path.join(
        "runs", f"{workload.name}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return config_lib.RunOptions(
        workload=workload.name, preset=preset, workdir=workdir, data=F.DATA.value,
        data_dir=F.DATA_DIR.value, seed=F.SEED.value, division=division,
        submission_org=F.SUBMISSION_ORG.value, submission_platform=F.SUBMISSION_PLATFORM.value,
        submission_status=F.SUBMISSION_STATUS.value,
        checkpoint_every_blocks=F.CHECKPOINT_EVERY_BLOCKS.value,
        stop_after_blocks=F.STOP_AFTER_BLOCKS.value,
    )


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {' '.join(argv[1:])}; flags take the form --name=value")
    try:
        run()
    except UserError as e:
        _fail(str(e))


def _prepare_workdir(workdir: str, resolved: dict) -> bool:
    """Process 0 owns the workdir; every process learns whether the run resumes."""
    import jax

    if jax.process_count() == 1:
        return workdir_lib.prepare(workdir, resolved)
    import numpy as np
    from jax.experimental import multihost_utils

    code, error = 2, None
    if jax.process_index() == 0:
        try:
            code = int(workdir_lib.prepare(workdir, resolved))
        except UserError as e:
            error = e
    # Every process must reach the broadcast, so process 0 raises only after it.
    code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
    if error is not None:
        raise error
    if code == 2:
        raise UserError(f"process 0 refused --workdir {workdir}; see its output")
    return bool(code)


def run() -> None:
    if not FLAGS["verbosity"].present:
        # JAX reports every platform it probes (TPU, CUDA) at INFO: noise on a CPU run.
        logging.set_verbosity(logging.WARNING)
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
    from suite import loop

    workload = registry.get(F.WORKLOAD.value)
    preset = F.PRESET.value or ("reference" if F.DATA_DIR.value else "tiny")
    opts = _options(workload, preset)
    is_main = jax.process_index() == 0
    say = print if is_main else (lambda *a, **k: None)
    if F.PRESET.value is None and preset == "tiny":
        say("No --data_dir given: running the tiny preset on built-in data "
            "(pass --data_dir=<tfds dir> for the full benchmark).", flush=True)
    cfg = config_lib.resolve(workload, _CONFIG.value, jax.device_count(), jax.default_backend())
    workdir_lib.check_writable(opts.workdir)
    if opts.data == "synthetic":
        data = loop.DataInfo(cfg.train_examples, cfg.eval_examples, "synthetic")
    else:
        data = workload.data_info(cfg, opts.data_dir)
        cfg.train_examples, cfg.eval_examples = data.train_examples, data.eval_examples
    # Through JSON, so it compares equal to what an earlier run wrote.
    resolved = json.loads(json.dumps({"options": dataclasses.asdict(opts),
                                      "config": cfg.to_dict()}))
    resume = _prepare_workdir(opts.workdir, resolved)
    if is_main and not resume:
        config_lib.write(cfg, opts, opts.workdir)
    say(f"{workload.name} ({preset}, {opts.division} division) on {loop.platform_name()}: "
        f"data {data.source}, global batch {cfg.global_batch_size}, "
        f"target {workload.target_for(cfg).describe()}, workdir {opts.workdir}"
        + (" [resuming]" if resume else ""), flush=True)
    result = loop.run(workload, cfg, opts, data, resume)
    if result.status == "paused":
        say(f"{result.reason}; rerun the same command to resume. Log: {result.log_path}")
        return
    ttt = f"{result.time_to_train_s:.1f} s" if result.time_to_train_s is not None else "n/a"
    say(f"run_stop {result.status}: {result.reason}. time-to-train {ttt}, "
        f"{result.epochs} epochs. MLPerf log: {result.log_path}", flush=True)
    if is_main and F.CHECK_LOG.value:
        say(f"compliance: {compliance.check(result.log_path, workload.ruleset).summary()}")
    # A synthetic run that used its budget did what was asked; anything else short of
    # the target is a failed run, on every process of the job.
    if result.status != "success" and result.reason != loop.SYNTHETIC_DONE:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse)
