"""Input throughput of a workload's training pipeline alone: can this host feed the device?

    python -m tools.bench_input --workload=resnet --data_dir=/data/tfds \
        --config.global_batch_size=256 --batches=50 --device_rate=8500

Reads the workload's own train_batches, as the training loop does (decode, augment, batch),
with no model and no device: --warmup_batches batches off the clock (the first one also builds the
tf.data graph and fills the shuffle buffer), then --batches batches timed. Prints samples
(images) per second, per second per core, the bytes each batch holds, read from the arrays
themselves (so uint8 and float32 images are both counted as they are), and, given
--device_rate, how many such cores feed a device that consumes that many samples per second.

The tf.data stages run with AUTOTUNE parallelism, which tf.data bounds by the cores this
process may run on, and its threads come from a pool of that size. --cores=N pins the process
to N of its cores before TensorFlow starts, so the same pipeline is measured on N cores.
Scaling is not perfectly linear in cores: measure at the count you mean to use.
--config.global_batch_size is one host's batch here (a job of P processes reads 1/P each).
"""

import dataclasses
import json
import math
import os
import time

import numpy as np
from absl import app, flags

from common.errors import UserError
from suite import cli
from suite import config as config_lib

_BATCHES = flags.DEFINE_integer("batches", 50, "Timed batches.")
# Named apart from bench_step's --warmup (steps): tools share one flag registry in a process.
_WARMUP = flags.DEFINE_integer(
    "warmup_batches", 5, "Untimed batches first (the first one builds the pipeline).")
_CORES = flags.DEFINE_integer(
    "cores", 0, "Pin this process to N of the cores it may use (0: all of them).")
_DEVICE_RATE = flags.DEFINE_float(
    "device_rate", 0.0, "Samples per second a device consumes (e.g. 8500 for the ResNet-50 "
    "goal on one H200): say how many cores feed it (0: don't).")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")


def pin_cores(cores: int) -> int:
    """Restricts this process to `cores` of the cores it may run on (0: all); returns the
    count it runs on. Before TensorFlow starts: its thread pools size themselves then."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores < 0 or cores > len(allowed):
        raise UserError(f"--cores must be between 0 and the {len(allowed)} cores this process "
                        f"may use, got {cores}")
    if cores:
        os.sched_setaffinity(0, allowed[:cores])
    return len(os.sched_getaffinity(0))


def batch_layout(batch) -> dict[str, dict]:
    """{name: {shape, dtype, bytes}} of a batch's arrays, as they are."""
    import jax

    layout = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
        leaf = np.asarray(leaf)
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        layout[name] = {"shape": list(leaf.shape), "dtype": str(leaf.dtype),
                        "bytes": int(leaf.nbytes)}
    return layout


def cores_to_feed(device_rate: float, per_core: float) -> int:
    """Cores that, at per_core samples/s each, supply device_rate samples/s."""
    return math.ceil(device_rate / per_core)


def bench(workload, cfg, data_dir: str | None, *, batches: int, warmup: int, cores: int,
          device_rate: float = 0.0) -> dict:
    """Figures of `batches` timed batches of workload's train pipeline under cfg."""
    import jax

    if batches < 1 or warmup < 1:
        raise UserError(f"--batches and --warmup_batches must be >= 1, got {batches} and {warmup}")
    if not device_rate >= 0:  # NaN too
        raise UserError(f"--device_rate must be >= 0, got {device_rate}")
    if workload.kind != "supervised":
        raise UserError(f"{workload.name} makes its training data by {workload.kind}, not from "
                        "a dataset: there is no input pipeline to measure")
    used = pin_cores(cores)
    cfg = config_lib.resolve(workload, cfg, jax.device_count(), jax.default_backend())
    # As suite.runner.data_info does: the loop's train_batches reads data_dir from DataInfo.
    data = dataclasses.replace(workload.data_info(cfg, data_dir), data_dir=data_dir)
    samples = cfg.global_batch_size
    t0 = time.perf_counter()
    batches_iter = workload.train_batches(cfg, data, local_batch_size=samples,
                                          process_index=0, process_count=1, seed=0)
    layout = batch_layout(next(batches_iter))
    first_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        next(batches_iter)
    t0 = time.perf_counter()
    moved = 0
    for _ in range(batches):
        moved += sum(a.nbytes for a in jax.tree_util.tree_leaves(next(batches_iter)))
    seconds = time.perf_counter() - t0
    rate = batches * samples / seconds
    figures = {
        "workload": workload.name, "data": data.source, "unit": _unit(layout),
        "batch": samples, "batches": batches, "seconds": seconds, "first_batch_s": first_s,
        "cores": used, "host_cores": os.cpu_count(), "samples_per_s": rate,
        "samples_per_s_per_core": rate / used, "batch_layout": layout,
        "bytes_per_batch": sum(v["bytes"] for v in layout.values()),
        "bytes_per_s": moved / seconds,
    }
    if device_rate:
        figures["device_rate"] = device_rate
        figures["cores_to_feed"] = cores_to_feed(device_rate, rate / used)
    return figures


def _unit(layout: dict) -> str:
    return "images" if any("image" in name for name in layout) else "samples"


def describe(r: dict) -> list[str]:
    """The figures as the tool prints them."""
    unit = r["unit"]
    arrays = ", ".join(f"{name} {v['dtype']}{v['shape']} {v['bytes']:,} B"
                       for name, v in r["batch_layout"].items())
    lines = [
        f"{r['workload']} train input, {r['data']}, batch {r['batch']}, on {r['cores']} of "
        f"{r['host_cores']} host cores: first batch {r['first_batch_s']:.1f} s",
        f"batch: {arrays} ({r['bytes_per_batch'] / 2**20:.2f} MiB)",
        f"{r['batches']} batches in {r['seconds']:.2f} s: {r['samples_per_s']:,.1f} {unit}/s, "
        f"{r['samples_per_s_per_core']:,.1f} {unit}/s per core, "
        f"{r['bytes_per_s'] / 2**20:,.1f} MiB/s",
    ]
    if "device_rate" in r:
        lines.append(f"a device at {r['device_rate']:,.0f} {unit}/s needs {r['cores_to_feed']} "
                     f"such cores feeding it")
    return lines


def main(argv) -> None:
    def body() -> None:
        r = bench(cli.workload(), cli.config(), cli.data_dir(),
                  batches=_BATCHES.value, warmup=_WARMUP.value, cores=_CORES.value,
                  device_rate=_DEVICE_RATE.value)
        print("\n".join(describe(r)), flush=True)
        if _JSON.value:
            try:
                with open(_JSON.value, "w") as f:
                    json.dump(r, f, indent=2)
            except OSError as e:
                raise UserError(f"cannot write --json {_JSON.value} ({e.strerror}); "
                                "pick a writable path") from e

    cli.call(argv, body)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
