"""Gumbel MuZero search (mctx) with a pgx environment as the model of the game.

The search needs the network only through `Evaluate`: observations -> (prior logits,
value), both from the view of the player to move. Every function here searches ONE game
(a batch of one for mctx) and is vmapped over games by the caller: mctx draws its Gumbel
noise from one key for the whole batch, so a batched search would give game g different
noise on 8 devices than on one. Searching per game with a per-game key keeps every game
the same however the games are sharded.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import mctx

from suite.selfplay import symmetry

# observations [B, ...] -> (logits [B, A], value [B]); both for the player to move
Evaluate = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
# one unbatched pgx state -> the network's input for the player to move
Observe = Callable[[object], jax.Array]


def pgx_observation(state) -> jax.Array:
    """The environment's own encoding (pgx's `observation`)."""
    return state.observation


class SearchConfig(NamedTuple):
    simulations: int
    considered: int  # max_num_considered_actions of the Gumbel root
    gumbel_scale: float  # 1.0 in self-play (exploration); 0.0 plays the search's best move
    # N: evaluate every position on one of the 8 symmetries of the N x N board, drawn from
    # the search's keys (suite.selfplay.symmetry); 0: as it stands.
    symmetric_board: int = 0


def masked_logits(logits: jax.Array, legal: jax.Array) -> jax.Array:
    """Illegal moves get the lowest finite logit: zero prior, and never NaN in a softmax."""
    logits = logits - jnp.max(logits, axis=-1, keepdims=True)
    return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


def search_one(env, observe: Observe, evaluate: Evaluate, search: SearchConfig,
               key: jax.Array, state) -> tuple[jax.Array, jax.Array]:
    """(action, improved policy [A]) for one unbatched pgx state."""
    root_state = jax.tree.map(lambda x: x[None], state)

    n = search.symmetric_board

    def judge(s, k):
        obs = jax.vmap(observe)(s)
        if n:
            turns = jax.random.randint(k, (obs.shape[0],), 0, symmetry.COUNT)
            obs = jax.vmap(symmetry.turn)(obs, turns)
        logits, value = evaluate(obs)
        if n:
            logits = jax.vmap(lambda p, t: symmetry.turn_back(p, t, n))(logits, turns)
        return masked_logits(logits, s.legal_action_mask), value

    root_key = None
    if n:  # split only here: without symmetries the search's keys stay as they were
        root_key, key = jax.random.split(key)
    logits, value = judge(root_state, root_key)
    root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=root_state)

    def recurrent(_, rng, action, s):
        mover = s.current_player
        s = jax.vmap(env.step)(s, action)
        logits, value = judge(s, rng)
        done = s.terminated | s.truncated
        # The reward is the mover's; the next node's value is the opponent's, hence -1.
        reward = jnp.take_along_axis(s.rewards, mover[:, None], axis=1)[:, 0]
        out = mctx.RecurrentFnOutput(reward=reward, discount=jnp.where(done, 0.0, -1.0),
                                     prior_logits=logits, value=jnp.where(done, 0.0, value))
        return out, s

    out = mctx.gumbel_muzero_policy(
        params=None, rng_key=key, root=root, recurrent_fn=recurrent,
        num_simulations=search.simulations, invalid_actions=~root_state.legal_action_mask,
        max_num_considered_actions=search.considered, gumbel_scale=search.gumbel_scale)
    return out.action[0], out.action_weights[0]
