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

import itertools
import time

from absl import app, flags, logging

from common.errors import UserError
from suite import cli, measure, perf
from suite import compile as compile_lib
from suite import config as config_lib
from suite import mesh as mesh_lib

_STEPS = flags.DEFINE_integer(
    "steps", 20, "Timed steps; 0 compiles only (compile time and XLA's memory estimate of a "
    "step too large to run here, e.g. a reference step on a CPU).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first.")


def bench(workload, cfg, steps: int, warmup: int) -> dict:
    """Figures of `steps` timed train steps of workload under cfg (resolved here)."""
    import jax

    from input_pipelines import synthetic

    if steps < 0 or warmup < 0:
        raise UserError("--steps and --warmup must be >= 0")
    cfg = config_lib.resolve(workload, cfg, jax.device_count(), jax.default_backend())
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model)
    local = cfg.global_batch_size // jax.process_count()
    t0 = time.perf_counter()
    fns = compile_lib.build(workload, cfg, mesh, local, jax.process_count(), every_shape=False)
    compile_s = time.perf_counter() - t0
    memory = fns.train_step.memory_analysis()
    costs = fns.train_step.cost_analysis()
    kind = jax.devices()[0].device_kind
    # One device's share of the step, hand-counted: what MFU and the roofline are about.
    flops = workload.flops_per_example(cfg)
    device_flops = flops * cfg.global_batch_size / jax.device_count()
    bound = perf.roofline(kind, device_flops, costs.get("bytes accessed"))
    figures = {"device": f"{jax.device_count()}x{jax.devices()[0].device_kind}",
               "dtype": cfg.compute_dtype, "global_batch": cfg.global_batch_size,
               "compile_s": compile_s, "temp_bytes": getattr(memory, "temp_size_in_bytes", None),
               "argument_bytes": getattr(memory, "argument_size_in_bytes", None),
               "device_flops": device_flops, "xla_flops": costs.get("flops"),
               "bytes_accessed": costs.get("bytes accessed"),
               "bound": bound and bound.bound, "bound_step_ms": bound and 1e3 * bound.min_step_s,
               "bound_mfu": bound and bound.max_mfu}
    if steps == 0:
        return figures
    state = fns.init(jax.random.key(0))
    key = jax.jit(lambda: jax.random.key(1), out_shardings=mesh_lib.replicated(mesh))()
    batches = synthetic.batches(workload.batch_spec(cfg, "train", local),
                                high=workload.synthetic_high(cfg))
    # The batch is placed once: this times the step, not the host-to-device copy.
    batch = itertools.repeat(mesh_lib.to_global(next(batches), fns.batch_sharding))
    if warmup:
        state, key, _, _ = measure.timed_steps(fns.train_step, state, key, batch, warmup)
    state, key, timed, seconds = measure.timed_steps(fns.train_step, state, key, batch, steps)
    # Fetched after the clock stops, so that reading them costs the timing nothing.
    losses = [float(m["loss"]) for m in jax.device_get(timed)]
    rate = steps * cfg.global_batch_size / seconds
    return {
        **figures,
        "step_ms": 1e3 * seconds / steps,
        "samples_per_s": rate,
        "tflops_per_s": flops * rate / 1e12,
        "mfu": perf.mfu(flops, rate, perf.peak_flops(kind), jax.device_count()),
        "loss": losses[-1],
        "losses": losses,  # per timed step: the optimizer really ran
    }


def main(argv) -> int:
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # JAX's platform probing is INFO noise
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags take the form --name=value")
    workload = cli.workload()
    try:
        r = bench(workload, cli.config(), _STEPS.value, _WARMUP.value)
    except UserError as e:
        cli.fail(str(e))
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
