"""tools.bench_loop: the loop's blocks and the bare step, timed in turns on one compile."""

import statistics

import pytest

from common.errors import UserError
from suite import registry
from tools import bench_loop


def _cfg(workload, **overrides):
    cfg = workload.config("tiny")
    with cfg.unlocked():
        cfg.update(overrides)
    return cfg


def test_the_loop_is_timed_against_the_step_it_runs():
    workload = registry.get("resnet")
    # 384 examples at batch 128: 3 steps a block.
    cfg = _cfg(workload, train_examples=384, eval_examples=128, image_size=8)
    r = bench_loop.compare(workload, cfg, blocks=1, rounds=2)
    assert r["steps_per_block"] == 3
    assert len(r["step_samples_per_s"]) == 3 and len(r["loop_samples_per_s"]) == 2
    assert all(rate > 0 for rate in r["step_samples_per_s"] + r["loop_samples_per_s"])
    assert r["ratio"] == pytest.approx(statistics.median(r["loop_samples_per_s"])
                                       / statistics.median(r["step_samples_per_s"]))
    assert all(0 < share < 1 for share in r["loop_host_overhead"])


def test_only_supervised_loops_and_long_enough_schedules():
    with pytest.raises(UserError, match="minigo trains by a selfplay loop"):
        bench_loop.compare(registry.get("minigo"), _cfg(registry.get("minigo")), 1, 1)
    resnet = registry.get("resnet")
    with pytest.raises(UserError, match="fewer than --blocks=20"):
        bench_loop.compare(resnet, _cfg(resnet), blocks=20, rounds=1)
