"""Small pieces the runner's decisions rest on: targets, eval cadence, MFU, logged hparams."""

import math

import ml_collections
import pytest
from mlperf_logging.mllog import constants as C

from common.errors import UserError
from suite import config as config_lib
from suite import perf, schedule
from suite.target import Target
from suite.workload import DataInfo
from suite.workloads.dlrm import DLRMWorkload
from suite.workloads.resnet import IMAGENET_TRAIN, ResNetWorkload


def test_target_directions_and_non_finite_values():
    top1 = Target("top1", 0.759, "max")
    assert top1.reached({"top1": 0.759}) and not top1.reached({"top1": 0.7589})
    assert not top1.reached({"top1": float("nan")})
    loss = Target("loss", 2.0, "min")
    assert loss.reached({"loss": 1.9}) and not loss.reached({"loss": 2.1})
    with pytest.raises(ValueError):
        Target("x", 1.0, "sideways")


def test_resnet_evaluates_at_epochs_3_7_11_like_the_reference():
    workload = ResNetWorkload()
    cfg = workload.config("reference")
    blocks = workload.schedule(cfg, DataInfo(IMAGENET_TRAIN, 50_000, "sizes")).blocks
    assert workload.schedule(cfg, DataInfo(IMAGENET_TRAIN, 50_000, "sizes")).steps_per_epoch \
        == 393
    evals = [b.first_epoch + b.epoch_count - 1 for b in blocks]
    assert evals[:4] == [3, 7, 11, 15] == [b.eval_epoch for b in blocks[:4]]
    assert evals[-1] == cfg.max_epochs == 41
    assert sum(b.epoch_count for b in blocks) == 41
    assert [b.end_step for b in blocks[:2]] == [3 * 393, 7 * 393]
    assert all(a.end_step == b.start_step for a, b in zip(blocks, blocks[1:], strict=False))


def test_evals_inside_an_epoch_split_it_into_equal_blocks():
    blocks = schedule.EvalsPerEpoch(3200, max_epochs=1, evals=20).blocks
    assert len(blocks) == 20 and {b.end_step - b.start_step for b in blocks} == {160}
    assert blocks[0].eval_epoch == 0.05 and blocks[-1].eval_epoch == 1.0
    assert {b.first_epoch for b in blocks} == {1}
    # Steps that do not divide: blocks differ by at most one step and cover the epoch.
    blocks = schedule.EvalsPerEpoch(1001, max_epochs=1, evals=20).blocks
    sizes = [b.end_step - b.start_step for b in blocks]
    assert sum(sizes) == 1001 and max(sizes) - min(sizes) <= 1
    # DLRM, whose schedule this is, refuses epoch fields that would fight it.
    dlrm = DLRMWorkload()
    cfg = dlrm.config("tiny")
    cfg.epochs_per_block = 2
    with pytest.raises(UserError, match="evals_per_epoch"):
        config_lib.resolve(dlrm, cfg, 1, "cpu")
    with pytest.raises(UserError, match="evals_per_epoch must be a positive integer"):
        schedule.EvalsPerEpoch(1001, max_epochs=1, evals=0)


def test_resolve_fills_dtype_and_refuses_bad_fields():
    workload = ResNetWorkload()
    cfg = workload.config("reference")
    assert config_lib.resolve(workload, cfg, 8, "gpu").compute_dtype == "bfloat16"
    assert config_lib.resolve(workload, cfg, 8, "cpu").compute_dtype == "float32"
    bad = ml_collections.ConfigDict(cfg.to_dict())
    bad.global_batch_size = 3263
    with pytest.raises(UserError, match="must divide evenly over 8"):
        config_lib.resolve(workload, bad, 8, "gpu")
    bad = ml_collections.ConfigDict(cfg.to_dict())
    bad.eval_offset_epochs = 9
    with pytest.raises(UserError, match="eval_offset_epochs"):
        config_lib.resolve(workload, bad, 8, "gpu")


def test_reference_lars_hparams_satisfy_the_closed_rules():
    workload = ResNetWorkload()
    cfg = workload.config("reference")
    steps = math.ceil(IMAGENET_TRAIN / cfg.global_batch_size)
    h = workload.mllog_hparams(cfg, steps)
    assert steps == 393
    assert h[C.OPT_NAME] == "lars" and h[C.LARS_OPT_BASE_LEARNING_RATE] == 10.5
    assert h[C.LARS_OPT_END_LR] == 0.0001 and h[C.LARS_OPT_LR_DECAY_POLY_POWER] == 2
    assert h[C.LARS_EPSILON] == 0.0
    # closed_resnet_lars.yaml: weight decay must be 1e-4 * 2**k.
    assert math.log2(h[C.LARS_OPT_WEIGHT_DECAY] / 1e-4).is_integer()
    assert h[C.LARS_OPT_LR_DECAY_STEPS] == 41 * 393 - 2 * 393


def test_learning_rate_warms_up_then_decays_to_the_end_value():
    workload = ResNetWorkload()
    cfg = workload.config("reference")
    lr = workload.learning_rate(cfg, DataInfo(393 * cfg.global_batch_size, 1, "test"))
    assert float(lr(0)) == 0.0
    assert float(lr(393)) == pytest.approx(5.25)  # halfway through 2 warmup epochs
    assert float(lr(786)) == pytest.approx(10.5)
    assert float(lr(41 * 393)) == pytest.approx(1e-4)
    mid = 786 + (41 * 393 - 786) // 2
    assert float(lr(mid)) == pytest.approx((10.5 - 1e-4) * 0.25 + 1e-4, rel=1e-3)


def test_mfu_from_hand_counted_flops():
    assert perf.peak_flops("NVIDIA H200") == 989e12
    assert perf.peak_flops("TPU v5 lite") == 197e12
    assert perf.peak_flops("cpu") is None
    flops = ResNetWorkload().flops_per_example(ResNetWorkload().config("reference"))
    assert flops == pytest.approx(3 * 8.178e9, rel=1e-3)
    # 7,284 img/s (the flax example on one H200) is about 18 % of its bf16 peak.
    assert perf.mfu(flops, 7284, 989e12, 1) == pytest.approx(0.1807, abs=1e-3)
    assert perf.mfu(flops, 7284, None, 1) is None


def test_target_text_round_trips():
    for target in (Target("top1", 0.759, "max"), Target("loss", 2.5, "min")):
        assert Target.parse(target.describe()) == target
    assert Target.parse("not a target") is None
