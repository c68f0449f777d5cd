"""Checks an MLPerf training log with the official compliance checker.

    python -m tools.check_log <workdir or mlperf_log.txt> [--workload=resnet] [--ruleset=4.0.0]

The ruleset defaults to the one of the workload named in the log's
submission_benchmark. --workload is suite.main's own flag (flags/config_flags.py), read here
only where the command line gives it. Prints PASS or the checker's reasons; exit 0 on PASS,
1 on FAIL.
"""

import os
import sys

from absl import app, flags

from common.errors import UserError
from flags import config_flags
from suite import compliance, registry, scoring
from suite.mlperf_log import LOG_NAME

flags.declare_key_flag(config_flags.WORKLOAD)  # --help lists it with the tool's own
_RULESET = flags.DEFINE_string("ruleset", None, "Ruleset version, e.g. 4.0.0.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the checker's full output.")


def ruleset_for(log_path: str, workload: str | None) -> str:
    if workload:
        return registry.get(workload).ruleset
    bench = scoring.read_run(log_path).benchmark or None
    for name in registry.names():
        if registry.get(name).benchmark == bench:
            return registry.get(name).ruleset
    raise UserError(
        f"cannot tell the ruleset of {log_path} (submission_benchmark={bench!r}); "
        "pass --ruleset=X.Y.Z or --workload=NAME"
    )


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m tools.check_log <workdir or log file>")
    path = argv[1]
    if os.path.isdir(path):
        path = os.path.join(path, LOG_NAME)
    try:
        if not os.path.isfile(path):
            raise UserError(f"no MLPerf log at {path}; pass a workdir of a run or its {LOG_NAME}")
        # Its default (resnet) is suite.main's, not a choice: unset, the log names it.
        workload = config_flags.WORKLOAD.value if config_flags.WORKLOAD.present else None
        verdict = compliance.check(path, _RULESET.value or ruleset_for(path, workload))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if _VERBOSE.value:
        print(verdict.output)
    print(f"{path}: {verdict.summary()}")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    app.run(main)
