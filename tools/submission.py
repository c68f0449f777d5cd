"""Checks an MLPerf training submission package with the official checkers.

    python -m tools.submission check <org package dir> [--ruleset 4.0.0]
"""

import argparse
import sys

from common.errors import UserError
from suite.submission import DEFAULT_RULESET, USAGE, check_package, summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.submission",
                                     description="Check an MLPerf training submission package.")
    check = parser.add_subparsers(dest="command", required=True).add_parser(
        "check", help="the official checkers' verdict and the result summarizer's score")
    check.add_argument("package_dir", help="the <org> directory of the package")
    check.add_argument("--ruleset", default=DEFAULT_RULESET)
    args = parser.parse_args(argv)
    try:
        verdict = check_package(args.package_dir, args.ruleset)
        summary = summarize(args.package_dir, args.ruleset)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.package_dir} (official package + repo checkers, {USAGE} {args.ruleset}): "
          f"{verdict.summary()}")
    notes = [f"result summarizer: {line}" for line in summary["output"].splitlines()
             if line.startswith(("CRITICAL ERROR", "NOTICE", "ERROR"))]
    scores = [f"score {system}/{bench}: {minutes:.4f} minutes (result summarizer: olympic mean "
              "time-to-train)" for system, by_bench in sorted(summary["by_system"].items())
              for bench, minutes in sorted(by_bench.items())]
    print("\n".join(notes + (scores or ["score: none (the summarizer scored no benchmark)"])))
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
