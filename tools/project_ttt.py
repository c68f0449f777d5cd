"""Projected time-to-train: this system's measured step and eval costs, times the convergence
of the official reference runs (or of your own).

    python -m tools.project_ttt --workload=resnet --preset=reference --data=synthetic \
        --config.global_batch_size=3264 --minutes=3
    python -m tools.project_ttt --workload=resnet --convergence=runs/resnet-tiny --minutes=0.5

Measures steady-state train steps (fed by the run's own input pipeline, or synthetic
batches), the first step's start-up and one whole eval, within --minutes after compiling;
then projects run_start -> run_stop from the RCPs mlperf_logging ships for the workload's
benchmark, ruleset and global batch (exact, or interpolated as its rcp_checker does), or
from the runs under --convergence. A projection, never a result. --workload, --preset,
--data_dir and every --config.* work as in suite.main (one parser).
"""

from absl import app, flags

from common.errors import UserError
from flags import config_flags
from flags.data_flags import DATA
from suite import cli, projection
from suite import config as config_lib

_MINUTES = flags.DEFINE_float("minutes", 3.0, "Measurement time after compiling: warm-up, "
                              "one eval and the timed train steps.")
flags.declare_key_flag(DATA)  # suite.main's --data (flags/data_flags.py), in --help here too
_CONVERGENCE = flags.DEFINE_string(
    "convergence", None, "Project from these runs' convergence instead of the RCPs: a run's "
    "workdir, a folder of them (suite.main --runs) or an MLPerf log. Their global batch "
    "must be this config's.")


def _options(workload) -> config_lib.RunOptions:
    preset = cli.preset_name()
    opts = config_lib.RunOptions(workload=workload.name, preset=preset, workdir="",
                                 data=DATA.value, data_dir=config_flags.DATA_DIR.value,
                                 division="open")
    config_lib.validate_options(workload, opts)
    return opts


def _convergence(workload, cfg, schedule) -> projection.Convergence:
    if _CONVERGENCE.value:
        return projection.from_runs(_CONVERGENCE.value, workload.benchmark,
                                    cfg.global_batch_size, schedule.unit)
    if cli.preset_name() != "reference":
        raise UserError(f"the RCPs are the convergence of {workload.benchmark}'s reference "
                        f"model, not of the {cli.preset_name()} preset's; project the reference "
                        "with --preset=reference (and --data_dir, or --data=synthetic), or this "
                        "preset from its own runs with --convergence=<their workdir>")
    return projection.from_rcps(workload.benchmark, workload.ruleset, cfg.global_batch_size,
                                schedule.unit)


def run() -> list[str]:
    import jax

    from suite import lifecycle, measure, runner

    if not _MINUTES.value > 0:
        raise UserError(f"--minutes must be > 0, got {_MINUTES.value}")
    workload = cli.workload()
    opts = _options(workload)
    cfg = config_lib.resolve(workload, cli.config(), jax.device_count(),
                             jax.default_backend())
    data = runner.data_info(workload, cfg, opts)
    schedule = workload.schedule(cfg, data)
    batch = cfg.global_batch_size
    # Everything that can be refused is, before minutes of compiling and measuring.
    conv = _convergence(workload, cfg, schedule)
    projection.evals_to(schedule, conv.mean + conv.stdev)
    m = measure.run_costs(workload, cfg, opts, data, _MINUTES.value)
    p = projection.project(m.costs, schedule, batch, conv)
    c = m.costs
    return [
        f"{workload.name}/{opts.preset} on {lifecycle.platform_name()}, "
        f"{cfg.compute_dtype}, global batch {batch}, data {data.source}: compile and init "
        f"{m.setup_s:.1f} s (outside MLPerf's clock)",
        f"measured: train step {1e3 * c.step_s:.2f} ms ({batch / c.step_s:,.1f} samples/s; "
        f"{m.steps} steps in {m.seconds:.1f} s); one eval {c.eval_s:.2f} s "
        f"({data.eval_examples:,} examples); start-up {c.startup_s:.2f} s (first step "
        f"{m.first_s:.2f} s, first eval {m.first_eval_s:.2f} s)",
        f"convergence: {conv.describe()}",
        f"projected time-to-train: {p.seconds:.2f} s = {p.seconds / 60:.2f} min "
        f"(interval {p.low_s:.2f} .. {p.high_s:.2f} s: convergence mean -/+ 1 stdev); "
        f"{p.steps:,.0f} steps x {1e3 * c.step_s:.2f} ms + {p.evals:.2f} evals x "
        f"{c.eval_s:.2f} s + start-up {c.startup_s:.2f} s",
        "projected, not a result",
    ]


def main(argv) -> int:
    lines = cli.call(argv, run)
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
