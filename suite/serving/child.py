"""One LoadGen process: `python -m suite.serving.child REQUEST.json`.

The parent (suite.serving.harness) writes the request and reads <outdir>/result.json.
Kinds: 'test' (one scenario in one mode, settings from mlperf.conf + user.conf: a result),
'tune' (short measurements that find the expected latencies and QPS user.conf records).
"""

import gc
import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from flax import linen as nn

from suite import registry, weights
from suite.serving import results
from suite.serving import samples as samples_lib
from suite.serving import settings as settings_lib
from suite.serving import sut as sut_lib

RESULT = "result.json"


def load_model(req: dict):
    """(workload, cfg, apply, variables) from the request's checkpoint and precision."""
    workload = registry.get(req["workload"])
    checkpoint = weights.Checkpoint(req["checkpoint"])
    cfg = ml_collections.ConfigDict(checkpoint.config)
    params, model_state = jax.eval_shape(
        lambda: workload.init_variables(cfg, jax.random.key(0)))
    abstract = {"params": nn.unbox(params), "model_state": model_state}
    restored = checkpoint.restore(abstract)
    calibration = None
    if req["calibration"]:
        with np.load(req["calibration"]) as f:
            calibration = dict(f)
    apply, variables = workload.serving_model(cfg, restored["params"],
                                              restored["model_state"], req["precision"],
                                              calibration)
    return workload, cfg, apply, variables


class Harness:
    """Model, samples and SUT of one process, reused by every test the process runs."""

    def __init__(self, lg, req: dict, capacity: int, buckets):
        self.lg, self.req = lg, req
        self.workload, self.cfg, apply, variables = load_model(req)
        self.samples = samples_lib.Samples(req["samples_dir"])
        capacity = min(capacity or self.samples.count, self.samples.count)
        spec = {k: (a.shape[1:], a.dtype) for k, a in self.samples.inputs.items()}
        self.predictor = sut_lib.Predictor(apply, variables, spec, capacity, buckets)
        self.pool = sut_lib.Pool(self.samples, capacity)
        self.capacity = capacity
        # Each program's first call pays one-off costs: pay them before any test.
        self.pool.load(range(capacity))
        for b in self.predictor.buckets:
            self.predictor(self.pool.arrays, np.zeros(b, np.int32))
        self.pool.unload(range(capacity))

    def run(self, settings, outdir: str, max_batch: int, wait_s: float,
            audit: str | None) -> dict:
        lg = self.lg
        sut = sut_lib.SUT(lg, self.predictor, self.pool, max_batch, wait_s)
        sut_handle = lg.ConstructSUT(sut.issue_query, sut.flush_queries)
        qsl_handle = lg.ConstructQSL(self.samples.count, self.capacity, self.pool.load,
                                     self.pool.unload)
        compiles = _CompileCounter()
        # A collection pass stops every Python thread for milliseconds, which a 15 ms
        # Server bound notices: collect before the test, then none during it.
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        try:
            # An explicit audit path: LoadGen would otherwise read ./audit.config if present.
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings,
                                        settings_lib.log_settings(lg, outdir),
                                        audit or os.path.join(outdir, "no-audit.config"))
        finally:
            seconds = time.perf_counter() - t0
            gc.enable()
            compiles.close()
            sut.stop()
            lg.DestroyQSL(qsl_handle)
            lg.DestroySUT(sut_handle)
        return {"seconds": seconds, "compiles": compiles.count, "batches": sut.batches,
                "samples": sut.samples}


class _CompileCounter:
    """Counts XLA compilations while a test runs: the SUT must compile nothing then."""

    def __init__(self):
        from jax import monitoring

        self.count, self._open = 0, True

        def listener(event, duration, **kwargs):
            if self._open and "backend_compile" in event:
                self.count += 1

        monitoring.register_event_duration_secs_listener(listener)

    def close(self):
        self._open = False


def scenario_batch(req: dict, scenario: str, samples_per_query: int) -> tuple[int, float]:
    """(max batch, Server's batching wait in s) of a scenario."""
    if scenario == "SingleStream":
        return 1, 0.0
    if scenario == "MultiStream":
        return samples_per_query, 0.0
    if scenario == "Server":
        return req["server_max_batch"], req["server_wait_ms"] / 1e3
    return req["max_batch"], 0.0


def buckets_for(req: dict, scenarios, samples_per_query: int) -> list[int]:
    sizes = set()
    for scenario in scenarios:
        top = scenario_batch(req, scenario, samples_per_query)[0]
        if scenario == "Server":  # a dynamic batch can be any size up to its top
            sizes.update(b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if b < top)
        sizes.add(top)
    return sorted(sizes)


def run_test(lg, req: dict) -> dict:
    scenario, mode = req["scenario"], req["mode"]
    settings = settings_lib.test_settings(lg, req["conf"], req["model"], scenario, mode)
    spq = settings.multi_stream_samples_per_query
    harness = Harness(lg, req, settings.performance_sample_count_override,
                      buckets_for(req, [scenario], spq))
    max_batch, wait_s = scenario_batch(req, scenario, spq)
    stats = harness.run(settings, req["outdir"], max_batch, wait_s, req.get("audit"))
    out = {"scenario": scenario, "mode": mode, "precision": req["precision"],
           "matmul_input_types": harness.predictor.matmul_types(), **stats}
    if mode == "performance":
        out.update(results.performance(req["outdir"], scenario))
    else:
        answers, seen = results.answers(req["outdir"], harness.workload.answer_dtype,
                                        harness.samples.count)
        out["answered"] = int(seen.sum())
        out.update(harness.workload.score_answers(
            harness.cfg, answers[seen], harness.samples.labels[seen]))
    return out


def main(argv) -> None:
    import mlperf_loadgen as lg

    with open(argv[1]) as f:
        req = json.load(f)
    if req["kind"] == "test":
        out = run_test(lg, req)
    else:
        from suite.serving import tune

        out = tune.run(lg, req, Harness)
    with open(os.path.join(req["outdir"], RESULT), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv)
