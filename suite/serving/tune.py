"""Finding the numbers user.conf records, by short runs in one process (suite.serving.child).

SingleStream and MultiStream: LoadGen pre-generates min_duration / expected latency
queries, so an expected latency above the real one ends the run early (min duration not
met): half the measured median is recorded. Offline: one query of expected QPS x
min_duration samples; recorded 1.25 x the measured samples/s, so the query outlasts the
minimum. Server: the highest target QPS whose short runs keep their 99th-percentile latency
within 60 % of the bound, found by doubling until a run does not and then bisecting; 80 %
of it is the candidate. The headroom is for the full run, which is longer and sees more of
the tail: near its limit a busy host's latencies jump from run to run. So the candidate is
confirmed by a run as long as the real one (user.conf's duration and query count): LoadGen
must call it VALID with its p99 within 75 % of the bound, else it steps down by 20 % and
tries again (three tries at most; the last step down is recorded either way).
These runs are measurements, never results: they set their own durations, and their logs
stay in the tune folder.
"""

import os

from suite.serving import results
from suite.serving import settings as settings_lib

SS_MARGIN, OFFLINE_MARGIN, SERVER_MARGIN = 0.5, 1.25, 0.8
LATENCY_HEADROOM, CONFIRM_HEADROOM = 0.6, 0.75
BISECT_STEPS, CONFIRM_TRIES = 4, 3


def _short(lg, base, scenario: str, duration_ms: int, queries: int, **fields):
    s = base  # FromConfig's settings (mlperf.conf's latency bounds), fields set per run
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms, s.min_query_count, s.max_query_count = duration_ms, queries, 0
    for key, value in fields.items():
        setattr(s, key, value)
    return s


def run(lg, req: dict, harness_class) -> dict:
    from suite.serving.child import buckets_for, scenario_batch

    model, outdir, ms = req["model"], req["outdir"], req["tune_ms"]
    base = settings_lib.test_settings(lg, req["conf"], model, "Server", "performance")
    bound_ns, spq = base.server_target_latency_ns, base.multi_stream_samples_per_query
    full_ms, full_queries = base.min_duration_ms, base.min_query_count  # the real run's
    scenarios = req["scenarios"]
    # Server's search starts from a measured Offline rate: Offline's batch is compiled too.
    measured = set(scenarios) | ({"Offline"} if "Server" in scenarios else set())
    harness = harness_class(lg, req, base.performance_sample_count_override,
                            buckets_for(req, sorted(measured), spq))
    found, trials, confirms = {}, [], []

    def measure(name, scenario, queries, duration_ms=ms, **fields):
        where = os.path.join(outdir, name)
        max_batch, wait_s = scenario_batch(req, scenario, spq)
        harness.run(_short(lg, base, scenario, duration_ms, queries, **fields), where,
                    max_batch, wait_s, None)
        return results.detail(where)

    if "SingleStream" in scenarios:
        d = measure("SingleStream", "SingleStream", 200,
                    single_stream_expected_latency_ns=1_000_000)
        median = d["result_50.00_percentile_latency_ns"]
        found["SingleStream.target_latency"] = SS_MARGIN * median / 1e6
    if "MultiStream" in scenarios:
        d = measure("MultiStream", "MultiStream", 100,
                    multi_stream_expected_latency_ns=1_000_000)
        median = d["result_50.00_percentile_per_query_latency_ns"]
        found["MultiStream.target_latency"] = SS_MARGIN * median / 1e6
    offline_qps = None
    if "Offline" in scenarios or "Server" in scenarios:
        d = measure("Offline", "Offline", 1, offline_expected_qps=1000.0)
        offline_qps = d["result_samples_per_second"]
        if "Offline" in scenarios:
            found["Offline.target_qps"] = OFFLINE_MARGIN * offline_qps
    if "Server" in scenarios:
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
        qps = SERVER_MARGIN * lo if lo else trials[-1]["target_qps"] / 2
        for _ in range(CONFIRM_TRIES):
            d = measure(f"Server-confirm-{len(confirms)}", "Server", full_queries,
                        duration_ms=full_ms, server_target_qps=qps,
                        server_target_latency_ns=bound_ns)
            p99 = d.get("result_99.00_percentile_latency_ns", 0)
            ok = d.get("result_validity") == "VALID" and p99 <= CONFIRM_HEADROOM * bound_ns
            confirms.append({"target_qps": qps, "valid": ok, "p99_ms": p99 / 1e6})
            if ok:
                break
            qps *= SERVER_MARGIN
        found["Server.target_qps"] = qps
    return {"found": found, "server_trials": trials, "server_confirms": confirms,
            "offline_measured_qps": offline_qps,
            "server_latency_bound_ms": bound_ns / 1e6}
