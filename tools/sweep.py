"""Sweeps config fields: one plain `python -m suite.main ... --runs=N` command per point, each in
its own workdir under --sweep_dir, then a table and an HTML report of time-to-train per point.

    python -m tools.sweep --workload=resnet --sweep_dir=sweeps/lr --runs=3 \\
        --grid=config.base_lr=1,2,4 --grid=config.warmup_epochs=1,2
    python -m tools.sweep --workload=resnet --sweep_dir=sweeps/lr-random --runs=3 \\
        --random=8 --range=config.base_lr=0.5:8:log --grid=config.warmup_epochs=1,2
    python -m tools.sweep ... --print_commands     # the command lines only, one per line

Every suite.main flag (--preset, --data_dir, --config.*, --seed, --division, ...) applies to
every point. The grid is checked before anything runs (unknown field, a value of the wrong
type, a fixed hyperparameter in a closed-division sweep: one line, exit 2). Rerun the same
command to resume: finished points are read, not run again; an unfinished one resumes as
suite.main resumes. Exit 0 once every point finished (converged or not), 1 where a point
failed, 75 where one was preempted.
"""

import dataclasses
import os
import signal
import subprocess
import sys

from absl import app, flags

from common.errors import UserError
from flags import config_flags, package_flags, run_flags
from flags import sweep_flags as S
from suite import cli, division, preemption, sweep_report
from suite import main as suite_main  # suite.main's flags and run options, for every point
from suite import sweep as sweep_lib
from suite import sweep_results as results

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(S)  # --help lists these; --helpfull adds suite.main's
flags.adopt_module_key_flags(config_flags)
# Flags a sweep sets per point, or that make no sense for many points.
_REFUSED = {
    "workdir": "each point trains in <sweep_dir>/<point>; pass --sweep_dir",
    "submission_dir": "package the chosen point's runs with suite.main --runs --submission_dir",
    "stop_after_blocks": "a sweep's points run to the end; pause a single run with suite.main",
}


def _overrides() -> list[str]:
    """The --config.<field> flags given (the fields every point sets alike), by name."""
    return sorted(n for n in FLAGS if n.startswith("config.") and FLAGS[n].present)


def _base_args() -> list[str]:
    """suite.main's flags as given (in a --flagfile too): the same for every point."""
    modules = (run_flags, config_flags, package_flags)
    names = {f.name for m in modules for f in FLAGS.get_flags_for_module(m.__name__)}
    names = {n for n in names if FLAGS[n].present} - {"workload", "runs"}
    for name in sorted(names & set(_REFUSED)):
        raise UserError(f"--{name} is not a sweep flag: {_REFUSED[name]}")
    args = [FLAGS["workload"].serialize()]
    for name in [*sorted(names), *_overrides()]:
        args += FLAGS[name].serialize().split("\n")  # a multi-string flag: one per value
    return args


def _run_point(args: list[str], output: str) -> tuple[int, str]:
    """Runs one point's suite.main; its output goes to `output`, progress lines (not MLLOG)
    to the console too. Returns (exit code, last line)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    last = ""
    with open(output, "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "suite.main", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        # A preempted sweep hands the signal on: the point checkpoints and exits 75.
        previous = signal.signal(signal.SIGTERM, lambda sig, _: proc.send_signal(sig))
        try:
            for line in proc.stdout:
                log.write(line)
                if line.strip():
                    last = line.strip()
                if not line.startswith(":::MLLOG"):
                    print("  " + line, end="", flush=True)
            return proc.wait(), last
        finally:
            signal.signal(signal.SIGTERM, previous)


def sweep() -> int:
    workload, preset = cli.workload(), cli.preset_name()
    base = _base_args()
    sweep_dir, runs = S.SWEEP_DIR.value, run_flags.RUNS.value
    if not sweep_dir:
        raise UserError("pass --sweep_dir: the points' workdirs, the table and the report go "
                        "there, and rerunning with it resumes the sweep")
    if runs < 1:
        raise UserError(f"--runs must be >= 1, got {runs}")
    fixed = {n[len("config."):] for n in _overrides()}
    swept = sweep_lib.fields(workload, preset, S.GRID.value, S.RANGE.value,
                             random=S.RANDOM.value, fixed=fixed)
    points = (sweep_lib.random_points(swept, S.RANDOM.value, S.SAMPLE_SEED.value)
              if S.RANDOM.value else sweep_lib.grid_points(swept))
    opts = suite_main.run_options(workload, preset)
    base_overrides = [FLAGS[n].serialize() for n in _overrides()]
    configs = sweep_lib.check(workload, preset, opts.division, base_overrides, points)
    commands = [sweep_lib.command(base, p, runs, os.path.join(sweep_dir, p.name))
                for p in points]
    if S.PRINT_COMMANDS.value:
        print("\n".join(sweep_lib.shell_line(c) for c in commands))
        return 0
    # Every point's workdir is read before any runs: one holding other settings stops the sweep.
    options = [dataclasses.asdict(dataclasses.replace(opts, seed=opts.seed + i))
               for i in range(runs)]
    states = []
    for p, cfg in zip(points, configs, strict=True):
        flat = division.flatten(cfg)
        states.append(results.status(os.path.join(sweep_dir, p.name), runs, options,
                                     {k: flat[k] for k in fixed | {f.name for f in swept}}))
    os.makedirs(os.path.join(sweep_dir, "output"), exist_ok=True)
    with open(os.path.join(sweep_dir, "commands.txt"), "w") as f:
        f.write("".join(sweep_lib.shell_line(c) + "\n" for c in commands))
    failed = []
    for i, (p, args, state) in enumerate(zip(points, commands, states, strict=True)):
        where = f"point {i + 1} of {len(points)}, {p.name}"
        if state == "finished":
            print(f"{where}: finished before, kept", flush=True)
            continue
        output = os.path.join(sweep_dir, "output", f"{p.name}.txt")
        print(f"{where}: {sweep_lib.shell_line(args)}", flush=True)
        code, last = _run_point(args, output)
        if code == 2:
            raise UserError(f"{where}: {last.removeprefix('error: ')}")
        if code == preemption.EXIT_CODE:
            print(f"{where} was preempted; rerun the same sweep to resume it", flush=True)
            return code
        if results.status(os.path.join(sweep_dir, p.name), runs, options, {}) != "finished":
            failed.append(p.name)
            print(f"{where} failed (exit {code}); its output: {output}", flush=True)
    rows = results.read_rows(sweep_dir, points, runs)
    print(results.markdown(rows), end="", flush=True)
    md, csv_path = results.write(sweep_dir, rows)
    title = f"{workload.name} ({preset})"
    report = sweep_report.build(sweep_dir, rows, swept, title, sweep_lib.shell_line(commands[0]))
    print(f"table: {md}, {csv_path}\nreport: {report}", flush=True)
    return 1 if failed else 0


def main(argv) -> None:
    sys.exit(cli.call(argv, sweep))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser(suite_main.check_options))
