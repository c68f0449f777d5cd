"""Board symmetries: all 8 distinct, each inverted exactly by turn_back."""

import jax
import jax.numpy as jnp
import numpy as np

from suite.selfplay import symmetry


def test_every_symmetry_is_distinct_and_turns_back_exactly():
    n = 5
    board = jnp.arange(n * n).reshape(n, n)
    turned = [np.asarray(symmetry.turn(board, jnp.int32(k))) for k in range(symmetry.COUNT)]
    assert len({t.tobytes() for t in turned}) == 8
    for k, t in enumerate(turned):
        # A "network" whose logit at each point is the value it sees there: turned back,
        # every point gets its own original value, and the pass entry is untouched.
        policy = jnp.concatenate([jnp.asarray(t).reshape(-1), jnp.array([-1])])
        back = symmetry.turn_back(policy, jnp.int32(k), n)
        np.testing.assert_array_equal(back[:-1], np.arange(n * n))
        assert int(back[-1]) == -1


def test_planes_turn_with_the_board():
    board = jax.random.normal(jax.random.key(0), (4, 4, 3))
    for k in range(symmetry.COUNT):
        whole = symmetry.turn(board, jnp.int32(k))
        for c in range(3):
            np.testing.assert_array_equal(whole[..., c], symmetry.turn(board[..., c],
                                                                       jnp.int32(k)))


def test_noise_free_go_searches_differ_by_key_only_with_symmetries():
    """The eval's search has no Gumbel noise: without symmetries every key gives the same
    move and policy (so every eval game would be one game); with them, keys differ."""
    from models import minigo
    from suite.selfplay import search as search_lib
    from suite.workloads.minigo import MiniGoWorkload

    workload = MiniGoWorkload()
    cfg = workload.config("reference")
    cfg.board_size, cfg.max_moves, cfg.conv_width, cfg.trunk_layers = 9, 162, 8, 1
    cfg.fc_width, cfg.eval_simulations, cfg.compute_dtype = 8, 8, "float32"
    env, observe = workload.env(cfg), workload.observe(cfg)
    variables = minigo.init_variables(workload.net_config(cfg), jax.random.key(0))

    def evaluate(obs):
        logits, value, _ = workload.forward(cfg, variables["params"],
                                            {"batch_stats": variables["batch_stats"]}, obs,
                                            train=False)
        return logits, value

    state = env.init(jax.random.key(1))
    keys = jax.random.split(jax.random.key(2), 6)
    for symmetric in (False, True):
        cfg.random_symmetry = symmetric
        search = workload.search(cfg, evaluation=True)
        assert search.symmetric_board == (9 if symmetric else 0)
        one = jax.jit(lambda k, s=search: search_lib.search_one(env, observe, evaluate, s, k,
                                                                state))
        policies = [np.asarray(one(k)[1]) for k in keys]
        distinct = len({p.tobytes() for p in policies})
        assert (distinct == 1) if not symmetric else (distinct > 1)
