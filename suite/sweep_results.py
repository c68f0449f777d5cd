"""What a sweep's points left in their workdirs, read back from the runs' files: which points
are finished (a rerun skips them without starting a process), and the table of point ->
time-to-train, spread, converged runs and best eval metric (suite.scoring reads the logs)."""

import csv
import dataclasses
import math
import os

import ml_collections
import numpy as np

from common.errors import UserError
from suite import config as config_lib
from suite import division, scoring
from suite.mlperf_log import LOG_NAME, has_run_stop
from suite.sweep import Point, render
from suite.target import Target
from suite.workdir import RESUME_MAY_CHANGE

# Options a run found in a point's workdir may differ in from the sweep's: where and how it was
# invoked (the sweep may be rerun from another directory), not what it computes.
_FREE_OPTIONS = RESUME_MAY_CHANGE | {"workdir"}


def run_dirs(point_dir: str, runs: int) -> list[str]:
    """Where suite.main --runs=<runs> --workdir=<point_dir> trains each run."""
    return [point_dir] if runs == 1 else [os.path.join(point_dir, f"run_{i}")
                                          for i in range(runs)]


def status(point_dir: str, runs: int, options: list[dict], fields: dict) -> str:
    """'finished' (every run logged run_stop), 'started' or 'new'.

    options: each run's expected RunOptions as a dict; fields: the config values the point's
    command sets. A run there that recorded other settings is a UserError: suite.main would
    refuse the workdir, and its results are not this point's.
    """
    started = finished = 0
    for run_dir, expected in zip(run_dirs(point_dir, runs), options, strict=True):
        recorded = config_lib.read(run_dir) if os.path.isdir(run_dir) else None
        if recorded is None:
            continue
        started += 1
        ran = recorded.get("options", {})
        differ = sorted(k for k in set(expected) | set(ran)
                        if k not in _FREE_OPTIONS and expected.get(k) != ran.get(k))
        cfg = division.flatten(ml_collections.ConfigDict(recorded.get("config", {})))
        differ += [f"config.{k}" for k, v in fields.items() if cfg.get(k) != v]
        if differ:
            raise UserError(
                f"{run_dir} holds a run with other settings ({', '.join(differ)}); rerun the "
                "sweep with the flags it was started with, or pass a new --sweep_dir")
        finished += has_run_stop(os.path.join(run_dir, LOG_NAME))
    return "finished" if finished == runs else ("started" if started else "new")


@dataclasses.dataclass(frozen=True)
class Row:
    point: Point
    runs: int  # asked for
    records: tuple[scoring.RunRecord, ...]  # the runs that logged run_stop, in seed order

    @property
    def finished(self) -> bool:
        return len(self.records) == self.runs

    @property
    def converged(self) -> int:
        return sum(r.converged for r in self.records)

    @property
    def seconds(self) -> float | None:
        """The olympic score from 3 runs, the mean below (inf where a run missed its target);
        None until every run finished."""
        if not self.finished:
            return None
        times = [r.seconds for r in self.records]
        if self.runs >= 3:
            return scoring.olympic(times).seconds
        return math.inf if any(math.isinf(t) for t in times) else float(np.mean(times))

    @property
    def cv(self) -> float:
        """Coefficient of variation of the converged runs' times (nan under 3 runs)."""
        if not self.finished or self.runs < 3:
            return math.nan
        return scoring.variance([r.seconds for r in self.records]).cv

    def target(self) -> Target | None:
        for r in self.records:
            t = Target.parse(str(r.hparams.get("jaxperf_target", "")))
            if t is not None:
                return t
        return None

    def best(self) -> float | None:
        """The best eval of the target metric over every run, in the target's direction."""
        values = [v for r in self.records for _, _, v in r.evals]
        if not values:
            return None
        t = self.target()
        return min(values) if t is not None and t.mode == "min" else max(values)


def read_rows(sweep_dir: str, points: list[Point], runs: int) -> list[Row]:
    rows = []
    for p in points:
        logs = [os.path.join(d, LOG_NAME) for d in run_dirs(os.path.join(sweep_dir, p.name), runs)]
        records = tuple(scoring.read_run(log) for log in logs if has_run_stop(log))
        rows.append(Row(p, runs, records))
    return rows


def _time_header(runs: int) -> str:
    if runs >= 3:
        return "olympic time-to-train (s)"
    return "time-to-train (s)" if runs == 1 else f"mean time-to-train of {runs} runs (s)"


def _metric(rows: list[Row]) -> str:
    targets = [t for t in (r.target() for r in rows) if t is not None]
    return targets[0].metric if targets else "eval metric"


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """(header, rows of cell texts): swept fields, runs, converged, time-to-train, CV, best."""
    fields = [k for k, _ in rows[0].point.values]
    header = [*fields, "runs", "converged", _time_header(rows[0].runs), "CV",
              f"best {_metric(rows)}"]
    cells = []
    for r in rows:
        s = r.seconds
        ttt = (f"unfinished ({len(r.records)} of {r.runs} runs)" if s is None
               else "did not converge" if math.isinf(s) else f"{s:.2f}")
        best = r.best()
        cells.append([*(render(v) for _, v in r.point.values), str(r.runs),
                      f"{r.converged}/{r.runs}", ttt,
                      "n/a" if math.isnan(r.cv) else f"{r.cv:.1%}",
                      "n/a" if best is None else f"{best:.4f}"])
    return header, cells


def markdown(rows: list[Row]) -> str:
    header, cells = table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    fastest = min((r for r in rows if r.seconds is not None and math.isfinite(r.seconds)),
                  key=lambda r: r.seconds, default=None)
    if fastest is not None:
        lines.append(f"\nfastest: {fastest.point.name} ({fastest.seconds:.2f} s)")
    return "\n".join(lines) + "\n"


def write(sweep_dir: str, rows: list[Row]) -> tuple[str, str]:
    """sweep.md (the printed table) and sweep.csv (raw numbers) in the sweep dir."""
    md, csv_path = os.path.join(sweep_dir, "sweep.md"), os.path.join(sweep_dir, "sweep.csv")
    with open(md, "w") as f:
        f.write(markdown(rows))
    fields = [k for k, _ in rows[0].point.values]
    with open(csv_path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["point", *fields, "runs", "finished_runs", "converged_runs",
                      "time_to_train_s", "cv", "best_metric", "best_value"])
        for r in rows:
            best = r.best()
            out.writerow([r.point.name, *(render(v) for _, v in r.point.values), r.runs,
                          len(r.records), r.converged, "" if r.seconds is None else r.seconds,
                          "" if math.isnan(r.cv) else r.cv, _metric([r]),
                          "" if best is None else best])
    return md, csv_path
