"""Checks an MLPerf submission package with the official checkers.

    python -m tools.submission check <org package dir> [--ruleset 4.0.0]        # training
    python -m tools.submission check <submission dir> --inference_repo=<checkout>  # inference

Inference packages (python -m suite.infer --submission_dir) are checked by the official
submission checker of mlcommons/inference, which is not on PyPI: pass a checkout of it.
"""

import argparse
import sys

from common.errors import UserError
from flags import flagfile
from suite.submission import DEFAULT_RULESET, USAGE, check_package, summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.submission",
                                     description="Check an MLPerf submission package.")
    check = parser.add_subparsers(dest="command", required=True).add_parser(
        "check", help="the official checkers' verdict (and, for training, the score)")
    check.add_argument("package_dir", help="training: the <org> directory of the package; "
                       "inference: the --submission_dir holding open/")
    check.add_argument("--ruleset", default=DEFAULT_RULESET)
    check.add_argument("--inference_repo", default=None,
                       help="a checkout of mlcommons/inference: checks an inference package")
    args = parser.parse_args(flagfile.expand(argv))
    try:
        if args.inference_repo is not None:
            return _inference(args.package_dir, args.inference_repo)
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


def _inference(root: str, repo: str) -> int:
    from suite.serving import package

    verdict = package.check(root, repo)
    head = f"{root} (official inference submission checker, {package.CHECKER_VERSION}): "
    if verdict["passed"]:
        print(head + "PASS")
        return 0
    print(head + f"FAIL, {len(verdict['errors'])} errors")
    for error in verdict["errors"]:
        print(f"  {error}")
    if verdict["size_only"]:
        print("only MLPerf's minimum-duration and dataset-size rules fail: expected of a tiny "
              "preset, which runs for seconds on a small dataset")
    return 1


if __name__ == "__main__":
    sys.exit(main())
