"""One LoadGen process: `python -m suite.serving.child REQUEST.json`.

The parent (suite.serving.harness) writes the request and reads <outdir>/result.json: one
scenario's tuning (the expected latency or QPS user.conf records) and its runs (its modes
and compliance tests), each run's result also in its own folder.
"""

import dataclasses
import functools
import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable

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
    """Counts XLA compilations while a test runs: the SUT must compile nothing then. One
    jax monitoring listener per process (listeners cannot be removed), told which counter
    is open."""

    _current = None
    _listening = False

    def __init__(self):
        from jax import monitoring

        self.count = 0
        if not _CompileCounter._listening:
            monitoring.register_event_duration_secs_listener(_CompileCounter._heard)
            _CompileCounter._listening = True
        _CompileCounter._current = self

    @staticmethod
    def _heard(event, duration, **kwargs):
        counter = _CompileCounter._current
        if counter is not None and "backend_compile" in event:
            counter.count += 1

    def close(self):
        _CompileCounter._current = None


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


def run_scenario(lg, req: dict) -> dict:
    """One scenario, all in this process: the tuning runs that find its user.conf numbers
    (with 'tune'), then its runs in order (request 'runs': mode, outdir, audit path).
    The tuning reads mlperf.conf and the preset's user.conf lines without counting as the
    process's user.conf (FromConfig conf_type 0, then 2, as audit.config is read); then
    user.conf is written with what it found and read once, for the real runs. Each run
    sets its mode, and LoadGen applies a compliance test's audit.config itself as that run
    starts. Why one process: on a small host two processes running the same program at
    the same load differ by more than the 10 % a compliance test allows, and more than a
    Server QPS's headroom."""
    from suite.serving import tune

    scenario, model, conf = req["scenario"], req["model"], req["conf"]
    found = dict(req.get("found", {}))
    if req["tune"]:  # user.conf's preset lines for the tuning runs; its numbers come later
        settings_lib.write_user_conf(conf, model, req["preset"], found)
    base = lg.TestSettings()
    base.FromConfig("", model, scenario, 0)
    base.FromConfig(conf, model, scenario, 2)
    spq = base.multi_stream_samples_per_query
    # Server's search starts from a measured Offline rate: Offline's batch is compiled too.
    measured = [scenario, "Offline"] if req["tune"] and scenario == "Server" else [scenario]
    harness = Harness(lg, req, base.performance_sample_count_override,
                      buckets_for(req, measured, spq))
    tuned = {"found": {}}
    if req["tune"]:
        tuned = tune.scenario(lg, harness, base, scenario, os.path.join(req["outdir"], "tune"),
                              lambda name: scenario_batch(req, name, spq),
                              settings_lib.margins(req["preset"]))
        found.update(tuned["found"])
        settings_lib.write_user_conf(conf, model, req["preset"], found)
    settings = settings_lib.test_settings(lg, conf, model, scenario, "performance")
    max_batch, wait_s = scenario_batch(req, scenario, spq)
    outs, matmul_types = [], harness.predictor.matmul_types()
    for run in req["runs"]:
        mode = run["mode"]
        settings.mode = settings_lib.test_mode(lg, mode)
        stats = harness.run(settings, run["outdir"], max_batch, wait_s, run.get("audit"))
        out = {"scenario": scenario, "mode": mode, "precision": req["precision"],
               "matmul_input_types": matmul_types, **stats}
        rerun = RERUNS.get(scenario)
        if rerun and mode == "performance" and not run.get("audit"):
            stats, out["retries"] = _rerun_while_fixable(
                harness, settings, run["outdir"], max_batch, wait_s,
                functools.partial(rerun.fix, margins=settings_lib.margins(req["preset"])))
            out.update(stats)
            if out["retries"]:  # user.conf records the rate the results were run at
                tuned["found"][rerun.key] = found[rerun.key] = getattr(settings, rerun.field)
                settings_lib.write_user_conf(conf, model, req["preset"], found)
        if mode == "performance":
            out.update(results.performance(run["outdir"], scenario))
        else:
            answers, seen = results.answers(run["outdir"], harness.workload.answer_dtype,
                                            harness.samples.count)
            out["answered"] = int(seen.sum())
            out.update(harness.workload.score_answers(
                harness.cfg, answers[seen], harness.samples.labels[seen]))
        with open(os.path.join(run["outdir"], RESULT), "w") as f:
            json.dump(out, f, indent=1)
        outs.append(out)
    return {"tune": tuned, "runs": outs}


def _rerun_while_fixable(harness, settings, outdir: str, max_batch: int, wait_s: float,
                         fix) -> tuple[dict, list]:
    """A performance run, repeated (settings.SERVER_RETRIES times at most) while LoadGen
    calls it INVALID for a reason a submitter would fix in user.conf and run again:
    fix(detail, settings) changes the settings and returns what the run that missed was,
    or None where a rerun would change nothing. Each run that missed moves to tune/, and
    the returned list says what each was."""
    tried, stats = [], {}
    while len(tried) < settings_lib.SERVER_RETRIES:
        d = results.detail(outdir)
        if d.get("result_validity") == "VALID":
            break
        record = fix(d, settings)
        if record is None:
            break
        name = f"performance-{record.pop('tag')}-{len(tried)}"
        where = os.path.join(os.path.dirname(outdir), "tune", name)
        shutil.rmtree(where, ignore_errors=True)
        shutil.move(outdir, where)
        tried.append({**record, "outdir": where})
        stats = harness.run(settings, outdir, max_batch, wait_s, None)
    return stats, tried


def _reason(text: str | None) -> str:
    return " ".join((text or "").split())


def _fix_server(d: dict, settings, margins) -> dict | None:
    """The latency bound missed: a lower target QPS (margins.server_retry_step of it).
    Early stopping not met (a few late queries among too few): twice the queries. The
    tuning's runs were shorter, or as long but earlier: a shared host's speed changes over
    tens of seconds (settings says by how much)."""
    latency_missed = not d.get("result_perf_constraints_met", True)
    if not latency_missed and d.get("early_stopping_met", True):
        return None
    record = {"tag": "missed", "kind": "latency" if latency_missed else "early stopping",
              "target_qps": settings.server_target_qps,
              "queries": d.get("result_query_count", 0),
              "p99_ms": d.get("result_99.00_percentile_latency_ns", 0) / 1e6,
              "reason": _reason(d.get("result_invalid_reason") if latency_missed
                                else d.get("early_stopping_result"))}
    if latency_missed:
        settings.server_target_qps *= margins.server_retry_step
    else:
        settings.min_query_count = 2 * max(settings.min_query_count,
                                           d.get("result_query_count", 0))
    return record


def _fix_offline(d: dict, settings, margins) -> dict | None:
    """The one query ended before the minimum duration: the SUT ran faster than the
    expected QPS the tuning measured on a short query (6,317 samples/s measured against
    14,520 in the real run, on a quiet host). The rerun expects margins.offline_margin
    over the rate the short run achieved."""
    if d.get("result_min_duration_met", True):
        return None  # invalid for a reason a higher expected QPS would not change
    achieved = d.get("result_samples_per_second", 0.0)
    record = {"tag": "short", "kind": "min duration",
              "expected_qps": settings.offline_expected_qps, "achieved_qps": achieved,
              "reason": _reason(d.get("result_invalid_reason"))}
    settings.offline_expected_qps = max(settings.offline_expected_qps,
                                        margins.offline_margin * achieved)
    return record


@dataclasses.dataclass(frozen=True)
class Rerun:
    fix: Callable  # (detail, settings, margins) -> what the missed run was, or None
    field: str  # the LoadGen setting the fix raises or lowers
    key: str  # its user.conf entry


RERUNS = {"Server": Rerun(_fix_server, "server_target_qps", "Server.target_qps"),
          "Offline": Rerun(_fix_offline, "offline_expected_qps", "Offline.target_qps")}


def main(argv) -> None:
    import mlperf_loadgen as lg

    with open(argv[1]) as f:
        req = json.load(f)
    out = run_scenario(lg, req)
    with open(os.path.join(req["outdir"], RESULT), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv)
