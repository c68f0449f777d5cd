"""The 8 symmetries of a square board (rotations and reflections), for evaluating a network
on a randomly turned board and turning its policy back. The reference's players do this
(`random_symmetry`), and it is what makes noise-free eval games differ from one another.

Boards are [N, N, ...] (row, column first); a policy is [N * N + extra] with the points
row-major and any extra moves (pass) after them, untouched by symmetry.
"""

import jax
import jax.numpy as jnp

COUNT = 8


def _apply(x: jax.Array, k: int) -> jax.Array:
    """Symmetry k (static, 0..7): rotate k % 4 quarter turns, then mirror if k >= 4."""
    x = jnp.rot90(x, k % 4, axes=(0, 1))
    return jnp.flip(x, axis=1) if k >= 4 else x


def _invert(x: jax.Array, k: int) -> jax.Array:
    x = jnp.flip(x, axis=1) if k >= 4 else x
    return jnp.rot90(x, -(k % 4), axes=(0, 1))


def turn(board: jax.Array, k: jax.Array) -> jax.Array:
    """One board [N, N, ...] under symmetry k (traced)."""
    return jax.lax.switch(k, [lambda b, i=i: _apply(b, i) for i in range(COUNT)], board)


def turn_back(policy: jax.Array, k: jax.Array, n: int) -> jax.Array:
    """A policy [N * N + extra] of the board turned by k, on the original board's points."""
    points, extra = policy[:n * n].reshape(n, n), policy[n * n:]
    back = jax.lax.switch(k, [lambda p, i=i: _invert(p, i) for i in range(COUNT)], points)
    return jnp.concatenate([back.reshape(-1), extra])
