"""MiniGo's dual network: size and FLOPs by formula, heads, batch norm's two modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import minigo

SMALL = minigo.MiniGoConfig(board_size=9, input_planes=17, conv_width=16, trunk_layers=2,
                            fc_width=32)


@pytest.mark.parametrize("cfg", [SMALL, minigo.MiniGoConfig()], ids=["9x9-small", "19x19"])
def test_param_count_matches_formula(cfg):
    assert minigo.param_count(cfg) == minigo.minigo_params(cfg)


def test_heads_and_batch_norm_modes():
    variables = minigo.init_variables(SMALL, jax.random.key(0))
    boards = jax.random.bernoulli(jax.random.key(1), 0.3, (4, 9, 9, 17)).astype(jnp.float32)
    net = minigo.MiniGoNet(SMALL)
    logits, value = net.apply(variables, boards, train=False)
    assert logits.shape == (4, 82) and value.shape == (4,)
    assert np.all(np.abs(np.asarray(value)) < 1)
    # Training normalises with the batch's own statistics and updates the running ones.
    (train_logits, _), updates = net.apply(variables, boards, train=True,
                                           mutable=["batch_stats"])
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert len(before) == len(after) == 2 * (1 + 2 * SMALL.trunk_layers + 2)
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    assert not np.allclose(np.asarray(train_logits), np.asarray(logits))
    # The heads' batch norms have no scale or offset: only the stem and trunk have them.
    scales = [p for p in jax.tree_util.tree_leaves_with_path(variables["params"])
              if "scale" in jax.tree_util.keystr(p[0])]
    assert len(scales) == 1 + 2 * SMALL.trunk_layers


def test_forward_flops_match_xla():
    variables = minigo.init_variables(SMALL, jax.random.key(0))
    boards = jnp.zeros((1, 9, 9, 17), jnp.float32)
    compiled = jax.jit(lambda v, b: minigo.MiniGoNet(SMALL).apply(v, b, train=False)).lower(
        variables, boards).compile()
    cost = compiled.cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    # XLA counts the 3x3 taps on the board only, and batch norm and activations besides.
    on_board = minigo.forward_flops(SMALL, count_padding=False)
    assert on_board <= xla <= 1.05 * on_board, (on_board, xla)
    # The MFU count includes the taps off the board: 9 * 81 of them per output, not 25 ** 2.
    full = minigo.forward_flops(SMALL)
    assert full > on_board and (full - on_board) == 2 * (9 * 81 - 25 ** 2) * (
        17 * 16 + 2 * 2 * 16 * 16)
