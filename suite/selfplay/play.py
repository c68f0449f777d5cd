"""Whole games in one jitted scan: self-play with search, and the arena against a fixed
opponent. Every function plays ONE game from its own key and is vmapped over games, so a
game is the same whichever device plays it (suite.selfplay.search says why).

A game runs max_moves steps whatever happens: pgx leaves a finished state as it is (no
reward, nothing legal), and the steps after the end are masked out of the examples. The
environment must end every game within max_moves (Go: its max_terminal_steps), so that
every game has a result.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from suite.selfplay import search as search_lib

# (key, unbatched pgx state) -> action: how a fixed opponent moves
Act = Callable[[jax.Array, object], jax.Array]


class Examples(NamedTuple):
    """What one game teaches, one row per move slot ([games, max_moves, ...] when vmapped)."""

    observation: jax.Array  # the position, as the environment encodes it for the mover
    policy: jax.Array  # [A] the search's improved policy: the policy head's target
    value: jax.Array  # the game's final result from the mover's view: -1, 0 or +1
    valid: jax.Array  # a searched move of a game still running (not a random opening)


class Game(NamedTuple):
    examples: Examples
    moves: jax.Array  # moves played before the game ended


def _finished(state) -> jax.Array:
    return state.terminated | state.truncated


def random_legal(key: jax.Array, state) -> jax.Array:
    return jax.random.categorical(key, jnp.where(state.legal_action_mask, 0.0, -jnp.inf))


def selfplay_game(env, observe: search_lib.Observe, evaluate: search_lib.Evaluate,
                  search: search_lib.SearchConfig, key: jax.Array, *, max_moves: int,
                  random_opening: int) -> Game:
    """One self-play game: the first random_opening moves uniform among legal ones (without
    them a deterministic position set repeats one game), then the search's choice."""
    init_key, play_key = jax.random.split(key)
    state = env.init(init_key)

    def move(carry, t):
        state, total = carry
        search_key, open_key = jax.random.split(jax.random.fold_in(play_key, t))
        action, policy = search_lib.search_one(env, observe, evaluate, search, search_key, state)
        opening = t < random_opening
        action = jnp.where(opening, random_legal(open_key, state), action)
        live = ~_finished(state)
        row = (observe(state), policy, state.current_player, live & ~opening, live)
        state = env.step(state, action)
        return (state, total + state.rewards), row

    (_, total), (obs, policy, mover, valid, live) = jax.lax.scan(
        move, (state, jnp.zeros(2, jnp.float32)), jnp.arange(max_moves))
    value = total[mover]
    return Game(Examples(obs, policy, value, valid), jnp.sum(live).astype(jnp.int32))


def arena_game(env, agent: Act, opponent: Act, key: jax.Array, index: jax.Array, *,
               max_moves: int) -> jax.Array:
    """The agent's score in one game against opponent: 1 win, 0.5 draw, 0 loss. The agent
    moves first in even-numbered games and second in odd ones (colours alternate)."""
    init_key, play_key = jax.random.split(key)
    state = env.init(init_key)
    me = jnp.where(index % 2 == 0, state.current_player, 1 - state.current_player)

    def move(carry, t):
        state, total = carry
        agent_key, opponent_key = jax.random.split(jax.random.fold_in(play_key, t))
        action = jnp.where(state.current_player == me, agent(agent_key, state),
                           opponent(opponent_key, state))
        state = env.step(state, action)
        return (state, total + state.rewards), None

    (state, total), _ = jax.lax.scan(move, (state, jnp.zeros(2, jnp.float32)),
                                     jnp.arange(max_moves))
    return (total[me] + 1.0) / 2.0


def searching(env, observe: search_lib.Observe, evaluate: search_lib.Evaluate,
              search: search_lib.SearchConfig) -> Act:
    """A player that moves by the search's choice."""
    return lambda key, state: search_lib.search_one(env, observe, evaluate, search, key,
                                                    state)[0]
