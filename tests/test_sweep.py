"""Sweeps (tools.sweep): grids and random draws checked before anything runs, the suite.main
command lines they stand for, and one real sweep of the toy workload, resumed."""

import csv
import math
import os
import subprocess
import sys

import pytest

from suite import sweep
from suite.workloads.resnet import ResNetWorkload
from tests.helpers import ROOT, one_line_error, read_log, values

TOY = "tests.toy_workload.workload:LinearDigits"


def _sweep_cli(args: list[str], cache: str):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXPERF_CACHE=cache, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "tools.sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _fields(grids=(), ranges=(), random=0, fixed=frozenset(), preset="tiny"):
    return sweep.fields(ResNetWorkload(), preset, list(grids), list(ranges), random=random,
                        fixed=set(fixed))


def test_grid_values_are_typed_as_the_config_flags_type_them():
    lr, epochs, flip, model = _fields(grids=["config.base_lr=1,2.5", "config.train_epochs=3,5",
                                             "config.random_flip=true,false",
                                             "config.model=resnet_tiny,resnet18"])
    assert lr.values == (1.0, 2.5) and all(type(v) is float for v in lr.values)
    assert epochs.values == (3, 5) and all(type(v) is int for v in epochs.values)
    assert flip.values == (True, False)
    assert model.values == ("resnet_tiny", "resnet18")
    points = sweep.grid_points([lr, flip])
    assert [p.name for p in points] == ["base_lr=1.0,random_flip=true",
                                        "base_lr=1.0,random_flip=false",
                                        "base_lr=2.5,random_flip=true",
                                        "base_lr=2.5,random_flip=false"]
    assert points[1].overrides() == ["--config.base_lr=1.0", "--config.random_flip=false"]
    assert sweep.command(["--workload=resnet"], points[1], 3, "d/x") == [
        "--workload=resnet", "--config.base_lr=1.0", "--config.random_flip=false", "--runs=3",
        "--workdir=d/x"]


@pytest.mark.parametrize("grids, ranges, random, fixed, needles", [
    (["config.nope=1,2"], [], 0, (), ["--grid=config.nope=1,2", "unknown config field 'nope'"]),
    (["config.base_lr=1,abc"], [], 0, (), ["--grid=config.base_lr=1,abc",
                                           "could not convert string to float: 'abc'"]),
    (["config.train_epochs=2,1.5"], [], 0, (), ["config.train_epochs=1.5", "int()"]),
    (["config.random_flip=true,maybe"], [], 0, (), ["random_flip=maybe", "boolean"]),
    (["seed=1,2"], [], 0, (), ["--grid=seed=1,2", "config fields", "--seed and --runs"]),
    (["config.base_lr="], [], 0, (), ["gives no values", "--grid=config.base_lr=1,2,4"]),
    (["config.base_lr=1,1.0"], [], 0, (), ["lists 1.0 twice"]),
    (["config.base_lr=1,2"], [], 0, ("base_lr",), ["also set with --config.base_lr"]),
    (["config.base_lr=1"], ["config.base_lr=1:2"], 3, (), ["config.base_lr is swept twice"]),
    ([], ["config.base_lr=1:2"], 0, (), ["--range draws values at random", "--random="]),
    ([], ["config.base_lr=1-2"], 3, (), ["must look like config.base_lr=<low>:<high>"]),
    ([], ["config.base_lr=1:2:cubic"], 3, (), ["[:lin|:log]"]),
    ([], ["config.base_lr=2:1"], 3, (), ["low < high"]),
    ([], ["config.base_lr=0:1:log"], 3, (), ["a log range needs low > 0"]),
    ([], ["config.train_epochs=1.5:3"], 3, (), ["config.train_epochs=1.5", "int()"]),
    ([], ["config.model=a:b"], 3, (), ["str field", "--grid=config.model="]),
    ([], [], 0, (), ["nothing to sweep"]),
])
def test_a_bad_grid_is_one_line(grids, ranges, random, fixed, needles):
    one_line_error(lambda: _fields(grids, ranges, random, fixed), *needles)


def test_a_closed_sweep_may_vary_only_the_tunable_hyperparameters():
    workload = ResNetWorkload()
    tunable = sweep.grid_points(_fields(grids=["config.base_lr=9,10.5",
                                               "config.warmup_epochs=2,3"], preset="reference"))
    configs = sweep.check(workload, "reference", "closed", ["--config.momentum=0.8"], tunable)
    assert [(c.base_lr, c.warmup_epochs, c.momentum) for c in configs] == [
        (9.0, 2.0, 0.8), (9.0, 3.0, 0.8), (10.5, 2.0, 0.8), (10.5, 3.0, 0.8)]
    # The reference's own value passes, so every point is checked, not just the first.
    fixed = sweep.grid_points(_fields(grids=["config.label_smoothing=0.1,0.2"],
                                      preset="reference"))
    one_line_error(lambda: sweep.check(workload, "reference", "closed", [], fixed),
                   "--division=closed fixes label_smoothing at 0.1 (got 0.2)", "--division=open")
    sweep.check(workload, "reference", "open", [], fixed)


def test_random_points_are_seeded_distinct_and_inside_their_ranges():
    swept = _fields(grids=["config.random_flip=true,false"],
                    ranges=["config.base_lr=0.5:8:log", "config.train_epochs=10:20"], random=1)
    points = sweep.random_points(swept, 12, seed=7)
    assert points == sweep.random_points(swept, 12, seed=7)  # a rerun draws the same points
    assert points != sweep.random_points(swept, 12, seed=8)
    assert len({p.name for p in points}) == 12
    for p in points:
        v = dict(p.values)
        assert type(v["random_flip"]) is bool
        assert type(v["train_epochs"]) is int and 10 <= v["train_epochs"] <= 20
        assert 0.5 <= v["base_lr"] <= 8 and v["base_lr"] == float(f"{v['base_lr']:.4g}")
    # log-uniform: as many draws below the geometric middle (2) as above it, roughly.
    draws = [dict(p.values)["base_lr"] for p in sweep.random_points(swept, 400, seed=0)]
    assert 150 < sum(d < 2.0 for d in draws) < 250
    narrow = _fields(ranges=["config.train_epochs=1:3"], random=1)
    one_line_error(lambda: sweep.random_points(narrow, 5, seed=0), "only 3 distinct points")


def test_print_commands_from_flags_and_from_a_flagfile(tmp_path):
    sweep_dir = str(tmp_path / "sw")
    flags = [f"--workload={TOY}", f"--sweep_dir={sweep_dir}", "--grid=config.base_lr=0.5,2",
             "--grid=config.train_epochs=20,30", "--config.target_value=0.85", "--runs=3",
             "--seed=3", "--nocheck_log"]
    flagfile = tmp_path / "sweep.flags"
    flagfile.write_text("# a sweep kept in a file\n" + "\n".join(flags) + "\n")
    cache = str(tmp_path / "cache")
    direct = _sweep_cli([*flags, "--print_commands"], cache)
    from_file = _sweep_cli([f"--flagfile={flagfile}", "--print_commands"], cache)
    assert direct.returncode == 0, direct.stderr[-2000:]
    base = (f"python -m suite.main --workload={TOY} --nocheck_log --seed=3 "
            "--config.target_value=0.85")
    assert direct.stdout.splitlines() == [
        f"{base} --config.base_lr={lr} --config.train_epochs={e} --runs=3 "
        f"--workdir={sweep_dir}/base_lr={lr},train_epochs={e}"
        for lr in ("0.5", "2.0") for e in (20, 30)]
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    assert from_file.stdout == direct.stdout
    assert not os.path.exists(sweep_dir)  # printing runs and writes nothing


def test_a_bad_grid_stops_the_cli_before_anything_is_written(tmp_path):
    sweep_dir = tmp_path / "sw"
    proc = _sweep_cli([f"--workload={TOY}", f"--sweep_dir={sweep_dir}",
                       "--grid=config.base_lr=1,abc"], str(tmp_path / "cache"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --grid=config.base_lr=1,abc: flag --config.base_lr=abc: could not convert "
        "string to float: 'abc'"]
    assert not sweep_dir.exists()


def _from_logs(point_dir: str) -> tuple[float, int, float]:
    """(olympic time-to-train, converged runs, best top1) of a point's three runs, straight
    from their MLPerf logs."""
    times, best = [], -math.inf
    for i in range(3):
        events = read_log(os.path.join(point_dir, f"run_{i}", "mlperf_log.txt"))
        stop = next(e for e in events if e["key"] == "run_stop")
        start = next(e for e in events if e["key"] == "run_start")
        ok = stop["metadata"]["status"] == "success"
        times.append((stop["time_ms"] - start["time_ms"]) / 1e3 if ok else math.inf)
        best = max(best, *values(events, "eval_accuracy"))
    return sorted(times)[1], sum(math.isfinite(t) for t in times), best


def test_a_sweep_tables_what_its_runs_logged_and_a_rerun_runs_nothing(tmp_path):
    sweep_dir = tmp_path / "sw"
    # base_lr 0.02 misses top1 0.9 in 30 epochs; 2.0 reaches it. A one-value grid field
    # still gets its column and its plot.
    args = [f"--workload={TOY}", f"--sweep_dir={sweep_dir}", "--grid=config.base_lr=0.02,2",
            "--grid=config.train_epochs=30", "--runs=3", "--nocheck_log"]
    cache = str(tmp_path / "cache")
    first = _sweep_cli(args, cache)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    with open(sweep_dir / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["point"] for r in rows] == ["base_lr=0.02,train_epochs=30",
                                          "base_lr=2.0,train_epochs=30"]
    for row in rows:
        seconds, converged, best = _from_logs(str(sweep_dir / row["point"]))
        assert float(row["time_to_train_s"]) == pytest.approx(seconds, rel=1e-12)
        assert int(row["converged_runs"]) == converged
        assert float(row["best_value"]) == best and row["best_metric"] == "top1"
    assert rows[0]["time_to_train_s"] == "inf" and int(rows[1]["converged_runs"]) >= 2
    table = (sweep_dir / "sweep.md").read_text()
    assert table in first.stdout
    assert table.splitlines()[0] == ("| base_lr | train_epochs | runs | converged | olympic "
                                     "time-to-train (s) | CV | best top1 |")
    assert table.splitlines()[2].startswith("| 0.02 | 30 | 3 | 0/3 | did not converge |")
    report = (sweep_dir / "report.html").read_text()
    assert report.count("<img ") == 2
    assert sorted(os.listdir(sweep_dir / "report_files")) == ["ttt_vs_base_lr.png",
                                                              "ttt_vs_train_epochs.png"]
    outputs = {p: (sweep_dir / "output" / p).read_text() for p in os.listdir(sweep_dir / "output")}

    again = _sweep_cli(args, cache)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("finished before, kept") == 2
    assert "--- run" not in again.stdout  # no suite.main started
    assert {p: (sweep_dir / "output" / p).read_text() for p in outputs} == outputs
    assert (sweep_dir / "sweep.md").read_text() == table

    # The same directory with other settings is refused before anything runs.
    other = _sweep_cli([*args, "--seed=1"], cache)
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1].endswith(
        "holds a run with other settings (seed); rerun the sweep with the flags it was started "
        "with, or pass a new --sweep_dir")

