"""Train-step throughput of a workload on synthetic batches: the speed half of a benchmark.

    python -m tools.bench_step --workload=resnet --preset=reference \
        --config.global_batch_size=512 --steps=50

--workload, --preset and every --config.* override work as in suite.main (one parser), so
--config.compute_dtype=bfloat16, --config.mesh.model=8 or --config.embedding_sharding=column
apply here too. Compiles ahead of time (compile time and XLA's memory estimate are printed
before the first step), runs warm-up steps off the clock, then times --steps steps with one
device sync at the end. MFU uses the workload's hand-counted FLOPs, not XLA's cost
analysis (which misses cuDNN/cuBLAS calls on GPUs).

The roofline: the hand-counted FLOPs and XLA's bytes accessed of one device's step against
the device's peak FLOP/s and HBM bandwidth (suite.perf) say whether the step is FLOP-bound or
bandwidth-bound, the least step time the peaks allow and the MFU that time would reach. How
far to trust the bytes: XLA's cost analysis counts each HLO instruction's operands and
results after fusion, so on a TPU, where the whole step is XLA fusions, it is close to the
HBM traffic (an upper bound: it cannot see what stays in VMEM or caches). On a GPU it skips
the cuDNN/cuBLAS custom calls, as it does their FLOPs, so the bytes are an undercount and the
bound leans to FLOP-bound; xla_flops beside the hand count shows how much it missed (their
ratio is the share of the step XLA saw). On a CPU there is no peak, hence no roofline.
"""

from absl import app, flags

from common.errors import UserError
from suite import cli, measure

STEPS = flags.DEFINE_integer(
    "steps", 20, "Timed steps; 0 compiles only (compile time and XLA's memory estimate of a "
    "step too large to run here, e.g. a reference step on a CPU).")
WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first.")


def bench(workload, cfg, steps: int, warmup: int) -> dict:
    """Figures of `steps` timed train steps of workload under cfg (resolved here)."""
    import jax

    if steps < 0 or warmup < 0:
        raise UserError("--steps and --warmup must be >= 0")
    stepper = measure.Stepper(workload, cfg)
    figures = stepper.figures()
    if steps == 0:
        return figures
    stepper.start()
    if warmup:
        stepper.run(warmup)
    seconds, timed = stepper.run(steps)
    # Fetched after the clock stops, so that reading them costs the timing nothing.
    losses = [float(m["loss"]) for m in jax.device_get(timed)]
    return {
        **figures,
        **stepper.rates(steps, seconds),
        "loss": losses[-1],
        "losses": losses,  # per timed step: the optimizer really ran
    }


def main(argv) -> int:
    workload = cli.workload()
    r = cli.call(argv, lambda: bench(workload, cli.config(), STEPS.value, WARMUP.value))
    temp = "n/a" if r["temp_bytes"] is None else f"{r['temp_bytes'] / 2**30:.2f} GiB"
    line = (f"{workload.name}/{cli.preset_name()} on {r['device']}, {r['dtype']}, global batch "
            f"{r['global_batch']}: compile {r['compile_s']:.1f} s, XLA temp memory {temp}")
    if "step_ms" in r:
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        line += (f"; step {r['step_ms']:.2f} ms, {r['samples_per_s']:,.1f} samples/s, "
                 f"{r['tflops_per_s']:.2f} TFLOP/s, MFU {mfu}, loss {r['loss']:.4f}")
    else:
        line += " (compiled only: --steps=0)"
    print(line)
    print(roofline_line(r))
    return 0


def roofline_line(r: dict) -> str:
    """Bytes and FLOPs of one device's step, and the roofline where the device's peaks are
    known."""
    def giga(x):
        return "n/a " if x is None else f"{x / 1e9:,.2f} G"

    line = (f"per device and step: {giga(r['device_flops'])}FLOP by hand count, XLA counts "
            f"{giga(r['xla_flops'])}FLOP and {giga(r['bytes_accessed'])}B accessed")
    if r["bound"] is None:
        return line + "; roofline n/a (no known peak FLOP/s or HBM bandwidth for this device)"
    line += (f"; roofline: {r['bound']}-bound, step >= {r['bound_step_ms']:.2f} ms, "
             f"MFU <= {r['bound_mfu']:.1%}")
    if r.get("mfu") is not None:
        line += f" (measured {r['mfu']:.1%}: {r['mfu'] / r['bound_mfu']:.0%} of the bound)"
    return line


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
