"""Finding the numbers user.conf records, by short runs in the scenario's own process
(suite.serving.child), before its real runs.

SingleStream and MultiStream: LoadGen pre-generates min_duration / expected latency
queries, so an expected latency above the real one ends the run early (min duration not
met): half the measured median is recorded. Offline: one query of expected QPS x
min_duration samples; recorded 1.25 x the measured samples/s (the tiny preset 2 x), so the
query outlasts the minimum. Server: the highest target QPS whose short runs keep their
99th-percentile latency within 60 % of the bound, found by doubling from a quarter of a
measured Offline rate until a run does not, then bisecting; 80 % of it is the candidate (of
that, the tiny preset takes half: settings.MARGINS says why). The candidate is confirmed by
a run as long as the real one (up to a minute): LoadGen must call it VALID with its p99
within 75 % of the bound, else it steps down by 20 % and tries again (three tries at most;
the last step down is recorded either way).
Why in the same process: on a small host two processes running the same program at the
same load differ by more than the headroom (a confirmed QPS failed in a fresh process).
These runs are measurements, never results: they set their own durations, and their logs
stay in <workdir>/<Scenario>/tune.
"""

import os

from suite.serving import results, settings

SS_MARGIN, SERVER_MARGIN = 0.5, 0.8
LATENCY_HEADROOM, CONFIRM_HEADROOM = 0.6, 0.75
BISECT_STEPS, CONFIRM_TRIES = 4, 3
TUNE_MS, CONFIRM_MAX_MS = 1000, 60_000


def _short(lg, base, scenario: str, duration_ms: int, queries: int, **fields):
    s = base  # mlperf.conf's settings (latency bounds) and the preset's, fields set per run
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms, s.min_query_count, s.max_query_count = duration_ms, queries, 0
    for key, value in fields.items():
        setattr(s, key, value)
    return s


def scenario(lg, harness, base, scenario: str, outdir: str, batch_of,
             margins: settings.Margins) -> dict:
    """{'found': {'<Scenario>.<key>': value}, ...details} for one scenario. base: settings
    from mlperf.conf and the preset's user.conf lines; batch_of(scenario) -> (max batch,
    Server wait in s); margins: how far from the measured rates to stay (settings.margins)."""
    bound_ns = base.server_target_latency_ns
    full_ms, full_queries = base.min_duration_ms, base.min_query_count  # the real run's
    found, trials, confirms = {}, [], []

    def measure(name, run_scenario, queries, duration_ms=TUNE_MS, **fields):
        where = os.path.join(outdir, name)
        max_batch, wait_s = batch_of(run_scenario)
        harness.run(_short(lg, base, run_scenario, duration_ms, queries, **fields), where,
                    max_batch, wait_s, None)
        return results.detail(where)

    if scenario == "SingleStream":
        d = measure("SingleStream", "SingleStream", 200,
                    single_stream_expected_latency_ns=1_000_000)
        found["SingleStream.target_latency"] = \
            SS_MARGIN * d["result_50.00_percentile_latency_ns"] / 1e6
        return {"found": found}
    if scenario == "MultiStream":
        d = measure("MultiStream", "MultiStream", 100,
                    multi_stream_expected_latency_ns=1_000_000)
        found["MultiStream.target_latency"] = \
            SS_MARGIN * d["result_50.00_percentile_per_query_latency_ns"] / 1e6
        return {"found": found}
    d = measure("Offline", "Offline", 1, offline_expected_qps=1000.0)
    offline_qps = d["result_samples_per_second"]
    if scenario == "Offline":
        found["Offline.target_qps"] = margins.offline_margin * offline_qps
        return {"found": found, "offline_measured_qps": offline_qps}

    def meets(qps: float) -> bool:
        d = measure(f"Server-{len(trials)}", "Server", 100, server_target_qps=qps,
                    server_target_latency_ns=bound_ns)
        p99 = d.get("result_99.00_percentile_latency_ns", 0)
        ok = bool(d.get("result_perf_constraints_met")) and p99 <= LATENCY_HEADROOM * bound_ns
        trials.append({"target_qps": qps, "meets_latency_bound": ok, "p99_ms": p99 / 1e6})
        return ok

    lo, hi = 0.0, None
    qps = max(offline_qps * 0.25, 1.0)
    for _ in range(8):  # raise until a run misses the bound
        if meets(qps):
            lo, qps = qps, qps * 2
        else:
            hi = qps
            break
    if hi is not None:
        for _ in range(BISECT_STEPS):
            mid = (lo + hi) / 2 if lo else hi / 2
            if meets(mid):
                lo = mid
            else:
                hi = mid
    qps = margins.server_share * (SERVER_MARGIN * lo if lo else trials[-1]["target_qps"] / 2)
    confirm_ms = min(full_ms, CONFIRM_MAX_MS)
    confirm_queries = full_queries if confirm_ms == full_ms else 100
    for _ in range(CONFIRM_TRIES):
        d = measure(f"Server-confirm-{len(confirms)}", "Server", confirm_queries,
                    duration_ms=confirm_ms, server_target_qps=qps,
                    server_target_latency_ns=bound_ns)
        p99 = d.get("result_99.00_percentile_latency_ns", 0)
        ok = d.get("result_validity") == "VALID" and p99 <= CONFIRM_HEADROOM * bound_ns
        confirms.append({"target_qps": qps, "valid": ok, "p99_ms": p99 / 1e6})
        if ok:
            break
        qps *= SERVER_MARGIN
    found["Server.target_qps"] = qps
    return {"found": found, "server_trials": trials, "server_confirms": confirms,
            "offline_measured_qps": offline_qps, "server_latency_bound_ms": bound_ns / 1e6}
