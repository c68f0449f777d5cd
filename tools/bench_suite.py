"""Every workload's train step, and the Offline throughput of the served ones, on the devices
found, in one JSON file and one table; with --peers, against the Flax examples' steps.

    python -m tools.bench_suite --suite_json=suite.json                # reference sizes
    python -m tools.bench_suite --preset=tiny --workloads=resnet,transformer --suite_json=t.json
    python -m tools.bench_suite --workloads=resnet,transformer --peers=/path/to/flax \\
        --override=resnet:global_batch_size=16 --override=transformer:max_length=128

Each train step is suite.measure's Stepper: compiled ahead of time, warmed up, then timed
in --rounds rounds of --steps steps on one placed synthetic batch; the median round is
reported. With --peers=<google/flax checkout>, the Flax example that mirrors a workload
(tools.flax_peers) is built at the same model, batch, dtype and devices, and its step runs
in the same rounds, ours then theirs, so that a shared host's drift hits both alike; the
ratio is our samples/s over theirs. A workload that fails (out of memory, say) is recorded
with its one-line reason and the others go on.

Batches: --preset=reference on GPUs and TPUs takes PER_DEVICE_BATCH times the device count
(what MLPerf submitters run per device); elsewhere the preset's own global batch.
--override=WORKLOAD:FIELD=VALUE changes any config field, as --config.FIELD=VALUE would.
"""

import gc
import json
import os
import statistics
import sys
import time

from absl import app, flags, logging

from common.errors import UserError
from flags import config_flags as F
from suite import cli, registry
from suite import measure as measure_lib
from tools import bench_step, flax_peers

WORKLOADS = flags.DEFINE_list("workloads", None, "Workloads to measure (default: all).")
OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "WORKLOAD:FIELD=VALUE, as --config.FIELD=VALUE for that workload.")
# --steps (timed steps, here per round) and --warmup (untimed steps first, each side) are
# tools.bench_step's flags.
STEPS, WARMUP = bench_step.STEPS, bench_step.WARMUP
ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds; the median round is reported.")
# Not --out: tpu_job has that flag, and tools share one flag registry in a process.
OUT = flags.DEFINE_string("suite_json", "bench_suite.json", "The JSON file written.")
PEERS = flags.DEFINE_string("peers", None, "A google/flax checkout: also time its examples' "
                            "ResNet-50 and Transformer steps beside ours.")
OFFLINE_BATCHES = flags.DEFINE_integer("offline_batches", 10, "Batches of the Offline "
                                       "throughput run of a served workload (0: none).")

# Per-device train batches of NVIDIA's MLPerf Training v3.1 closed submissions on one DGX
# H100 (8 GPUs; the per-GPU figure in each config's name, e.g. config_DGXH100_1x8x48x1):
# ResNet-50 400, BERT 48, RNN-T 192. Transformer left MLPerf after v0.7: the Flax example's
# per_device_batch_size of 32 rows of 256 tokens. DLRM-DCNv2 and MiniGo keep the preset's
# global batch (DLRM's is sized for a node, MiniGo's is its games' positions).
PER_DEVICE_BATCH = {"resnet": 400, "bert": 48, "rnnt": 192, "transformer": 32}


def suite_config(workload, preset: str, overrides: list[str], platform: str, devices: int):
    """The preset at this device class's batch, then this workload's --override fields."""
    mine = []
    for o in overrides:
        name, sep, assignment = o.partition(":")
        if not sep or "=" not in assignment:
            raise UserError(f"--override={o}: write WORKLOAD:FIELD=VALUE")
        if name not in registry.names():
            raise UserError(f"--override={o}: unknown workload {name!r}")
        if name == workload.name:
            mine.append(f"--config.{assignment}")
    batch = PER_DEVICE_BATCH.get(workload.name)
    if preset == "reference" and platform in ("gpu", "tpu") and batch:
        mine.insert(0, f"--config.global_batch_size={batch * devices}")
    return cli.parse_config(workload, preset, mine)


def _median(times: list[float]) -> float:
    return statistics.median(times)


def train_row(workload, cfg, checkout: str | None) -> dict:
    """Our step (and theirs, where a peer exists), in alternating rounds."""
    import jax

    ours = measure_lib.Stepper(workload, cfg)
    row = ours.figures()
    ours.start()
    theirs, peer_failure = None, None
    if checkout and workload.name in flax_peers.EXAMPLES:
        try:
            theirs = flax_peers.peer(checkout, workload.name, ours.cfg,
                                     jax.device_get(ours.batch))
            theirs.compile()
        except Exception as e:  # noqa: BLE001 - their step failing leaves ours to measure
            theirs, peer_failure = None, _reason(e)
            print(f"{workload.name}: the Flax example failed: {peer_failure}", file=sys.stderr)
    for side in (ours, theirs):
        if side is not None and WARMUP.value:
            side.run(WARMUP.value)
    mine, peer, metrics = [], [], None
    for _ in range(ROUNDS.value):
        seconds, metrics = ours.run(STEPS.value)
        mine.append(seconds)
        if theirs is not None:
            peer.append(theirs.run(STEPS.value)[0])
    row.update(ours.rates(STEPS.value, _median(mine)))
    row["loss"] = float(jax.device_get(metrics[-1]["loss"]))
    row["peak_bytes"] = _peak_bytes()
    if peer_failure:
        row["peer"] = {"status": "failed", "reason": peer_failure}
    if theirs is not None:
        their_step = _median(peer) / STEPS.value
        row["peer"] = {"example": f"examples/{flax_peers.EXAMPLES[workload.name]}",
                       "step_ms": 1e3 * their_step,
                       "samples_per_s": ours.cfg.global_batch_size / their_step,
                       "compile_s": theirs.compile_s,
                       "rounds_ms": [1e3 * s / STEPS.value for s in peer]}
        row["rounds_ms"] = [1e3 * s / STEPS.value for s in mine]
        row["ours_over_theirs"] = row["samples_per_s"] / row["peer"]["samples_per_s"]
    return row


def _peak_bytes() -> int | None:
    """The first device's peak memory in use so far in this process, where the backend
    reports it (GPUs, TPUs; not CPUs): never reset, so it is one step's only in the first
    row measured."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def offline_row(workload, cfg, batches: int) -> dict:
    """Offline throughput of the served model at the train step's per-device batch on one
    device, over samples already on it: the bare loop tools.bench_infer compares LoadGen's
    SUT with (LoadGen's own overhead is that tool's measurement). Freshly initialised
    weights at the config's dtype: the speed, not the accuracy, of serving."""
    import jax
    import numpy as np

    from input_pipelines import synthetic
    from suite import config as config_lib
    from suite.serving import sut

    cfg = config_lib.resolve(workload, cfg, jax.device_count(), jax.default_backend())
    batch = max(1, cfg.global_batch_size // jax.device_count())
    params, model_state = workload.init_variables(cfg, jax.random.key(0))
    precision = "fp32" if cfg.compute_dtype == "float32" else "bf16"
    apply, variables = workload.serving_model(cfg, params, model_state, precision, None)
    # A sample is what an eval batch holds, less its labels and bookkeeping.
    spec = {k: v for k, v in workload.batch_spec(cfg, "eval", batch).items()
            if k not in ("label", "mask", "index")}
    host = next(synthetic.batches(spec))
    t0 = time.perf_counter()
    predictor = sut.Predictor(apply, variables,
                              {k: (a.shape[1:], a.dtype) for k, a in host.items()},
                              batch, [batch])
    compile_s = time.perf_counter() - t0
    pool = jax.device_put(host)
    rows = np.arange(batch, dtype=np.int32)
    predictor(pool, rows)  # the first call's one-off costs, off the clock
    t0 = time.perf_counter()
    for _ in range(batches):
        predictor(pool, rows)  # each answer copied to the host, as a SUT completes it
    seconds = time.perf_counter() - t0
    return {"device": f"1x{jax.devices()[0].device_kind}", "dtype": cfg.compute_dtype,
            "global_batch": batch, "compile_s": compile_s,
            "samples_per_s": batches * batch / seconds,
            "step_ms": 1e3 * seconds / batches, "peak_bytes": _peak_bytes()}


def _reason(e: BaseException) -> str:
    """One line: the error's type and its first line (XLA's out-of-memory errors run to
    pages of buffer listings)."""
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first}"[:300]


def measure(name: str, fn) -> dict:
    """fn's figures, or why it failed; what it held is released before the next one."""
    import jax

    try:
        row = {"status": "ok", **fn()}
    except Exception as e:  # noqa: BLE001 - any failure is one workload's result
        row = {"status": "failed", "reason": _reason(e)}
        print(f"{name}: failed: {row['reason']}", file=sys.stderr, flush=True)
    gc.collect()
    jax.clear_caches()
    return row


def run(names: list[str], preset: str, overrides: list[str], checkout: str | None) -> dict:
    import jax

    platform, devices = jax.default_backend(), jax.device_count()
    workloads = [registry.get(n) for n in names]
    # Every config first: a bad --override ends the run before anything is measured.
    configs = [suite_config(w, preset, overrides, platform, devices) for w in workloads]
    rows = []
    for workload, cfg in zip(workloads, configs, strict=True):
        if workload.kind != "supervised":
            # Its batches come from its own games: no synthetic stand-in to time a step on.
            rows.append({"workload": workload.name, "measure": "train_step",
                         "status": "skipped",
                         "reason": f"trains in a {workload.kind} loop on its own games; "
                                   "tools.bench_step times supervised steps only"})
            continue
        print(f"{workload.name}: train step ...", file=sys.stderr, flush=True)
        rows.append({"workload": workload.name, "measure": "train_step",
                     **measure(workload.name, lambda w=workload, c=cfg: train_row(w, c,
                                                                                  checkout))})
        if workload.inference_model and OFFLINE_BATCHES.value > 0:
            print(f"{workload.name}: Offline ...", file=sys.stderr, flush=True)
            rows.append({"workload": workload.name, "measure": "offline",
                         **measure(workload.name,
                                   lambda w=workload, c=cfg: offline_row(
                                       w, c, OFFLINE_BATCHES.value))})
    return {"preset": preset, "platform": platform, "devices": devices,
            "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
            "steps": STEPS.value, "rounds": ROUNDS.value, "peers": checkout, "rows": rows}


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def table(result: dict) -> str:
    """One line per measurement."""
    head = (f"{'workload':<12}{'measure':<11}{'batch':>7}{'samples/s':>12}{'TFLOP/s':>9}"
            f"{'MFU':>7}{'mem GiB':>9}{'compile s':>10}  {'roofline':<26}{'vs Flax':>9}")
    lines = [head]
    for r in result["rows"]:
        start = f"{r['workload']:<12}{r['measure']:<11}"
        if r["status"] != "ok":
            lines.append(f"{start}{r['status'].upper()}: {r['reason']}")
            continue
        # XLA's estimate of this step: the device's peak in use (peak_bytes, in the JSON)
        # never falls within a process, so a later row would inherit an earlier one's.
        memory = ((r.get("temp_bytes") or 0) + (r.get("argument_bytes") or 0)) or None
        bound = "-"
        if r.get("bound"):
            bound = f"{r['bound']}, MFU <= {r['bound_mfu']:.0%}"
        peer = f"{r['ours_over_theirs']:.2f}x" if "ours_over_theirs" in r else "-"
        lines.append(
            f"{start}{r['global_batch']:>7}{_fmt(r.get('samples_per_s'), ',.1f'):>12}"
            f"{_fmt(r.get('tflops_per_s'), '.2f'):>9}{_fmt(r.get('mfu'), '.1%'):>7}"
            f"{_fmt(memory, '.2f', 2**-30):>9}{r['compile_s']:>10.1f}  {bound:<26}{peer:>9}")
    for r in result["rows"]:
        if "peer" in r and "reason" in r["peer"]:
            lines.append(f"{r['workload']}: the Flax example failed: {r['peer']['reason']}")
        elif "peer" in r:
            p = r["peer"]
            lines.append(
                f"{r['workload']}: ours {r['step_ms']:.1f} ms/step, {p['example']} "
                f"{p['step_ms']:.1f} ms/step (medians of {result['rounds']} alternating rounds "
                f"of {result['steps']} steps): ours/theirs {r['ours_over_theirs']:.2f}x "
                "samples/s")
    return "\n".join(lines)


def main(argv) -> None:
    def body():
        for name, value in (("steps", STEPS.value), ("rounds", ROUNDS.value)):
            if value < 1:
                raise UserError(f"--{name} must be >= 1, got {value}")
        if WARMUP.value < 0:
            raise UserError(f"--warmup must be >= 0, got {WARMUP.value}")
        preset = F.PRESET.value or "reference"
        names = WORKLOADS.value or registry.names()
        for n in names:
            registry.get(n).config(preset)  # an unknown name or preset fails here
        checkout = PEERS.value
        if checkout:
            checkout = os.path.abspath(checkout)
            for n in names:
                if n in flax_peers.EXAMPLES:
                    flax_peers.load_example(checkout, n)  # a wrong path fails here
        result = run(names, preset, OVERRIDE.value, checkout)
        with open(OUT.value + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(OUT.value + ".tmp", OUT.value)
        print(table(result))
        print(f"wrote {OUT.value}", file=sys.stderr)

    cli.call(argv, body)


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main)
