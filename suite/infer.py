"""Serves a trained benchmark model under MLPerf's official LoadGen, in its four scenarios.

  python -m suite.infer --workload=resnet                        # tiny weights, all scenarios
  python -m suite.infer --checkpoint=runs/resnet-tiny-... --precision=int8
  python -m suite.infer --scenario=Server --mode=performance

Ends with one table: scenario -> official metric, LoadGen's VALID/INVALID and reason,
accuracy. Bad input ends in one line on stderr and exit code 2.
"""

# This module and suite/cli.py (the config flags) read FLAGS.

import os
import sys
import time

from absl import app, flags

from common.errors import UserError
from flags import config_flags, package_flags
from flags import infer_flags as F
from suite import cli

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(F)
flags.adopt_module_key_flags(config_flags)
flags.adopt_module_key_flags(package_flags)


def main(argv) -> None:
    rows = cli.call(argv, run)
    from suite.serving import report

    print(report.table(rows), flush=True)
    # LoadGen's verdicts and the compliance tests decide the exit code.
    if not all(r.get("performance", {}).get("valid", True)
               and all(r.get("compliance", {}).values()) for r in rows):
        sys.exit(1)


def options(workload):
    from suite.serving.harness import InferOptions

    scenarios = F.SCENARIOS if F.SCENARIO.value == "all" else (F.SCENARIO.value,)
    modes = ("performance", "accuracy") if F.MODE.value == "both" else (F.MODE.value,)
    workdir = F.WORKDIR.value or os.path.join(
        "runs", f"infer-{workload.name}-{F.PRECISION.value}-{time.strftime('%Y%m%d-%H%M%S')}")
    return InferOptions(
        workload=workload.name, checkpoint=F.CHECKPOINT.value, scenarios=scenarios,
        modes=modes, precision=F.PRECISION.value, workdir=workdir, data_dir=F.DATA_DIR.value,
        calibration_list=F.CALIBRATION_LIST.value, division=F.DIVISION.value,
        allow_unconverged=F.ALLOW_UNCONVERGED.value, max_batch=F.MAX_BATCH.value,
        server_max_batch=F.SERVER_MAX_BATCH.value, server_wait_ms=F.SERVER_WAIT_MS.value,
        compliance=(F.COMPLIANCE.value if F.COMPLIANCE.value is not None
                    else bool(F.SUBMISSION_DIR.value)))


def run():
    from suite.serving import harness

    workload = cli.workload()
    opts = options(workload)
    for name, value in (("--max_batch", opts.max_batch),
                        ("--server_max_batch", opts.server_max_batch)):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    package = None
    if F.SUBMISSION_DIR.value:
        from suite.serving import package as package_lib

        overrides = {}
        for item in F.SYSTEM.value:
            field, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"--system={item}: use --system=field=value")
            overrides[field] = value
        # Detected and checked before anything runs, so a bad field wastes no run.
        package = harness.Package(F.SUBMISSION_DIR.value, package_lib.system(
            org=F.SUBMISSION_ORG.value, system_name=F.SYSTEM_NAME.value,
            scenarios=opts.scenarios, overrides=overrides), " ".join(sys.argv))
        if set(opts.modes) != {"performance", "accuracy"}:
            raise UserError("a submission needs both modes: drop --mode or pass --mode=both")
    return harness.run(workload, opts, cli.config(), package)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
