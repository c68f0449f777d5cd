"""suite.lars: MLPerf's LARS in one map per parameter, against optax.lars."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from suite import lars


def _kernels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def test_every_update_is_optax_lars_to_the_bit():
    keys = jax.random.split(jax.random.key(0), 8)
    params = {"conv": {"kernel": jax.random.normal(keys[0], (3, 3, 4, 8)),
                       "bias": jax.random.normal(keys[1], (8,))},
              "bn": {"scale": jnp.ones((8,)), "bias": jnp.zeros((8,))},
              "dead": {"kernel": jnp.zeros((4, 2))}}  # a zero norm: the ratio is 1
    schedule = optax.linear_schedule(0.0, 2.0, 3)
    settings = dict(weight_decay=5e-5, momentum=0.9)
    ours = lars.lars(schedule, trust_coefficient=0.001, eps=0.0, mask=_kernels, **settings)
    theirs = optax.lars(schedule, weight_decay_mask=_kernels, trust_coefficient=0.001, eps=0.0,
                        trust_ratio_mask=_kernels, **settings)
    step = jax.jit(lambda tx, g, s, p: tx.update(g, s, p), static_argnums=0)
    a, b = ours.init(params), theirs.init(params)
    p_a = p_b = params
    for i in range(4):
        grads = jax.tree.map(lambda x, k=keys[2 + i]: jax.random.normal(k, x.shape), params)
        u_a, a = step(ours, grads, a, p_a)
        u_b, b = step(theirs, grads, b, p_b)
        for x, y in zip(jax.tree.leaves(u_a), jax.tree.leaves(u_b), strict=True):
            np.testing.assert_array_equal(x, y)
        p_a, p_b = optax.apply_updates(p_a, u_a), optax.apply_updates(p_b, u_b)
    assert int(a.count) == 4
    # The updates moved the weights: warm-up from 0, then the scheduled rate.
    assert not np.array_equal(p_a["conv"]["kernel"], params["conv"]["kernel"])
