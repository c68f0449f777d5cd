"""A benchmark result: N seeded runs, MLPerf's olympic score, its spread, and the package."""

import copy
import dataclasses
import math
import os

from common.errors import UserError
from suite import remote_workdir, runner, scoring
from suite.config import RunOptions
from suite.workload import DataInfo, Workload


def run_many(workload: Workload, cfg, opts: RunOptions, data: DataInfo, *, runs: int,
             notes: dict, check_log: bool) -> list[str] | None:
    """Runs seeds seed, seed+1, ... into <workdir>/run_<i>; returns the log paths, or None
    where a run was preempted. Rerun, the same command keeps the runs that finished with
    these settings and resumes the preempted one."""
    if opts.stop_after_blocks:
        raise UserError("--stop_after_blocks pauses one run; it cannot be combined with --runs")
    logs = []
    for i in range(runs):
        remote = opts.remote_workdir and remote_workdir.join(opts.remote_workdir, f"run_{i}")
        run_opts = dataclasses.replace(opts, seed=opts.seed + i, remote_workdir=remote,
                                       workdir=os.path.join(opts.workdir, f"run_{i}"))
        runner.say(f"--- run {i + 1} of {runs} ---")
        done = runner.finished_log(workload, cfg, run_opts, data)
        if done is not None:
            runner.say(f"run {i + 1} finished before with these settings: kept ({done})")
            logs.append(done)
            continue
        result = runner.run_one(workload, copy.deepcopy(cfg), run_opts, data, notes=notes,
                                check_log=check_log)
        if result.status == "preempted":
            return None
        logs.append(result.log_path)
    return logs


def _fmt(seconds: float) -> str:
    return "did not converge" if math.isinf(seconds) else f"{seconds:.2f} s"


def describe(records: list[scoring.RunRecord]) -> tuple[list[str], scoring.Score | None]:
    """Plain-words summary lines of several runs, and their score (None under 3 runs)."""
    times = [r.seconds for r in records]
    unit = "samples" if any(r.counts_samples for r in records) else "epochs"
    lines = [f"run  seed  status     time-to-train     {unit:>9}"]
    for i, r in enumerate(records):
        lines.append(f"{i:>3}  {r.seed!s:>4}  {r.status:<9}  {_fmt(r.seconds):>16}  "
                     f"{r.epochs!s:>9}")
    if len(records) < 3:
        lines.append(f"{len(records)} run(s): MLPerf scoring needs at least 3 (drops the fastest "
                     "and the slowest)")
        return lines, None
    score = scoring.olympic(times)
    failed = [i for i, t in enumerate(times) if math.isinf(t)]
    if len(failed) == 1:
        lines.append(f"run {failed[0]} did not converge: it counts as infinitely slow and is "
                     "the dropped slowest run")
    elif len(failed) > 1:
        lines.append(f"runs {', '.join(map(str, failed))} did not converge: only one may, so "
                     "the benchmark has no finite score")
    dropped = " and ".join(str(i) for i in score.dropped)
    lines.append(f"score (olympic mean of {len(score.kept)} of {len(times)} runs, dropped runs "
                 f"{dropped}): {_fmt(score.seconds)}"
                 + ("" if math.isinf(score.seconds) else f" = {score.minutes:.4f} min"))
    spread = scoring.variance(times)
    if math.isfinite(spread.cv):
        lines.append(
            f"spread: CV {spread.cv:.1%}; bootstrap 95 % CI of the score "
            f"{_fmt(spread.ci95[0])} .. {_fmt(spread.ci95[1])}; runs needed for a +-2 % "
            f"interval: {spread.runs_for[0.02]}, for +-5 %: {spread.runs_for[0.05]}")
    return lines, score


def _system_fields(pairs: list[str]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--system={pair!r} must look like field=value")
        key, value = pair.split("=", 1)
        fields[key.strip()] = value
    return fields


def package(workload: Workload, opts: RunOptions, logs: list[str], out_dir: str, *,
            system_name: str | None, system_fields: list[str]) -> bool:
    """Writes the submission package, runs the official checkers on it, prints the verdicts.

    Returns whether the package checker passed.
    """
    from suite import submission

    system = submission.detect_system(
        division=opts.division, status=opts.submission_status, org=opts.submission_org,
        system_name=system_name or opts.submission_platform or None,
        overrides=_system_fields(system_fields))
    org_dir = submission.write_package(out_dir, log_paths=logs, benchmark=workload.benchmark,
                                       system=system)
    runner.say(f"package: {org_dir}")
    verdict = submission.check_package(org_dir, workload.ruleset)
    runner.say(f"package checker: {verdict.summary()}")
    scores = submission.summarize(org_dir, workload.ruleset)
    official = scores.get(workload.benchmark)
    if official is not None:
        ours = scoring.olympic([scoring.read_run(p).seconds for p in logs])
        agree = math.isclose(ours.minutes, official, rel_tol=1e-9)
        runner.say(f"result summarizer: {official:.4f} min"
                   + ("" if agree else f" (jaxperf: {ours.minutes:.4f} min; the summarizer "
                      "counts a run that stopped short of the target as converged in the "
                      "open division, MLPerf's rules as infinitely slow)"))
    if opts.division == "closed":
        rcp = submission.rcp_check(org_dir, workload.ruleset, workload.benchmark)
        if rcp is None:
            runner.say(f"reference convergence points: none for {workload.benchmark} in "
                       f"training {workload.ruleset}")
        else:
            runner.say(f"reference convergence points: {rcp.summary()}")
    return verdict.passed
