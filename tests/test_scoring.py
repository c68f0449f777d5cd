"""MLPerf's olympic score and the spread figures reported beside it."""

import math

import numpy as np
import pytest

from suite import benchmark, scoring

INF = math.inf


def test_olympic_drops_fastest_and_slowest():
    score = scoring.olympic([30.0, 10.0, 20.0, 25.0, 15.0])
    assert score.dropped == (0, 1)
    assert score.kept == (2, 3, 4)
    assert score.seconds == pytest.approx(20.0)
    assert score.minutes == pytest.approx(20.0 / 60)


def test_one_non_converged_run_is_the_dropped_slowest():
    score = scoring.olympic([12.0, INF, 10.0, 11.0, 13.0])
    assert 1 in score.dropped and 2 in score.dropped
    assert score.seconds == pytest.approx(12.0)


def test_two_non_converged_runs_leave_no_finite_score():
    assert math.isinf(scoring.olympic([12.0, INF, 10.0, INF, 13.0]).seconds)
    with pytest.raises(ValueError):
        scoring.olympic([1.0, 2.0])


def test_variance_figures():
    times = [10.0, 12.0, 11.0, 14.0, 13.0]
    v = scoring.variance(times, resamples=4000)
    assert v.cv == pytest.approx(np.std(times, ddof=1) / np.mean(times))
    score = scoring.olympic(times).seconds
    assert v.ci95[0] <= score <= v.ci95[1]
    assert 10.0 <= v.ci95[0] and v.ci95[1] <= 14.0
    # n = (1.96 cv / p)^2: the normal-approximation size of a +-p interval of the mean.
    assert v.runs_for[0.05] == math.ceil((1.96 * v.cv / 0.05) ** 2)
    assert v.runs_for[0.02] > v.runs_for[0.05]
    assert math.isinf(scoring.variance([10.0, 11.0, INF, 12.0, 13.0]).ci95[1])


def test_describe_reports_dropped_and_non_converged_runs():
    def record(seed, seconds):
        return scoring.RunRecord("x", "resnet", "open", seed,
                                 "success" if math.isfinite(seconds) else "aborted", seconds,
                                 9, (), (), 1500, {})

    lines, score = benchmark.describe([record(i, t) for i, t in
                                       enumerate([12.0, INF, 10.0, 11.0, 13.0])])
    text = "\n".join(lines)
    assert "run 1 did not converge: it counts as infinitely slow" in text
    assert "dropped runs 1 and 2" in text and "12.00 s" in text
    assert score.seconds == pytest.approx(12.0)
    lines, score = benchmark.describe([record(0, 5.0)])
    assert score is None and "needs at least 3" in lines[-1]
