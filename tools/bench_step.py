"""Train-step throughput of a workload on synthetic batches: the speed half of a benchmark.

    python -m tools.bench_step --workload=resnet --preset=reference --batch=512 --steps=50

Compiles ahead of time (compile time and XLA's memory estimate are printed before
the first step), runs warm-up steps off the clock, then times --steps steps with one
device sync at the end. MFU uses the workload's hand-counted FLOPs, not XLA's cost
analysis (which misses cuDNN/cuBLAS calls on GPUs).
"""

import sys
import time

from absl import app, flags, logging

from suite import compile as compile_lib
from suite import config as config_lib
from suite import mesh as mesh_lib
from suite import perf, registry
from suite.errors import UserError

_WORKLOAD = flags.DEFINE_string("workload", "resnet", "Workload to time.")
_PRESET = flags.DEFINE_string("preset", "reference", "Config preset.")
_BATCH = flags.DEFINE_integer("batch", None, "Global batch size (default: the preset's).")
_DTYPE = flags.DEFINE_string("dtype", "auto", "Compute dtype: auto, bfloat16 or float32.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first.")
_FSDP = flags.DEFINE_integer("fsdp", 1, "Mesh fsdp axis size.")
_MODEL = flags.DEFINE_integer("model", 1, "Mesh model axis size (DLRM: devices its tables "
                              "split over).")


def bench(workload_name: str, preset: str, batch: int | None, dtype: str, steps: int,
          warmup: int, fsdp: int = 1, model: int = 1) -> dict:
    import jax
    import numpy as np

    from input_pipelines import synthetic

    if steps < 1 or warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    workload = registry.get(workload_name)
    if preset not in workload.presets:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(workload.presets)}")
    cfg = workload.config(preset)
    if batch is not None:
        cfg.global_batch_size = batch
    cfg.compute_dtype = dtype
    cfg.mesh.fsdp, cfg.mesh.model = fsdp, model
    cfg = config_lib.resolve(workload, cfg, jax.device_count(), jax.default_backend())
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model)
    local = cfg.global_batch_size // jax.process_count()
    t0 = time.perf_counter()
    fns = compile_lib.build(workload, cfg, mesh, local, jax.process_count())
    compile_s = time.perf_counter() - t0
    memory = fns.train_step.memory_analysis()
    state = fns.init(jax.random.key(0))
    key = jax.jit(lambda: jax.random.key(1), out_shardings=mesh_lib.replicated(mesh))()
    batches = synthetic.batches(workload.batch_spec(cfg, "train", local),
                                high=workload.synthetic_high(cfg))
    # The batch is placed once: this times the step, not the host-to-device copy.
    batch = mesh_lib.to_global(next(batches), fns.batch_sharding)
    for _ in range(warmup):
        state, metrics, key = fns.train_step(state, batch, key)
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics, key = fns.train_step(state, batch, key)
    loss = float(np.asarray(jax.device_get(metrics["loss"])))  # the one sync
    seconds = time.perf_counter() - t0
    rate = steps * cfg.global_batch_size / seconds
    flops = workload.flops_per_example(cfg)
    return {
        "device": f"{jax.device_count()}x{jax.devices()[0].device_kind}",
        "dtype": cfg.compute_dtype,
        "global_batch": cfg.global_batch_size,
        "compile_s": compile_s,
        "step_ms": 1e3 * seconds / steps,
        "samples_per_s": rate,
        "tflops_per_s": flops * rate / 1e12,
        "mfu": perf.mfu(flops, rate, perf.peak_flops(jax.devices()[0].device_kind),
                        jax.device_count()),
        "temp_bytes": getattr(memory, "temp_size_in_bytes", None),
        "loss": loss,
    }


def main(argv) -> int:
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # JAX's platform probing is INFO noise
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    try:
        r = bench(_WORKLOAD.value, _PRESET.value, _BATCH.value, _DTYPE.value, _STEPS.value,
                  _WARMUP.value, _FSDP.value, _MODEL.value)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
    temp = "n/a" if r["temp_bytes"] is None else f"{r['temp_bytes'] / 2**30:.2f} GiB"
    print(f"{_WORKLOAD.value}/{_PRESET.value} on {r['device']}, {r['dtype']}, global batch "
          f"{r['global_batch']}: compile {r['compile_s']:.1f} s, XLA temp memory {temp}; "
          f"step {r['step_ms']:.2f} ms, {r['samples_per_s']:,.1f} samples/s, "
          f"{r['tflops_per_s']:.2f} TFLOP/s, MFU {mfu}, loss {r['loss']:.4f}")
    return 0


if __name__ == "__main__":
    app.run(main)
