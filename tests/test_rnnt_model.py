"""The RNN-T network: size by formula, initialisation, shapes, masking, loss, FLOPs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from models import rnnt, transducer


def _init(cfg, seed=0):
    return rnnt.init_variables(cfg, jax.random.key(seed))


@pytest.fixture(scope="module")
def tiny():
    cfg = rnnt.tiny_config()
    return cfg, rnnt.RNNT(cfg), _init(cfg)


def test_param_count_matches_formula(tiny):
    reference = rnnt.reference_config()
    total = rnnt.param_count(reference)  # eval_shape: nothing allocated
    print(f"reference RNN-T parameters: {total:,}")
    assert total == rnnt.rnnt_params(reference)
    assert 48e6 < total < 50e6  # MLPerf's RNN-T is about 49M
    cfg, _, variables = tiny
    real = variables["params"]
    assert sum(x.size for x in jax.tree.leaves(nn.unbox(real))) == rnnt.rnnt_params(cfg)


def test_lstm_initialisation(tiny):
    cfg, _, variables = tiny
    flat = traverse_util.flatten_dict(nn.unbox(variables)["params"])
    forget = [v for k, v in flat.items() if k[-2:] == ("hf", "bias")]
    assert len(forget) == cfg.enc_pre_layers + cfg.enc_post_layers + cfg.pred_layers
    assert all(np.all(np.asarray(b) == 1.0) for b in forget)
    # Every other LSTM weight and bias lies within 1 / sqrt(H) and is not all zero.
    bound = cfg.lstm_weight_scale / math.sqrt(cfg.enc_hidden)
    enc_kernels = [v for k, v in flat.items() if k[0].startswith("enc") and "cell" in k
                   and k[-1] == "kernel"]
    assert enc_kernels and all(float(jnp.max(jnp.abs(v))) <= bound for v in enc_kernels)
    assert all(float(jnp.std(v)) > bound / 4 for v in enc_kernels)
    names = nn.get_partition_spec(variables)["params"]["enc_pre_0"]["cell"]["ii"]["kernel"]
    assert tuple(names) == ("embed", "mlp")


def test_shapes_and_lengths_through_stacking(tiny):
    cfg, model, variables = tiny
    feats = jax.random.normal(jax.random.key(2), (2, 9, cfg.features))
    labels = jnp.array([[1, 2, 3], [4, 5, 0]])
    enc_p, pred_p, enc_lengths = jax.jit(model.apply)(variables, feats, jnp.array([9, 4]),
                                                      labels)
    assert enc_p.shape == (2, 5, cfg.joint_hidden)  # ceil(9 / 2)
    assert pred_p.shape == (2, 4, cfg.joint_hidden)  # blank + 3 labels
    assert enc_lengths.tolist() == [5, 2]
    logits = model.apply(variables, enc_p[:, :2], pred_p, method=model.joint)
    assert logits.shape == (2, 2, 4, cfg.vocab_size) and logits.dtype == jnp.float32


def test_padding_does_not_change_valid_frames(tiny):
    cfg, model, variables = tiny
    # LSTM kernels 6x the reference's, so that a change of one input frame still shows
    # clearly after five layers (the last check below).
    variables = jax.tree_util.tree_map_with_path(
        lambda path, x: 6 * x if "kernel" in jax.tree_util.keystr(path)
        and "cell" in jax.tree_util.keystr(path) else x, variables)
    feats = jax.random.normal(jax.random.key(3), (2, 9, cfg.features))
    lengths = jnp.array([9, 5])  # second example: 5 valid frames -> 3 after stacking

    @jax.jit
    def encode(x):
        return model.apply(variables, x, lengths, True, method=model.encode)

    base, new_lengths = encode(feats)
    junk = feats.at[1, 5:].set(100.0 * jax.random.normal(jax.random.key(4), (4, cfg.features)))
    again, _ = encode(junk)
    np.testing.assert_allclose(again[1, :3], base[1, :3], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(again[0], base[0])
    assert new_lengths.tolist() == [5, 3]
    # The check can fail: a change inside the valid frames does move the outputs.
    moved, _ = encode(feats.at[1, 4].add(1.0))
    assert float(jnp.max(jnp.abs(moved[1, 2] - base[1, 2]))) > 1e-3


def _loss(model, variables, feats, lengths, labels, label_lengths, deterministic, key):
    enc_p, pred_p, enc_lengths = model.apply(variables, feats, lengths, labels, deterministic,
                                             rngs={"dropout": key})

    def joint_fn(slab, pred):
        return model.apply(variables, slab, pred, method=model.joint)

    return transducer.transducer_loss(enc_p, pred_p, joint_fn, labels, enc_lengths,
                                      label_lengths, model.config.blank, time_chunk=2)


def test_joint_in_transducer_loss(tiny):
    cfg, model, variables = tiny
    feats = jax.random.normal(jax.random.key(5), (2, 9, cfg.features))
    lengths, labels, label_lengths = jnp.array([9, 6]), jnp.array([[1, 2, 3], [4, 5, 0]]), \
        jnp.array([3, 2])
    args = (feats, lengths, labels, label_lengths)

    @jax.jit
    def chunked_and_whole(v):
        loss = _loss(model, v, *args, True, jax.random.key(0))
        enc_p, pred_p, enc_lengths = model.apply(v, feats, lengths, labels)
        full = model.apply(v, enc_p, pred_p, method=model.joint)
        return loss, transducer.transducer_loss_from_logits(full, labels, enc_lengths,
                                                            label_lengths, cfg.blank)

    # The chunked loss equals the loss from the whole joint output.
    loss, expected = chunked_and_whole(variables)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)

    def mean_loss(v):
        return jnp.mean(_loss(model, v, *args, False, jax.random.key(6)))

    value, grads = jax.jit(jax.value_and_grad(mean_loss))(variables)
    assert np.isfinite(float(value)) and float(value) > 0
    leaves = jax.tree.leaves(nn.unbox(grads))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) > 0 for g in leaves) > 0.9 * len(leaves)


def test_flops_formula_against_xla(tiny):
    # CPU: the LSTMs and joint are plain dots, which XLA's cost analysis counts as 2*M*N*K.
    # Unrolled scans, so no loop trip count is left for the cost analysis to get wrong.
    cfg = rnnt.tiny_config(unroll=True)
    model, variables = rnnt.RNNT(cfg), tiny[2]  # unroll changes no parameter
    frames, labels = 7, 3

    def forward(v, feats, lengths, ys):
        enc_p, pred_p, _ = model.apply(v, feats, lengths, ys)
        return model.apply(v, enc_p, pred_p, method=model.joint)

    compiled = jax.jit(forward).lower(
        variables, jnp.zeros((1, frames, cfg.features)), jnp.array([frames]),
        jnp.zeros((1, labels), jnp.int32)).compile()
    cost = compiled.cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    formula = rnnt.forward_flops(cfg, frames, labels)
    print(f"tiny forward FLOPs: formula {formula}, XLA {xla:.0f}")
    # XLA also counts what the formula leaves out: per LSTM unit and step about 17 bias adds,
    # sigmoids, tanhs and cell-update products against 8 * (in + H) = 128..384 dot FLOPs
    # here, and the joint's add + ReLU (2 per hidden unit per cell against 2 * vocab): about
    # 10% in all. 15% is tight enough that leaving out the prediction network (7% of the
    # formula) or the joint's output layer (also 7%) fails.
    assert formula <= xla <= 1.15 * formula
