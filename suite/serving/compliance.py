"""MLPerf inference compliance tests TEST01 and TEST04, run through LoadGen's audit.config
and verified here.

TEST01: a performance run that also logs a sample of its responses; those must equal the
accuracy run's for the same samples (the SUT answers for real in performance mode), and
the performance must stay within 10 % of the normal run's (logging costs a little).
TEST04: the same sample issued again and again; the run must not be more than 10 % faster
than the normal one (a SUT that caches or coalesces identical samples would be).
The audit settings are those the MLPerf rules give for resnet50.
"""

import os

from suite.serving import results

AUDIT = {
    "TEST01": {"mode": 2, "accuracy_log_rng_seed": 720381539243781796,
               "accuracy_log_sampling_target": 4096},
    "TEST04": {"mode": 2, "performance_issue_unique": 0, "performance_issue_same": 1,
               "performance_issue_same_index": 3},
}
TESTS = tuple(AUDIT)
TOLERANCE = 0.10
# Very fast latency runs are noisier: the rules allow twice the tolerance below these.
FAST_LATENCY_MS = {"SingleStream": 0.2, "MultiStream": 1.6}


def write_audit(test: str, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"# {test}: the audit settings MLPerf's rules give for resnet50\n")
        f.writelines(f"*.*.{key} = {value}\n" for key, value in AUDIT[test].items())
    return path


def _score(perf: dict, scenario: str) -> float:
    """Higher is better: samples/s, or queries/s for latency-bound scenarios."""
    metric = perf["metric"]
    return 1e3 / metric if perf["unit"] == "ms" else metric


def _tolerance(reference: dict, scenario: str) -> float:
    fast = FAST_LATENCY_MS.get(scenario)
    return 2 * TOLERANCE if fast is not None and reference["metric"] <= fast else TOLERANCE


def _performance_lines(scenario, reference, test, *, at_most_faster: bool) -> tuple[list, bool]:
    ref, new = _score(reference, scenario), _score(test, scenario)
    tol = _tolerance(reference, scenario)
    lines = [f"reference score = {ref:.6g}", f"test score = {new:.6g}",
             f"tolerance = {tol:.0%}"]
    if not (reference["valid"] and test["valid"]):
        return lines + ["TEST FAIL: a run is INVALID"], False
    ok = new < ref * (1 + tol) if at_most_faster else abs(new - ref) <= ref * tol
    return lines + ["TEST PASS" if ok else "TEST FAIL: test score out of bounds"], ok


def verify_test01(scenario: str, accuracy_dir: str, reference_perf: dict, test_dir: str,
                  dtype, count: int, out_dir: str) -> bool:
    expected, answered = results.answers(accuracy_dir, dtype, count)
    sampled, logged = results.answers(test_dir, dtype, count)
    both = logged & answered
    matched = int((sampled[both] == expected[both]).sum())
    mismatched = int(both.sum()) - matched
    accuracy_ok = mismatched == 0 and matched > 0 and both.sum() == logged.sum()
    lines = [f"sampled responses = {int(logged.sum())}", f"matching the accuracy run = {matched}",
             f"mismatching = {mismatched}", "TEST PASS" if accuracy_ok else "TEST FAIL"]
    _write(out_dir, "verify_accuracy.txt", lines)
    perf_lines, perf_ok = _performance_lines(
        scenario, reference_perf, results.performance(test_dir, scenario), at_most_faster=False)
    _write(out_dir, "verify_performance.txt", perf_lines)
    return accuracy_ok and perf_ok


def verify_test04(scenario: str, reference_perf: dict, test_dir: str, out_dir: str) -> bool:
    lines, ok = _performance_lines(scenario, reference_perf,
                                   results.performance(test_dir, scenario), at_most_faster=True)
    _write(out_dir, "verify_performance.txt", lines)
    return ok


def _write(out_dir: str, name: str, lines: list[str]) -> None:
    with open(os.path.join(out_dir, name), "w") as f:
        f.write("\n".join(lines) + "\n")

