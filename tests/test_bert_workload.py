"""BERT workload: the reference's LAMB and schedule, the rules' eval interval, sample-counted
blocks, fsdp on 8 fake devices equal to one device, closed-division rules."""

import math

import jax
import numpy as np
import optax
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P
from mlperf_logging.mllog import constants as C

from common.errors import UserError
from input_pipelines import synthetic
from models import bert as bert_model
from models import bert_checkpoint
from suite import compile as compile_lib
from suite import config as config_lib
from suite import division
from suite import mesh as mesh_lib
from suite.workloads import bert_lamb
from suite.workloads.bert import BertWorkload, rules_eval_interval


def _reference_lamb(params, grads_seq, c: bert_lamb.LambConfig, names):
    """NumPy transcription of the reference's LAMBOptimizer after clip_by_global_norm(1.0)."""
    params = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    for step, grads in enumerate(grads_seq):
        norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
        scale = c.clip_norm / max(norm, c.clip_norm)
        if step - c.start_warmup_step < c.warmup_steps:
            lr = c.base_lr * (step - c.start_warmup_step) / c.warmup_steps
        else:
            lr = c.base_lr * (1 - min(step, c.training_steps) / c.training_steps) ** c.poly_power
        for k in params:
            g = grads[k] * scale
            m[k] = c.beta_1 * m[k] + (1 - c.beta_1) * g
            v[k] = c.beta_2 * v[k] + (1 - c.beta_2) * g * g
            update = (m[k] / (1 - c.beta_1 ** (step + 1))) / (
                np.sqrt(v[k] / (1 - c.beta_2 ** (step + 1))) + c.epsilon)
            ratio = 1.0
            if not any(word in names[k] for word in ("LayerNorm", "layer_norm", "bias")):
                update = update + c.weight_decay * params[k]
                w_norm, u_norm = np.linalg.norm(params[k]), np.linalg.norm(update)
                ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            params[k] = params[k] - ratio * lr * update
    return params


def test_lamb_is_the_reference_optimizer():
    cfg = bert_model.tiny_config()
    params = nn.unbox(bert_model.Bert(cfg).init(
        jax.random.key(0), *(np.zeros((1, 8), np.int32),) * 3, np.zeros((1, 2), np.int32),
        train=False))["params"]
    flat = {tuple(k.key for k in path): np.asarray(x)
            for path, x in jax.tree_util.tree_leaves_with_path(params)}
    names = bert_checkpoint.reference_names(cfg.layers)
    # LayerNorm gammas, biases and output_bias are exempt from decay and trust ratio.
    assert {k for k in flat if any(w in names[k] for w in bert_lamb.NO_DECAY)} >= {
        ("embeddings", "layer_norm", "scale"), ("mlm_head", "output_bias"),
        ("encoder", "layer_0", "wi", "bias")}
    c = bert_lamb.LambConfig(base_lr=0.05, training_steps=10, warmup_steps=2,
                             start_warmup_step=-1, beta_1=0.8, beta_2=0.95, weight_decay=0.1)
    rng = np.random.default_rng(0)
    # Large gradients in the first step: clipping at global norm 1.0 must matter.
    grads_seq = [{k: (rng.standard_normal(x.shape) * s).astype(np.float32)
                  for k, x in flat.items()} for s in (3.0, 0.01, 0.02)]
    opt = bert_lamb.lamb(c, cfg.layers)

    @jax.jit
    def step(grads, state, params):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state, ours = opt.init(params), params
    for grads in grads_seq:
        tree = jax.tree_util.tree_map_with_path(
            lambda path, _, g=grads: g[tuple(k.key for k in path)], params)
        ours, state = step(tree, state, ours)
    expected = _reference_lamb(flat, grads_seq, c, names)
    for path, x in jax.tree_util.tree_leaves_with_path(ours):
        key = tuple(k.key for k in path)
        np.testing.assert_allclose(np.asarray(x), expected[key], rtol=2e-5, atol=2e-7,
                                   err_msg=str(key))


def test_learning_rate_warms_up_then_decays_like_the_reference():
    # bert_ref_8192's schedule: a warmup that starts 76 steps before step 0.
    c = bert_lamb.LambConfig(base_lr=0.00288293, training_steps=600, warmup_steps=287,
                             start_warmup_step=-76)
    lr = bert_lamb.learning_rate(c)
    assert float(lr(0)) == pytest.approx(c.base_lr * 76 / 287, rel=1e-6)
    assert float(lr(210)) == pytest.approx(c.base_lr * 286 / 287, rel=1e-6)
    assert float(lr(211)) == pytest.approx(c.base_lr * (1 - 211 / 600), rel=1e-6)
    assert float(lr(600)) == 0.0 and float(lr(900)) == 0.0
    plain = bert_lamb.learning_rate(bert_lamb.LambConfig(base_lr=0.000425, training_steps=6700))
    assert float(plain(0)) == pytest.approx(0.000425)
    assert float(plain(3350)) == pytest.approx(0.000425 / 2, rel=1e-6)


def test_eval_interval_is_the_rules_formula():
    # The table of MLPerf's BERT reference README.
    table = {256: 150_000, 1024: 150_000, 1536: 150_000, 2048: 150_000, 3072: 175_000,
             4096: 175_000, 8192: 225_000}
    assert {b: rules_eval_interval(b) for b in table} == table
    workload = BertWorkload()
    cfg = workload.config("reference")
    assert workload.eval_every_samples(cfg) == 150_000
    cfg.eval_every_samples = 1000
    assert workload.eval_every_samples(cfg) == 1000


def test_blocks_count_samples():
    workload = BertWorkload()
    cfg = workload.config("reference")  # batch 448, 6,700 steps, eval every 150,000 samples
    plan = workload.schedule(cfg, workload.synthetic_data_info(cfg))
    assert plan.unit == "samples" and not plan.logs_epochs
    blocks = plan.blocks
    # An eval after the first step that reaches each multiple of 150,000 samples.
    assert [b.end_step for b in blocks[:3]] == [335, 670, 1005]
    assert [b.eval_epoch for b in blocks[:2]] == [335 * 448, 670 * 448]
    assert blocks[-1].end_step == 6700 and len(blocks) == 21
    assert all(b.samples == (b.end_step - b.start_step) * 448 for b in blocks)
    assert blocks[0].start_metadata() == {"samples_count": 150_080}
    assert blocks[0].stop_metadata() == {"samples_count": 150_080}


def _small(fsdp: int, model: int = 1):
    workload = BertWorkload()
    cfg = workload.config("tiny")
    cfg.update(dict(vocab_size=97, hidden=32, heads=4, mlp_dim=64, max_position=16,
                    seq_len=16, max_predictions=4, global_batch_size=16, eval_batch_size=16))
    # No dropout: equal losses need equal masks, and XLA's sharded RNG is not promised to
    # draw the same bits as the unsharded one.
    cfg.dropout_rate = cfg.attention_dropout_rate = 0.0
    cfg.mesh.fsdp, cfg.mesh.model = fsdp, model
    return workload, config_lib.resolve(workload, cfg, 8 if fsdp * model > 1 else 1, "cpu")


def _train(workload, cfg, devices, steps=4):
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model, devices=devices)
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1)
    state, key = fns.init(jax.random.key(0)), jax.random.key(1)
    batches = synthetic.batches(workload.batch_spec(cfg, "train", cfg.global_batch_size),
                                seed=3, high=workload.synthetic_high(cfg))
    losses = []
    for _ in range(steps):
        batch = mesh_lib.to_global(next(batches), fns.batch_sharding)
        state, metrics, key = fns.train_step(state, batch, key)
        losses.append(float(metrics["loss"]))
    return fns, state, losses


def test_fsdp_trains_like_one_device():
    fsdp, model = 8, 1
    workload, one_cfg = _small(1)
    _, one_state, one = _train(workload, one_cfg, jax.devices()[:1])
    workload, cfg = _small(fsdp, model)
    fns, state, many = _train(workload, cfg, jax.devices())
    np.testing.assert_allclose(many, one, rtol=2e-5)
    assert one[-1] < one[0]  # it learned something, so the comparison means something
    np.testing.assert_allclose(np.asarray(state.params["encoder"]["layer_0"]["wi"]["kernel"]),
                               np.asarray(one_state.params["encoder"]["layer_0"]["wi"]["kernel"]),
                               rtol=1e-4, atol=1e-6)
    # Params and both LAMB moments really are split over fsdp along the hidden axis.
    wi = fns.state_shardings.params["encoder"]["layer_0"]["wi"]["kernel"]
    assert wi.spec == P("fsdp", "model")  # model has size 1 here
    adam = fns.state_shardings.opt_state[1]  # the chain: clip, then scale_by_adam
    assert adam.mu["encoder"]["layer_0"]["wi"]["kernel"].spec == wi.spec
    assert adam.nu["embeddings"]["word_embeddings"].spec == P(None, "fsdp")
    local = state.params["encoder"]["layer_0"]["wi"]["kernel"].addressable_shards[0].data
    assert local.shape == (cfg.hidden // fsdp, cfg.mlp_dim // model)


def test_schedule_fields_are_checked_before_the_run():
    workload = BertWorkload()
    cfg = workload.config("tiny")
    cfg.eval_every_samples = -5
    # The workload's validate hook, which config resolution calls before any workdir exists.
    with pytest.raises(UserError, match="eval_every_samples must be an integer >= 0, got -5"):
        config_lib.resolve(workload, cfg, 1, "cpu")
    cfg.eval_every_samples, cfg.lr_training_steps = 0, 0
    with pytest.raises(UserError, match="lr_training_steps must be an integer >= 1"):
        config_lib.resolve(workload, cfg, 1, "cpu")


def test_mesh_must_divide_the_model():
    workload, cfg = _small(1)
    cfg.mesh.fsdp = 3
    with pytest.raises(UserError, match="hidden=32 does not split over --config.mesh.fsdp=3"):
        workload.validate(cfg, {"data": 1, "fsdp": 3, "model": 1})


def test_closed_division_tunes_only_the_rules_hyperparameters(tmp_path):
    workload = BertWorkload()
    reference = workload.config("reference")
    cfg = workload.config("reference")
    cfg.global_batch_size, cfg.base_lr, cfg.start_warmup_step = 8192, 0.00288293, -76
    cfg.init_checkpoint = "/data/phase1/model.ckpt-28252"
    division.check_closed(workload, division.changes(reference, cfg))
    workload.check_closed(cfg)
    cfg.init_checkpoint = "random"
    with pytest.raises(UserError, match="continues from the reference's phase-1 checkpoint"):
        workload.check_closed(cfg)
    cfg.lamb_epsilon = 1e-8
    with pytest.raises(UserError, match="fixes lamb_epsilon"):
        division.check_closed(workload, division.changes(reference, cfg))
    cfg = workload.config("reference")
    cfg.eval_every_samples = 50_000
    with pytest.raises(UserError, match="fixes eval_every_samples"):
        division.check_closed(workload, division.changes(reference, cfg))
    # Borrowed from another submission's log: its logged names map back onto the config.
    logged = {C.OPT_NAME: C.LAMB, C.GLOBAL_BATCH_SIZE: 8192, C.OPT_BASE_LR: 0.00288293,
              C.OPT_LR_TRAINING_STEPS: 600, C.NUM_WARMUP_STEPS: 287, C.START_WARMUP_STEP: -76,
              C.OPT_LAMB_BETA_1: 0.88, C.OPT_LAMB_BETA_2: 0.88,
              C.OPT_LAMB_WEIGHT_DECAY: 0.0166629, C.OPT_LAMB_EPSILON: 1e-6}
    borrowed = workload.config_from_hparams(logged)
    assert borrowed == dict(global_batch_size=8192, base_lr=0.00288293, lr_training_steps=600,
                            warmup_steps=287, start_warmup_step=-76, lamb_beta_1=0.88,
                            lamb_beta_2=0.88, lamb_weight_decay=0.0166629)
    assert set(borrowed) <= workload.closed_tunable


def test_logs_every_key_the_closed_ruleset_requires():
    workload = BertWorkload()
    cfg = workload.config("reference")
    logged = set(workload.mllog_hparams(cfg, cfg.lr_training_steps)) | {C.GLOBAL_BATCH_SIZE}
    required = {"global_batch_size", "opt_base_learning_rate", "opt_lamb_epsilon",
                "opt_learning_rate_training_steps", "opt_learning_rate_warmup_steps",
                "num_warmup_steps", "start_warmup_step", "opt_lamb_beta_1", "opt_lamb_beta_2",
                "opt_lamb_weight_decay_rate"}  # closed_bert.yaml's EXACTLY_ONE keys
    assert required <= logged
    # 3x the forward pass's hand count: BERT-large at 512 tokens, 76 predictions.
    assert workload.flops_per_example(cfg) == pytest.approx(3 * 3.40e11, rel=0.01)
