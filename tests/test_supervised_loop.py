"""The supervised loop's use of a workload's pipelines, in-process on the toy workload
(tests/toy_workload): what it asks for at each eval."""

import jax
import numpy as np
import pytest

from suite import config as config_lib
from suite import mesh as mesh_lib
from suite import runner
from suite.config import RunOptions
from suite.loops.base import Abort
from suite.loops.supervised import SupervisedLoop
from suite.mlperf_log import MLPerfLog
from suite.workload import EvalSet
from tests.toy_workload import data
from tests.toy_workload.workload import LinearDigits


class CountedDigits(LinearDigits):
    """The toy, counting the eval sets asked for; `replayable` says what its sets declare."""

    def __init__(self, replayable: bool):
        self.replayable, self.eval_sets = replayable, 0

    def eval_batches(self, cfg, data_info, *, local_batch_size, process_index, process_count):
        self.eval_sets += 1
        batches = data.eval_batches(local_batch_size, process_index, process_count)
        if self.replayable:
            batches = tuple(batches)  # every iter() the same pass
        return EvalSet(batches, replayable=self.replayable)


def test_a_replayable_eval_set_is_asked_for_once_per_run(tmp_path):
    log = MLPerfLog(str(tmp_path), enabled=False)
    for replayable, sets in ((False, 3), (True, 1)):
        workload = CountedDigits(replayable)
        cfg = config_lib.resolve(workload, workload.config("tiny"), 1, jax.default_backend())
        opts = RunOptions(workload="linear_digits", preset="tiny", workdir=str(tmp_path))
        mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
        loop = SupervisedLoop(workload, cfg, opts, runner.data_info(workload, cfg, opts), mesh)
        state = loop.init_state(0)
        metrics = [loop.evaluate(state, log, epoch) for epoch in (1, 2, 3)]
        assert workload.eval_sets == sets
        assert metrics[0] == metrics[1] == metrics[2]
        assert metrics[0]["eval_examples"] == data.sizes()[1]  # each eval read the whole set
    # The next run of a benchmark (a new loop, the same workload) asks again: the set is
    # kept by the run, not by the workload or the process.
    for _ in range(2):
        SupervisedLoop(workload, cfg, opts, runner.data_info(workload, cfg, opts),
                       mesh).evaluate(state, log, 1)
    assert workload.eval_sets == 3


class ResumedDigits(LinearDigits):
    """The toy, recording where the loop asks its training batches to start."""

    def __init__(self):
        self.asked = []

    def train_batches_from(self, cfg, data_info, first, **where):
        self.asked.append((first, where["seed"]))
        return super().train_batches_from(cfg, data_info, first, **where)


def test_a_run_resumed_inside_an_epoch_asks_for_its_batches_from_there(tmp_path):
    workload = ResumedDigits()
    cfg = config_lib.resolve(workload, workload.config("tiny"), 1, jax.default_backend())
    opts = RunOptions(workload="linear_digits", preset="tiny", workdir=str(tmp_path))
    mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
    loop = SupervisedLoop(workload, cfg, opts, runner.data_info(workload, cfg, opts), mesh)
    spe = loop.schedule.steps_per_epoch
    resumed = loop.prepare({"step": spe + 3})  # 3 steps into the second epoch
    (first, seed), = workload.asked
    assert first == 3
    # By default the skipped batches are made and dropped: the 4th batch of that epoch's
    # pipeline comes first.
    fresh = data.train_batches(cfg.global_batch_size, 0, 1, seed)
    want = [next(fresh) for _ in range(4)][3]
    got = next(resumed)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    loop.prepare({"step": spe})  # at the same epoch's start nothing is skipped
    assert workload.asked[-1] == (0, seed)


class DivergedDigits(LinearDigits):
    """The toy, whose eval scores NaN (weights gone non-finite, say)."""

    def finalize_eval(self, cfg, outputs, context):
        return {**super().finalize_eval(cfg, outputs, context), self.target.metric: np.nan}


def test_a_non_finite_eval_metric_aborts_the_run(tmp_path):
    workload = DivergedDigits()
    cfg = config_lib.resolve(workload, workload.config("tiny"), 1, jax.default_backend())
    opts = RunOptions(workload="linear_digits", preset="tiny", workdir=str(tmp_path))
    loop = SupervisedLoop(workload, cfg, opts, runner.data_info(workload, cfg, opts),
                          mesh_lib.make_mesh(devices=jax.devices()[:1]))
    with pytest.raises(Abort, match=rf"^non-finite eval {workload.target.metric} \(epoch 2"
                                    r".*\); lower the learning rate or check the data$"):
        loop.evaluate(loop.init_state(0), MLPerfLog(str(tmp_path), enabled=False), 2)
