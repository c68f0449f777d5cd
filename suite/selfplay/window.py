"""The replay window: the examples of the last N generations' self-play, on the devices.

A fixed-shape ring of N slots [N, games, max_moves, ...]; generation g's games go into slot
g % N, replacing generation g - N's. Minibatches are drawn uniformly, with replacement,
from the valid positions of the slots filled so far.
"""

import jax
import jax.numpy as jnp

from suite.selfplay.play import Examples


def empty(slots: int, like: Examples) -> Examples:
    """N empty slots shaped like one generation's examples (nothing valid)."""
    return jax.tree.map(lambda x: jnp.zeros((slots, *x.shape), x.dtype), like)


def insert(window: Examples, examples: Examples, generation: jax.Array) -> Examples:
    slot = generation % window.valid.shape[0]
    return jax.tree.map(lambda w, x: jax.lax.dynamic_update_index_in_dim(w, x, slot, 0),
                        window, examples)


def sample(window: Examples, key: jax.Array, batch: int) -> Examples:
    """batch positions drawn uniformly from the window's valid ones, flat [batch, ...]."""
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[3:]), window)
    weights = flat.valid.astype(jnp.float32)
    rows = jax.random.choice(key, weights.shape[0], (batch,), p=weights / jnp.sum(weights))
    return jax.tree.map(lambda x: x[rows], flat)


def empty_like(abstract: Examples) -> Examples:
    """Zeros shaped like an abstract window (what a fresh run starts from)."""
    return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)
