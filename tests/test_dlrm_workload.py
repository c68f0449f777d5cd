"""DLRM-DCNv2 workload: sharded tables train like one device, exact AUC, memory, closed rules."""

import math

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from mlperf_logging.mllog import constants as C
from sklearn.metrics import roc_auc_score

from common.errors import UserError
from metrics.auc import roc_auc
from models import dlrm as dlrm_model
from suite import compile as compile_lib
from suite import config as config_lib
from suite import mesh as mesh_lib
from suite.hparams import Logged
from suite.workloads.dlrm import DLRMWorkload
from tools import state_memory


def _small_cfg(sharding: str, model: int, fsdp: int = 1):
    workload = DLRMWorkload()
    cfg = workload.config("tiny")
    # Five of the tiny preset's tables (3 to 1,200 rows, one multi-hot): compiling all 26
    # sharded gathers on 8 fake devices costs CI half a minute more and tests nothing new.
    cfg.vocab_sizes, cfg.hotness = cfg.vocab_sizes[4:9], (2, 1, 3, 1, 1)
    cfg.global_batch_size = 64
    cfg.eval_batch_size = 64
    cfg.embedding_sharding = sharding
    cfg.mesh.model, cfg.mesh.fsdp = model, fsdp
    return workload, config_lib.resolve(workload, cfg, 8 if model * fsdp > 1 else 1, "cpu")


def _batches(cfg, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        ids = [rng.integers(0, v, size=(cfg.global_batch_size, h))
               for v, h in zip(cfg.vocab_sizes, cfg.hotness, strict=True)]
        out.append({
            "dense": rng.standard_normal((cfg.global_batch_size, 13)).astype(np.float32),
            "sparse": np.concatenate(ids, axis=1).astype(np.int32),
            "label": (rng.random(cfg.global_batch_size) < 0.3).astype(np.float32),
        })
    return out


def _train(workload, cfg, devices, batches):
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model, devices=devices)
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1)
    state = fns.init(jax.random.key(0))
    key = jax.random.key(1)
    losses = []
    for batch in batches:
        state, metrics, key = fns.train_step(state, mesh_lib.to_global(batch, fns.batch_sharding),
                                             key)
        losses.append(float(metrics["loss"]))
    return fns, jax.device_get(state.params), losses


@pytest.fixture(scope="module")
def one_device():
    workload, cfg = _small_cfg("replicated", 1)
    batches = _batches(cfg, 3)
    _, params, losses = _train(workload, cfg, jax.devices()[:1], batches)
    return batches, params, losses


@pytest.mark.parametrize("sharding,model,fsdp", [("row", 8, 1), ("column", 4, 2)])
def test_sharded_tables_train_exactly_like_one_device(sharding, model, fsdp, one_device):
    batches, one_params, one_losses = one_device
    workload, cfg = _small_cfg(sharding, model, fsdp)
    fns, params, losses = _train(workload, cfg, jax.devices(), batches)
    spec = fns.state_shardings.params["embedding_0"].spec
    assert spec == P(*(("model", None) if sharding == "row" else (None, "model")))
    # The Adagrad accumulators are split exactly like the tables they belong to.
    accum = jax.tree.leaves(fns.state_shardings.opt_state[0])
    assert any(getattr(s, "spec", None) == spec for s in accum)
    np.testing.assert_allclose(losses, one_losses, rtol=2e-5)
    assert len(set(losses)) == 3  # the steps did change the model
    # The reference's Adagrad steps lr * g / (|g| + eps) at first: an element whose gradient
    # is near zero moves by up to lr on the rounding of another summation order, so
    # the tolerance is a share of lr.
    atol = 5e-4 * cfg.base_lr
    for k, vocab in enumerate(cfg.vocab_sizes):
        table = params[f"embedding_{k}"]
        np.testing.assert_allclose(table[:vocab], one_params[f"embedding_{k}"], atol=atol)
        assert not table[vocab:].any(), "padding rows must never be trained"
    np.testing.assert_allclose(params["top_mlp"]["dense_0"]["kernel"],
                               one_params["top_mlp"]["dense_0"]["kernel"], atol=atol)


def test_auc_is_exact_over_the_whole_split_like_sklearn():
    rng = np.random.default_rng(0)
    for n, decimals in ((50, None), (20_000, None), (20_000, 1)):
        scores = rng.standard_normal(n).astype(np.float32)
        labels = (rng.random(n) < 1 / (1 + np.exp(-scores))).astype(np.float32)
        if decimals is not None:  # many ties: each tie counts half, as sklearn's trapezoid
            scores = np.round(scores, decimals)
        assert abs(roc_auc(scores, labels) - roc_auc_score(labels, scores)) < 1e-6
    # finalize_eval pools every batch (a per-batch average would differ) and drops padding.
    workload = DLRMWorkload()
    logits, labels = rng.standard_normal(300), (rng.random(300) < 0.4).astype(np.float32)
    mask = np.ones(300, np.float32)
    mask[-20:] = 0
    outputs = [{"logit": logits[i:i + 100], "label": labels[i:i + 100], "mask": mask[i:i + 100]}
               for i in range(0, 300, 100)]
    metrics = workload.finalize_eval(None, outputs, None)
    assert metrics["eval_examples"] == 280
    assert abs(metrics["auc"] - roc_auc_score(labels[:280], logits[:280])) < 1e-6
    per_batch = np.mean([roc_auc_score(labels[i:i + 100], logits[i:i + 100])
                         for i in (0, 100)])
    assert abs(per_batch - metrics["auc"]) > 1e-6
    with pytest.raises(UserError, match="both positive and negative"):
        workload.finalize_eval(None, [{"logit": logits, "label": np.ones(300),
                                       "mask": np.ones(300)}], None)


def test_reference_state_size_per_device_without_allocating_it():
    workload = DLRMWorkload()
    cfg = workload.config("reference")
    cfg.compute_dtype = "bfloat16"
    cfg.mesh.model = 8
    sizes = state_memory.bytes_per_device(workload, cfg, 8)
    padded = workload.model_config(cfg)
    table_rows = sum(padded.padded_rows(k) for k in range(padded.num_tables))
    unpadded = workload.model_config(cfg, padded=False)
    dense_params = dlrm_model.param_count(unpadded) - dlrm_model.embedding_rows(unpadded) * 128
    # Float32 params plus one Adagrad accumulator each; the train step's counter and the
    # count optax keeps for the (constant) learning-rate schedule are one int32 each.
    tables, dense = 2 * 4 * table_rows * 128, 2 * 4 * dense_params
    assert sizes["total"] == tables + dense + 8
    assert sizes["per_device"] == tables // 8 + dense + 8
    assert sizes["per_device"] < 26 * 2**30 < sizes["total"] / 7  # fits an 8-way H200 node
    assert dlrm_model.param_count(unpadded) == 26_151_671_809


def test_reference_hparams_satisfy_the_closed_rules_and_borrow_back():
    workload = DLRMWorkload()
    cfg = workload.config("reference")
    h = workload.mllog_hparams(cfg, 64_000)
    # closed_dlrm_dcnv2.yaml (6.0.0): Adagrad, no decay/warmup/weight decay, epsilon 1e-8.
    assert h[C.OPT_NAME] == "adagrad"
    assert h[C.OPT_ADAGRAD_EPSILON] == 1e-8
    for key in (C.OPT_ADAGRAD_LR_DECAY, C.OPT_WEIGHT_DECAY, C.OPT_LR_WARMUP_STEPS,
                C.OPT_ADAGRAD_INITIAL_ACCUMULATOR_VALUE, C.OPT_LR_DECAY_START_STEP,
                C.OPT_LR_DECAY_STEPS):
        assert h[key] == 0, key
    borrowed = workload.config_from_hparams({**h, C.GLOBAL_BATCH_SIZE: 55296,
                                             C.OPT_BASE_LR: 0.004})
    assert borrowed == {"global_batch_size": 55296, "base_lr": 0.004}
    assert set(borrowed) <= workload.closed_tunable



def test_the_log_records_what_auto_sparse_update_and_id_routing_became():
    workload = DLRMWorkload()
    cfg = workload.config("reference")
    cfg.mesh.model, cfg.route_capacity = 8, 2.0
    choices = workload.resolved_choices(cfg, mesh_lib.axis_sizes(8, 1, 8))
    # Sparse: the tables of more rows than a batch of 65,536 has ids for them: the five of
    # 40M rows and 3M rows at 3 ids, not 590,152 rows at 10 ids (655,360 a batch).
    assert choices["jaxperf_sparse_update"] == Logged([0, 9, 10, 19, 20, 21],
                                                      {"setting": "auto"})
    # all_to_all with 2 slots an even share: 3 ids an example over 8 shards of 40M or 3M
    # rows; 7 and more ids move fewer bytes gathered, and small tables cannot spread them.
    routes = choices["jaxperf_id_routing"]
    assert routes.metadata == {"setting": "auto", "route_capacity": 2.0}
    assert [k for k, r in enumerate(routes.value) if r == "all_to_all"] == [0, 10]
    assert set(routes.value) == {"all_to_all", "all_gather"} and len(routes.value) == 26
    cfg.sparse_update, cfg.id_routing = "none", "all_gather"
    choices = workload.resolved_choices(cfg, mesh_lib.axis_sizes(8, 1, 8))
    assert choices["jaxperf_sparse_update"].value == []
    assert set(choices["jaxperf_id_routing"].value) == {"all_gather"}
    # One device: nothing row-split, so no route; the tiny tables update densely.
    choices = workload.resolved_choices(workload.config("tiny"), mesh_lib.axis_sizes(1, 1, 1))
    assert choices["jaxperf_sparse_update"].value == []
    assert choices["jaxperf_id_routing"].value is None


def test_bad_sharding_choices_are_one_line_errors():
    workload = DLRMWorkload()
    cfg = workload.config("tiny")
    cfg.embedding_sharding = "diagonal"
    with pytest.raises(UserError, match="embedding_sharding must be one of row, column"):
        config_lib.resolve(workload, cfg, 8, "cpu")
    cfg = workload.config("tiny")
    cfg.embedding_sharding, cfg.mesh.model = "column", 8
    cfg.embed_dim = 12
    with pytest.raises(UserError, match="does not divide it"):
        config_lib.resolve(workload, cfg, 8, "cpu")
    # The batch splits over the model axis too, so it must divide over all 8 devices.
    cfg = ml_collections.ConfigDict(workload.config("tiny").to_dict())
    cfg.mesh.model, cfg.global_batch_size = 8, 1028
    with pytest.raises(UserError, match="divide evenly over 8"):
        config_lib.resolve(workload, cfg, 8, "cpu")
    assert math.prod(mesh_lib.axis_sizes(8, 1, 8).values()) == 8


def test_reference_step_compiles_with_tables_split_8_ways():
    """The full-size step, compiled ahead of time for 8 devices and never run: XLA's own
    per-device argument size agrees with tools.state_memory's count plus one batch shard."""
    workload = DLRMWorkload()
    cfg = workload.config("reference")
    cfg.mesh.model, cfg.compute_dtype = 8, "bfloat16"
    cfg = config_lib.resolve(workload, cfg, 8, "gpu")
    # Donated as on the GPUs it is sized for (a CPU step does not donate).
    fns = compile_lib.build(workload, cfg, mesh_lib.make_mesh(1, 8), cfg.global_batch_size, 1,
                            donate=True)
    memory = fns.train_step.memory_analysis()
    state = state_memory.bytes_per_device(workload, cfg, 8)["per_device"]
    batch = cfg.global_batch_size // 8 * (13 + sum(cfg.hotness) + 1) * 4
    assert abs(memory.argument_size_in_bytes - state - batch) < 2**20
    # The state is donated: the step's outputs reuse its buffers.
    assert memory.alias_size_in_bytes >= state - 2**20
