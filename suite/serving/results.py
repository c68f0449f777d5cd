"""What LoadGen wrote: the detail log's result keys, and the accuracy log's answers."""

import json
import os

import numpy as np

DETAIL, SUMMARY, ACCURACY = ("mlperf_log_detail.txt", "mlperf_log_summary.txt",
                             "mlperf_log_accuracy.json")

# The official metric of each scenario, as LoadGen's detail log names it.
METRIC = {
    "SingleStream": ("early_stopping_latency_ss", "p90 latency (early stopping)", "ms"),
    "MultiStream": ("early_stopping_latency_ms", "p99 per-query latency (early stop.)", "ms"),
    "Server": ("result_completed_samples_per_sec", "queries/s at the latency bound", "qps"),
    "Offline": ("result_samples_per_second", "samples/s", "samples/s"),
}


def detail(outdir: str) -> dict:
    """key -> value of every :::MLLOG line (the last one wins)."""
    values = {}
    with open(os.path.join(outdir, DETAIL)) as f:
        for line in f:
            if line.startswith(":::MLLOG"):
                event = json.loads(line[len(":::MLLOG"):])
                values[event["key"]] = event["value"]
    return values


def performance(outdir: str, scenario: str) -> dict:
    d = detail(outdir)
    key, _, unit = METRIC[scenario]
    value = d.get(key)
    if unit == "ms" and value is not None:
        value = value / 1e6
    return {"valid": d.get("result_validity") == "VALID", "metric": value, "unit": unit,
            "reason": (d.get("result_invalid_reason") or "").strip(),
            "p90_latency_ms": d.get("result_90.00_percentile_latency_ns", 0) / 1e6,
            "mean_latency_ms": d.get("result_mean_latency_ns", 0) / 1e6,
            "samples_per_s": d.get("result_samples_per_second")
            or d.get("result_completed_samples_per_sec")
            or d.get("result_qps_with_loadgen_overhead"),
            "errors": d.get("num_errors", 0)}


def answers(outdir: str, dtype, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(answers by sample index, which indices were answered) from mlperf_log_accuracy.json."""
    with open(os.path.join(outdir, ACCURACY)) as f:
        entries = json.load(f)
    rows, seen = {}, np.zeros(count, bool)
    for e in entries:
        rows[e["qsl_idx"]] = np.frombuffer(bytes.fromhex(e["data"]), dtype)
        seen[e["qsl_idx"]] = True
    width = max((r.size for r in rows.values()), default=1)
    out = np.zeros((count, width), dtype)
    for index, row in rows.items():
        out[index] = row
    # One number per sample (a class index) comes back as a flat array.
    return (out[:, 0] if width == 1 else out), seen
