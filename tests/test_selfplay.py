"""Self-play (suite.selfplay, suite.loops.selfplay) on the MiniGo workload's tiny preset:
examples, the replay window, and sharded games equal to one device's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import config as config_lib
from suite import mesh as mesh_lib
from suite.config import RunOptions
from suite.loops.selfplay import SelfPlayLoop
from suite.selfplay import play, window
from suite.workloads.minigo import MiniGoWorkload

GAMES = 16


class Uncompiled(SelfPlayLoop):
    """The loop's own pieces, jitted here one at a time instead of all ahead of time."""

    def _compile(self):
        return {}


@pytest.fixture(scope="module")
def small():
    workload = MiniGoWorkload()
    cfg = workload.config("tiny")
    cfg.games_per_generation = cfg.min_games_per_generation = GAMES
    cfg.eval_games, cfg.simulations = GAMES, 8
    cfg.train_steps_per_generation, cfg.global_batch_size = 2, 16
    cfg = config_lib.resolve(workload, cfg, jax.device_count(), "cpu")
    return workload, cfg


def _loop(small, devices):
    workload, cfg = small
    opts = RunOptions(workload="minigo", preset="tiny", workdir="unused", seed=3)
    mesh = mesh_lib.make_mesh(devices=jax.devices()[:devices])
    return Uncompiled(workload, cfg, opts, workload.data_info(cfg, None), mesh)


def _played(loop):
    state = jax.jit(loop._init, out_shardings=loop.state_shardings)(jax.random.key(3))
    state, stats = jax.jit(loop._play)(state)
    return jax.device_get(state.window), jax.device_get(stats)


@pytest.fixture(scope="module")
def played(small):
    """One generation of self-play on 8 devices and on one."""
    assert jax.device_count() == 8
    return _played(_loop(small, 8)), _played(_loop(small, 1))


def test_sharded_selfplay_equals_one_device(played):
    (eight, stats8), (one, stats1) = played
    for name, a, b in zip(play.Examples._fields, eight, one, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert stats8 == stats1
    assert stats8["positions"] > 0


def test_examples_are_legal_moves_with_the_movers_result(played):
    (slots, _), _ = played
    gen = jax.tree.map(lambda x: x[0], slots)  # slot 0 holds the first generation
    obs, policy, value, valid = (np.asarray(x) for x in gen)
    occupied = obs.any(axis=-1).reshape(GAMES, -1, 9)  # pgx planes: mine, theirs
    assert valid.any() and not valid[:, :2].any()  # the random openings teach nothing
    # The search puts no weight on a taken cell, and its policy is a distribution.
    assert np.all(policy[valid][occupied[valid]] == 0)
    np.testing.assert_allclose(policy[valid].sum(-1), 1.0, rtol=1e-5)
    assert set(np.unique(value[valid])) <= {-1.0, 0.0, 1.0}
    for g in range(GAMES):
        moves = np.flatnonzero(valid[g])
        # Valid moves run to the game's end, and movers alternate: each one's result is
        # the negation of the previous mover's.
        np.testing.assert_array_equal(moves, np.arange(2, 2 + len(moves)))
        np.testing.assert_array_equal(value[g, moves[1:]], -value[g, moves[:-1]])
        # The cells filled grow by one a move: only legal (empty) cells were played.
        np.testing.assert_array_equal(occupied[g, moves].sum(-1), moves)


def test_the_window_keeps_exactly_the_last_n_generations():
    n = 4
    like = play.Examples(jnp.zeros((3, 2, 1)), jnp.zeros((3, 2, 5)), jnp.zeros((3, 2)),
                         jnp.zeros((3, 2), bool))
    slots = window.empty(n, like)
    assert not slots.valid.any()
    for generation in range(1, 7):
        examples = like._replace(value=jnp.full((3, 2), float(generation)),
                                 valid=jnp.ones((3, 2), bool))
        slots = window.insert(slots, examples, jnp.int32(generation))
    assert sorted(np.unique(slots.value).tolist()) == [3.0, 4.0, 5.0, 6.0]
    drawn = window.sample(slots, jax.random.key(0), 2000)
    assert set(np.unique(drawn.value).tolist()) == {3.0, 4.0, 5.0, 6.0}
    # A slot with nothing valid is never drawn from.
    half = window.insert(window.empty(n, like), like._replace(
        value=jnp.full((3, 2), 7.0), valid=jnp.ones((3, 2), bool)), jnp.int32(0))
    assert set(np.unique(window.sample(half, jax.random.key(1), 500).value).tolist()) == {7.0}
