"""What the LoadGen harness costs: the SUT under LoadGen against a bare loop over the same
compiled predict function on the same device-resident samples, in one process.

  python -m tools.bench_infer --workload=resnet                     # fp32, bf16 and int8
  python -m tools.bench_infer --checkpoint=runs/resnet-tiny-... --precisions=int8

Prints, per precision, SingleStream's 90th-percentile latency and Offline's samples/s,
SUT and bare side by side (medians of --repeats alternations), and the harness's overhead.
Goal: at most 10 % latency and 5 % throughput. These are measurements, not MLPerf results
(the runs set their own durations).
"""

import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

from common.errors import UserError
from flags.serving_flags import CHECKPOINT, MAX_BATCH
from suite import cli

PRECISIONS = flags.DEFINE_list("precisions", ["fp32", "bf16", "int8"], "Precisions to measure.")
DURATION_MS = flags.DEFINE_integer("duration_ms", 3000, "Length of each LoadGen run.")
# --checkpoint and --max_batch are suite.infer's own (flags/serving_flags.py); --help lists
# them with this tool's.
flags.declare_key_flag(CHECKPOINT)
flags.declare_key_flag(MAX_BATCH)
REPEATS = flags.DEFINE_integer("repeats", 3, "Bare and SUT measurements, alternated; the "
                               "median of each is reported.")
FLAGS = flags.FLAGS


def bare_latency_ms(predictor, pool, count: int, queries: int) -> float:
    """p90 of one-sample predict calls, each timed to its answer on the host."""
    times, rng = [], np.random.default_rng(0)
    for index in rng.integers(0, count, queries):
        t0 = time.perf_counter()
        predictor(pool.arrays, np.array([index], np.int32))
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 90) * 1e3)


def bare_throughput(predictor, pool, count: int, samples: int, batch: int) -> float:
    rows = np.arange(samples, dtype=np.int32) % count
    t0 = time.perf_counter()
    for start in range(0, samples, batch):
        predictor(pool.arrays, rows[start:start + batch])
    return samples / (time.perf_counter() - t0)


def sut_run(lg, harness, scenario: str, outdir: str, **fields) -> dict:
    from suite.serving import results

    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms = DURATION_MS.value
    for key, value in fields.items():
        setattr(s, key, value)
    max_batch = 1 if scenario == "SingleStream" else MAX_BATCH.value
    harness.run(s, outdir, max_batch, 0.0, None)
    return results.detail(outdir)


def measure(lg, req: dict, tmp: str) -> dict:
    from suite.serving import child

    harness = child.Harness(lg, req, 0, [1, MAX_BATCH.value])
    count = harness.samples.count
    found = {"sut_p90_ms": [], "bare_p90_ms": [], "sut_samples_per_s": [],
             "bare_samples_per_s": []}
    # Bare and SUT alternate, and each figure is the median of its repeats: a shared
    # host's speed drifts by a fifth over tens of seconds, which one pair would measure.
    for k in range(REPEATS.value):
        harness.pool.load(range(harness.capacity))
        bare_p90 = bare_latency_ms(harness.predictor, harness.pool, count, 2000)
        bare_qps = bare_throughput(harness.predictor, harness.pool, count, 20 * count,
                                   MAX_BATCH.value)
        harness.pool.unload(range(harness.capacity))
        where = os.path.join(tmp, req["precision"], str(k))
        single = sut_run(lg, harness, "SingleStream", os.path.join(where, "ss"),
                         single_stream_expected_latency_ns=int(bare_p90 * 0.5e6),
                         min_query_count=1000)
        offline = sut_run(lg, harness, "Offline", os.path.join(where, "off"),
                          offline_expected_qps=bare_qps * 1.25, min_query_count=1)
        found["sut_p90_ms"].append(single["result_90.00_percentile_latency_ns"] / 1e6)
        found["bare_p90_ms"].append(bare_p90)
        found["sut_samples_per_s"].append(offline["result_samples_per_second"])
        found["bare_samples_per_s"].append(bare_qps)
    return {key: float(np.median(values)) for key, values in found.items()}


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    import mlperf_loadgen as lg

    from suite.serving import harness as harness_lib
    from suite.serving import samples as samples_lib

    try:
        workload = cli.workload()
        bad = [p for p in PRECISIONS.value if p not in ("fp32", "bf16", "int8")]
        if bad:
            raise UserError(f"--precisions: unknown {', '.join(bad)}; use fp32, bf16, int8")
        checkpoint = harness_lib.checkpoint_for(workload, CHECKPOINT.value, cli.config(),
                                                allow_unconverged=False)
        cfg, data = harness_lib.served_config(workload, checkpoint, None)
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            samples_lib.write(workload, cfg, data, os.path.join(tmp, "samples"))
            calibration = os.path.join(tmp, "calibration.npz")
            if "int8" in PRECISIONS.value:
                np.savez(calibration, **workload.calibration_inputs(cfg, data, None))
            for precision in PRECISIONS.value:
                req = {"workload": workload.name, "checkpoint": checkpoint.workdir,
                       "precision": precision, "samples_dir": os.path.join(tmp, "samples"),
                       "calibration": calibration if precision == "int8" else None}
                rows[precision] = measure(lg, req, tmp)
    except UserError as e:
        cli.fail(str(e))
    print(f"{'precision':<10}{'SS p90 SUT':>12}{'bare':>9}{'overhead':>10}"
          f"{'Offline SUT':>14}{'bare':>10}{'overhead':>10}")
    for precision, r in rows.items():
        lat = r["sut_p90_ms"] / r["bare_p90_ms"] - 1
        thr = 1 - r["sut_samples_per_s"] / r["bare_samples_per_s"]
        print(f"{precision:<10}{r['sut_p90_ms']:>10.3f}ms{r['bare_p90_ms']:>7.3f}ms{lat:>+10.1%}"
              f"{r['sut_samples_per_s']:>12,.0f}/s{r['bare_samples_per_s']:>8,.0f}/s{thr:>+10.1%}")
    print("goal: latency overhead <= 10 %, throughput overhead <= 5 %", file=sys.stderr)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
