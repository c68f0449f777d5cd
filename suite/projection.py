"""Projected time-to-train: measured costs on this system times a known convergence point.

MLPerf times run_start -> run_stop, so compilation and initialisation are left out and a
run that converges at x (epochs, or samples where the log counts samples) is projected as

    seconds(x) = start-up + steps(x) * step time + evals(x) * eval time

start-up: what a run's first step and first eval cost beyond later ones (the input
pipeline's first batch, each program's first execution). evals(x): the evals the config's
schedule runs up to x, counted fractionally between two evals, as the mean of runs that
stop at one or the other would.

Where x comes from: the reference convergence points (RCPs) that mlperf_logging ships for a
benchmark, ruleset and global batch, looked up and interpolated by its own rcp_checker; or
the runs a user made (their logs), for presets and rulesets that have no RCPs. x is the
olympic mean of the runs' convergence (the RCPs' own 'RCP Mean'); the interval is x minus
and plus one standard deviation of the runs ('RCP Stdev', over every listed run).
"""

import dataclasses
import glob
import os

import numpy as np

from common.errors import UserError
from suite import scoring
from suite.schedule import EPOCHS, SAMPLES, Schedule

USAGE = "training"


@dataclasses.dataclass(frozen=True)
class Convergence:
    """Where runs at one global batch reach the target, in the schedule's unit."""

    source: str  # the RCP file, or the runs' folder
    how: str  # "exact", "interpolated between BS a and b", "measured"
    batch: int
    unit: str  # EPOCHS or SAMPLES: what the log's epoch_num counts
    mean: float  # olympic mean (the plain mean of fewer than 3 runs)
    stdev: float  # over every run
    runs: tuple[float, ...]  # the listed runs; empty for an interpolated RCP

    def describe(self) -> str:
        unit = f" {self.unit}"
        n = len(self.runs)
        listed = (f", {n} run{'s' if n > 1 else ''} ({_num(min(self.runs))}.."
                  f"{_num(max(self.runs))})" if n else "")
        return (f"{self.source}, global batch {self.batch} ({self.how}): mean "
                f"{_num(self.mean)}{unit}, stdev {_num(self.stdev)}{listed}")


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def rcp_file(benchmark: str, ruleset: str) -> str:
    """Where mlperf_logging keeps the RCPs of a benchmark in a training ruleset."""
    from mlperf_logging.rcp_checker import rcp_checker

    return os.path.join(os.path.dirname(rcp_checker.__file__), f"{USAGE}_{ruleset}",
                        f"rcps_{benchmark}.json")


def from_rcps(benchmark: str, ruleset: str, batch: int, unit: str) -> Convergence:
    """The RCP of exactly this global batch, else the checker's interpolation between the
    neighbouring batch sizes. Every listed RCP counts (the checker's 'full_rcps'): its
    pruned set keeps only the fastest-converging envelope, a bound to check against, not
    the convergence to expect."""
    path = rcp_file(benchmark, ruleset)
    if not os.path.isfile(path):
        raise UserError(f"no reference convergence points (RCPs) exist for {benchmark} in "
                        f"{USAGE} {ruleset} (mlperf_logging has no rcp_checker/"
                        f"{USAGE}_{ruleset}/rcps_{benchmark}.json); project from your own "
                        "runs with --convergence=<their workdir>")
    from mlperf_logging.rcp_checker.rcp_checker import RCP_Checker

    # The checker's own lookup, the methods its check_directory calls: exact batch, else
    # the nearest RCPs below and above, interpolated linearly in mean and stdev.
    checker = RCP_Checker(USAGE, ruleset, benchmark, verbose=False)
    full = "full_rcps"
    record, how = checker._find_rcp(batch, full), "exact"
    if record is None:
        low = checker._find_top_min_rcp(batch, full)
        high = checker._find_bottom_max_rcp(batch, full)
        if low is None or high is None:
            sizes = ", ".join(str(r["BS"]) for r in checker.rcp_data.values())
            raise UserError(f"global batch {batch} is outside the RCPs of {benchmark} in "
                            f"{USAGE} {ruleset} (batch sizes {sizes}); pick one of them or a "
                            "batch between two with --config.global_batch_size")
        _, record = checker._create_interp_rcp(batch, low, high)
        how = f"interpolated between BS {low['BS']} and {high['BS']}"
    return Convergence(
        source=f"{os.path.basename(path)} ({USAGE} {ruleset}, 'Epochs to converge')",
        how=how, batch=batch, unit=unit, mean=float(record["RCP Mean"]),
        stdev=float(record["RCP Stdev"]),
        runs=tuple(float(x) for x in record["Epochs to converge"]))


def _logs(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UserError(f"--convergence {path} does not exist; pass a run's workdir, a folder "
                        "of them (suite.main --runs) or an MLPerf log")
    found = set()
    for pattern in ("mlperf_log.txt", "result_*.txt"):
        found |= set(glob.glob(os.path.join(path, "**", pattern), recursive=True))
    if not found:
        raise UserError(f"--convergence {path} holds no MLPerf log (mlperf_log.txt or "
                        "result_*.txt) in any folder below it")
    return sorted(found)


def from_runs(path: str, benchmark: str, batch: int, unit: str) -> Convergence:
    """The convergence of the runs whose logs lie under path: where each one that reached
    its target stopped (run_stop success's epoch_num), with the RCPs' statistics."""
    records = [scoring.read_run(p) for p in _logs(path)]
    for r in records:
        if r.benchmark != benchmark:
            raise UserError(f"--convergence: {r.path} is a log of {r.benchmark or 'no'} "
                            f"benchmark, not {benchmark}")
    done = [r for r in records if r.converged and r.epochs is not None]
    if not done:
        raise UserError(f"none of the {len(records)} runs under {path} reached its target "
                        "(run_stop success): there is no convergence to project from")
    batches = sorted({r.hparams.get("global_batch_size") for r in done}, key=str)
    if batches != [batch]:
        theirs = ", ".join(map(str, batches))
        raise UserError(f"the runs under {path} trained at global batch {theirs}, this config "
                        f"at {batch}: convergence depends on the batch; pass "
                        f"--config.global_batch_size={batches[0]}")
    counted = SAMPLES if done[0].counts_samples else EPOCHS
    if counted != unit:
        raise UserError(f"the runs under {path} count {counted} and this config's schedule "
                        f"{unit}: they are not runs of this workload's schedule")
    runs = np.sort(np.asarray([float(r.epochs) for r in done]))
    # The RCPs' statistics (rcp_checker's compute_rcp_stats): olympic mean, stdev of all.
    mean = runs[1:-1].mean() if len(runs) >= 3 else runs.mean()
    how = "measured" + (f", {len(records) - len(done)} unconverged left out"
                        if len(done) < len(records) else "")
    return Convergence(source=path, how=how, batch=batch, unit=unit, mean=float(mean),
                       stdev=float(runs.std()), runs=tuple(runs.tolist()))


@dataclasses.dataclass(frozen=True)
class Costs:
    """What this system measured: seconds of one steady train step, of one whole eval, and
    of the start-up a run's first step adds."""

    step_s: float
    eval_s: float
    startup_s: float


@dataclasses.dataclass(frozen=True)
class Projection:
    seconds: float  # at the convergence mean
    low_s: float  # at mean - stdev
    high_s: float  # at mean + stdev
    steps: float  # train steps to the mean
    evals: float  # evals to the mean


def steps_to(schedule: Schedule, batch: int, x: float) -> float:
    """Train steps to x epochs (x samples where the schedule counts samples)."""
    return x * schedule.steps_per_epoch if schedule.unit == EPOCHS else x / batch


def evals_to(schedule: Schedule, x: float) -> float:
    """Evals the schedule runs until x: k at its k-th eval, linear between two (a mean of
    runs stopping at either), at least the first (no run stops before it)."""
    positions = [float(b.eval_epoch) for b in schedule.blocks]
    if x > positions[-1] * (1 + 1e-9):
        raise UserError(f"convergence at {_num(x)} {schedule.unit} (the interval's top) lies "
                        f"past the end of this config's schedule ({schedule.budget()}): a run "
                        "would stop there unconverged; lengthen the schedule with --config.*")
    return float(np.interp(x, positions, np.arange(1, len(positions) + 1)))


def project(costs: Costs, schedule: Schedule, batch: int, conv: Convergence) -> Projection:
    def seconds(x: float) -> float:
        x = max(x, 0.0)
        return (costs.startup_s + steps_to(schedule, batch, x) * costs.step_s
                + evals_to(schedule, x) * costs.eval_s)

    # The interval's top is checked first: a schedule too short for it is an error.
    high = seconds(conv.mean + conv.stdev)
    return Projection(seconds(conv.mean), seconds(conv.mean - conv.stdev), high,
                      steps_to(schedule, batch, conv.mean), evals_to(schedule, conv.mean))
