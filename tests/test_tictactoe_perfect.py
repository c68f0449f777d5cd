"""The perfect tic-tac-toe player: the solved table, its JAX lookup and pgx's boards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import tictactoe_perfect as t3


def _board(text: str) -> list[int]:
    """'XX. OO. ...' -> a board; spaces are for the eye only."""
    return [{".": t3.EMPTY, "X": t3.X, "O": t3.O}[c] for c in text.replace(" ", "")]


def _non_terminal_boards() -> np.ndarray:
    tab = t3.tables()
    indices = np.flatnonzero(tab.reachable & ~tab.terminal)
    return (indices[:, None] // t3._POWERS) % 3  # digits back to boards


def test_position_counts():
    tab = t3.tables()
    assert tab.reachable.sum() == 5478  # every legal position, terminal ones included
    assert (tab.reachable & ~tab.terminal).sum() == 4520  # a player to move
    assert tab.terminal.sum() == 958
    assert not tab.optimal[tab.terminal].any()


@pytest.mark.parametrize(
    "text, expected_value, expected_moves",
    [
        ("... ... ...", 0, list(range(9))),  # every opening draws
        ("X.. ... ...", 0, [4]),  # O's only answer to a corner is the centre
        ("... .X. ...", 0, [0, 2, 6, 8]),  # ... and to the centre, a corner
        (".X. ... ...", 0, [0, 2, 4, 7]),  # ... and to an edge: its corners, centre, far edge
        ("XX. .O. ...", 0, [2]),  # O must block the open two
        (".O. .X. ...", 1, None),  # an edge answer to the centre loses
        ("X.. ... ..O", 1, None),  # so does the far corner against a corner
        ("OO. OXX .X.", -1, [2, 6, 8]),  # O threatens 2 and 6: every X move loses
    ],
)
def test_known_values_and_moves(text, expected_value, expected_moves):
    board = _board(text)
    assert t3.value(board) == expected_value
    if expected_moves is not None:
        assert t3.optimal_moves(board) == expected_moves


def test_immediate_win_and_terminal_boards():
    assert t3.value(_board("XX. OO. ...")) == 1 and 2 in t3.optimal_moves(_board("XX. OO. ..."))
    assert t3.value(_board("XXX OO. ...")) == -1  # O to move after X's line: lost
    assert t3.value(_board("XOX XOO OXX")) == 0  # full, no line
    assert t3.optimal_moves(_board("XXX OO. ...")) == []
    with pytest.raises(ValueError, match="not reachable"):
        t3.value(_board("XXX XXX ..."))


def _never_loses(board: list[int], perfect: int) -> bool:
    """Every line of play where `perfect` picks any optimal move and its opponent any move."""
    if t3.winner(board) != t3.EMPTY or t3.EMPTY not in board:
        return t3.winner(board) != t3.X + t3.O - perfect
    mover = t3.to_move(board)
    cells = t3.optimal_moves(board) if mover == perfect else np.flatnonzero(np.equal(board, 0))
    for cell in cells:
        child = list(board)
        child[cell] = mover
        if not _never_loses(child, perfect):
            return False
    return True


@pytest.mark.parametrize("perfect", [t3.X, t3.O])
def test_perfect_never_loses_to_any_opponent(perfect):
    assert _never_loses([t3.EMPTY] * 9, perfect)


def _play(rng: np.random.Generator, x_perfect: bool, o_perfect: bool) -> int:
    """One game; returns the winner (EMPTY for a draw). Perfect ties broken at random."""
    board = [t3.EMPTY] * 9
    while t3.winner(board) == t3.EMPTY and t3.EMPTY in board:
        mover = t3.to_move(board)
        perfect = x_perfect if mover == t3.X else o_perfect
        cells = t3.optimal_moves(board) if perfect else np.flatnonzero(np.equal(board, 0))
        board[int(rng.choice(cells))] = mover
    return t3.winner(board)


def test_self_play_is_always_a_draw():
    rng = np.random.default_rng(0)
    assert [_play(rng, True, True) for _ in range(200)] == [t3.EMPTY] * 200


def test_beats_a_random_player():
    rng = np.random.default_rng(1)
    as_x = np.array([_play(rng, True, False) for _ in range(500)])
    as_o = np.array([_play(rng, False, True) for _ in range(500)])
    assert not (as_x == t3.O).any() and not (as_o == t3.X).any()  # never a loss
    # Measured with these seeds: 479 wins as X (21 draws), 380 as O (120 draws), of 500 each.
    assert (as_x == t3.X).mean() > 0.9 and (as_o == t3.O).mean() > 0.7


def test_jax_lookup_matches_the_table_on_every_position():
    boards = _non_terminal_boards()
    optimal = t3.tables().optimal[t3.board_index(boards)]
    policy = np.asarray(jax.jit(t3.perfect_policy)(jnp.asarray(boards)))
    np.testing.assert_allclose(policy, optimal / optimal.sum(-1, keepdims=True), rtol=1e-6)

    keys = jax.random.split(jax.random.key(0), 200)
    picks = np.asarray(jax.jit(jax.vmap(t3.choose, (0, None)))(keys, jnp.asarray(boards)))
    chosen = np.zeros_like(optimal)
    chosen[np.arange(len(boards))[None, :].repeat(200, 0), picks] = True
    # Always an optimal move, and with 200 draws every optimal move of every position turns up.
    np.testing.assert_array_equal(chosen, optimal)

    terminal = _board("XXX OO. ...")
    assert not np.asarray(t3.perfect_policy(jnp.asarray([terminal]))).any()


def test_pgx_boards_convert_and_perfect_play_never_loses_there():
    import pgx  # a dependency (pyproject.toml); imported here so other tests run without it

    env = pgx.make("tic_tac_toe")
    init, step = jax.jit(jax.vmap(env.init)), jax.jit(jax.vmap(env.step))
    games = 64
    key = jax.random.key(2)
    key, sub = jax.random.split(key)
    state = init(jax.random.split(sub, games))
    perfect_id = jnp.arange(games) % 2  # half the games the perfect player is player 0
    returns = np.zeros(games)
    for _ in range(9):
        board = t3.from_pgx_board(state._x.board)
        live = ~np.asarray(state.terminated)
        np.testing.assert_array_equal(
            np.asarray(state.legal_action_mask)[live], np.asarray(board == t3.EMPTY)[live]
        )
        key, k_perfect, k_random = jax.random.split(key, 3)
        random_moves = jax.random.categorical(
            k_random, jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
        )
        action = jnp.where(
            state.current_player == perfect_id, t3.choose(k_perfect, board), random_moves
        )
        state = step(state, action)
        returns += np.asarray(state.rewards[jnp.arange(games), perfect_id])
    assert np.asarray(state.terminated).all()
    assert (returns >= 0).all() and (returns > 0).sum() > games // 2
