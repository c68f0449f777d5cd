"""The time-to-train loop's throughput against the bare train step's, in one process.

    python -m tools.bench_loop --workload=resnet --preset=reference \
        --config.global_batch_size=16 --config.image_size=64 \
        --config.train_examples=320 --config.eval_examples=16 --blocks=2

tools.bench_step times the compiled step alone on one batch placed once. The loop
(suite/loops/supervised.py) does what a timed run does: a fresh batch staged on the
devices each step, the preemption check, the live bar's tick, the MLPerf block events,
the per-block loss fetch. Both run here with the same compiled step on synthetic batches
of the same config, taking turns (step, loop, step, loop, step: neither gets a warmer or
quieter machine than the other), and the ratio of the medians, the loop's samples/s over
the step's, is what the harness costs: the goal is >= 98 %. Each round's first loop block
is a warm-up off the record; every later block is one figure.
"""

import statistics
import tempfile

from absl import app, flags

from common.errors import UserError
from suite import cli
from suite import config as config_lib

_BLOCKS = flags.DEFINE_integer("blocks", 2, "Timed blocks of the loop a round, after one "
                               "warm-up block.")
# Not --rounds: bench_suite has that flag, and tools share one flag registry in a process.
_ROUNDS = flags.DEFINE_integer("loop_rounds", 2, "Rounds of (step alone, loop), then the step "
                               "alone once more.")
_GOAL = 0.98


def compare(workload, cfg, blocks: int, rounds: int) -> dict:
    """Samples/s of the bare step and of the loop's blocks, alternating, one compile."""
    import jax

    from suite import measure, preemption
    from suite import mesh as mesh_lib
    from suite.config import RunOptions
    from suite.loops.supervised import SupervisedLoop
    from suite.mlperf_log import MLPerfLog

    if blocks < 1 or rounds < 1:
        raise UserError("--blocks and --loop_rounds must be >= 1")
    if workload.kind != "supervised":
        raise UserError(f"{workload.name} trains by a {workload.kind} loop; bench_loop times "
                        "the supervised loop")
    cfg = config_lib.resolve(workload, cfg, jax.device_count(), jax.default_backend())
    data = workload.synthetic_data_info(cfg)
    schedule = workload.schedule(cfg, data).blocks
    if len(schedule) < blocks + 1:
        raise UserError(f"the schedule has {len(schedule)} blocks, fewer than --blocks="
                        f"{blocks} and a warm-up one; raise the config's epochs")
    steps = schedule[1].end_step - schedule[1].start_step
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model)
    opts = RunOptions(workload.name, "bench", "", data="synthetic")
    loop = SupervisedLoop(workload, cfg, opts, data, mesh)
    # The bare step as tools.bench_step times it (one batch placed once, reused), on the
    # loop's own compiled step and state: the two take turns on one state.
    step = measure.Stepper(workload, cfg, mesh, loop.fns)
    step.start(loop.init_state(0))
    step.run(3)

    def step_alone() -> float:
        seconds, _ = step.run(steps)
        return steps * cfg.global_batch_size / seconds

    def loop_blocks() -> list:
        progress = {"step": 0, "epoch": 0, "blocks": 0, "run_start_ms": 0}
        with tempfile.TemporaryDirectory() as workdir:
            log = MLPerfLog(workdir, enabled=jax.process_index() == 0)
            reports = loop.blocks(step.state, progress, loop.prepare(progress), log,
                                  preemption.Notice(), lambda _: None)
            done = [next(reports) for _ in range(blocks + 1)]
            reports.close()
        step.state = done[-1].state  # the loop donated the one it was given
        stats = [r.stats for r in done]
        return stats[1:]  # the first block is the warm-up

    step_rates, loop_stats = [], []
    for _ in range(rounds):
        step_rates.append(step_alone())
        loop_stats += loop_blocks()
    step_rates.append(step_alone())
    loop_rates = [s.samples_per_s for s in loop_stats]
    return {"step_samples_per_s": step_rates, "loop_samples_per_s": loop_rates,
            "loop_host_overhead": [s.host_overhead for s in loop_stats],
            "steps_per_block": steps, "goal": _GOAL,
            "ratio": statistics.median(loop_rates) / statistics.median(step_rates)}


def main(argv) -> int:
    workload = cli.workload()
    r = cli.call(argv, lambda: compare(workload, cli.config(), _BLOCKS.value, _ROUNDS.value))
    step = ", ".join(f"{x:,.1f}" for x in r["step_samples_per_s"])
    loop = ", ".join(f"{x:,.1f}" for x in r["loop_samples_per_s"])
    host = ", ".join(f"{x:.1%}" for x in r["loop_host_overhead"])
    verdict = "meets" if r["ratio"] >= _GOAL else "misses"
    print(f"{workload.name}/{cli.preset_name()}: step alone {step} samples/s; loop {loop} "
          f"samples/s ({r['steps_per_block']} steps a block, host overhead {host}); "
          f"loop/step {r['ratio']:.1%} ({verdict} the {_GOAL:.0%} goal)")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
