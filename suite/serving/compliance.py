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
TOLERANCE, RELAXED_TOLERANCE = 0.10, 0.20
# Where the official verify_performance.py scripts relax their tolerance to 20 %, in the
# units each compares. TEST01 compares the metric itself (a latency in ns for the latency
# scenarios, two-sided): relaxed for references at most 0.2 ms / 1.6 ms. TEST04 compares
# 1e9 / latency (queries/s, one-sided) against these same numbers, so it relaxes for every
# latency above 5 us / 0.6 us: in practice always. Theirs is the verdict a submission
# gets, so they are followed as they compute, not as their comments read.
RELAXED_AT = {"SingleStream": 200_000, "MultiStream": 1_600_000}


def write_audit(test: str, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"# {test}: the audit settings MLPerf's rules give for resnet50\n")
        f.writelines(f"*.*.{key} = {value}\n" for key, value in AUDIT[test].items())
    return path


def _value(perf: dict) -> float:
    """The compared number in the scripts' units: ns for a latency, else per second."""
    return perf["metric"] * 1e6 if perf["unit"] == "ms" else perf["metric"]


def performance_verdict(test: str, scenario: str, reference: dict,
                        new: dict) -> tuple[list[str], bool]:
    """(verify_performance.txt's lines, passed) of TEST01 or TEST04."""
    ref, got = _value(reference), _value(new)
    latency = reference["unit"] == "ms"
    if test == "TEST04" and latency:
        ref, got = 1e9 / ref, 1e9 / got  # queries/s: higher is faster
    at = RELAXED_AT.get(scenario)
    tol = RELAXED_TOLERANCE if at is not None and ref <= at else TOLERANCE
    lines = [f"reference score = {ref:.6g}", f"test score = {got:.6g}",
             f"tolerance = {tol:.0%}"]
    if not (reference["valid"] and new["valid"]):
        return lines + ["TEST FAIL: a run is INVALID"], False
    if test == "TEST04":  # not faster than the normal run by more than the tolerance
        ok = got < ref * (1 + tol)
    else:
        ok = ref * (1 - tol) <= got <= ref * (1 + tol)
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
    perf_lines, perf_ok = performance_verdict(
        "TEST01", scenario, reference_perf, results.performance(test_dir, scenario))
    _write(out_dir, "verify_performance.txt", perf_lines)
    return accuracy_ok and perf_ok


def verify_test04(scenario: str, reference_perf: dict, test_dir: str, out_dir: str) -> bool:
    lines, ok = performance_verdict("TEST04", scenario, reference_perf,
                                    results.performance(test_dir, scenario))
    _write(out_dir, "verify_performance.txt", lines)
    return ok


def _write(out_dir: str, name: str, lines: list[str]) -> None:
    with open(os.path.join(out_dir, name), "w") as f:
        f.write("\n".join(lines) + "\n")

