"""suite.perf's roofline: which peak bounds a step, and the step time and MFU it allows."""

import pytest

from suite import perf


def test_peak_bandwidth_by_device_kind():
    assert perf.peak_bandwidth("NVIDIA H200") == 4.8e12
    assert perf.peak_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12  # SXM
    assert perf.peak_bandwidth("NVIDIA H100 PCIe") == 2.0e12
    assert perf.peak_bandwidth("NVIDIA A100-SXM4-80GB") == 2.039e12
    assert perf.peak_bandwidth("NVIDIA A100-SXM4-40GB") == 1.555e12
    assert perf.peak_bandwidth("TPU v5 lite") == 0.819e12
    assert perf.peak_bandwidth("TPU v5p") == 2.765e12
    assert perf.peak_bandwidth("cpu") is None


def test_bandwidth_bound_step():
    # On an H200 (989 TFLOP/s, 4.8 TB/s; ridge 206 FLOP/byte): 9.89 TFLOP take 10 ms at
    # peak, 96 GB take 20 ms. Intensity 103 FLOP/byte, half the ridge: bandwidth-bound,
    # 20 ms at best, so MFU can reach 50 % and no more.
    r = perf.roofline("NVIDIA H200", 9.89e12, 96e9)
    assert r.intensity == pytest.approx(103.02, abs=0.01)
    assert r.ridge == pytest.approx(206.04, abs=0.01)
    assert r.bound == "bandwidth"
    assert r.min_step_s == pytest.approx(0.020)
    assert r.max_mfu == pytest.approx(0.5)


def test_flop_bound_step():
    # TPU v4 (275 TFLOP/s, 1.228 TB/s): 2.75 TFLOP take 10 ms, 1.228 GB take 1 ms.
    r = perf.roofline("TPU v4", 2.75e12, 1.228e9)
    assert r.bound == "FLOP"
    assert r.min_step_s == pytest.approx(0.010)
    assert r.max_mfu == pytest.approx(1.0)


def test_no_roofline_without_a_peak_or_bytes():
    assert perf.roofline("cpu", 1e9, 1e6) is None
    assert perf.roofline("NVIDIA H200", 1e9, None) is None
    assert perf.roofline("NVIDIA H200", 1e9, 0.0) is None
