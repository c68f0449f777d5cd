"""A perfect tic-tac-toe player: the fixed opponent of the MiniGo workload's tiny preset.

Board convention (one for the whole module): a length-9 int array, cells 0..8 row-major
(0 1 2 / 3 4 5 / 6 7 8), 0 = empty, 1 = X (the first player), 2 = O. The player to move
follows from the counts: X when there are as many Xs as Os, O otherwise. pgx's
tic_tac_toe uses -1 empty, 0 X, 1 O in `state._x.board`; `from_pgx_board` converts.

Every board has an index, its base-3 number sum(board[i] * 3**i), in 0..3**9 - 1. The
solver walks every position reachable from the empty board once (memoised) and fills two
tables over all 3**9 indices, so the JAX side is a plain gather that jits and batches:
  VALUE[idx]      game-theoretic value for the player to move: +1 win, 0 draw, -1 loss
                  (terminal positions included: -1 after the opponent's winning move,
                  0 on a full drawn board); 0 and REACHABLE[idx] False elsewhere.
  OPTIMAL[idx]    [9] bool, the moves that keep VALUE (all False on terminal and
                  unreachable boards: there is nothing to choose).
Reachable: 5,478 positions, 4,520 of them non-terminal (a player to move), 958 terminal.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EMPTY, X, O = 0, 1, 2  # noqa: E741 (O is the piece's name)
NUM_INDICES = 3**9
_POWERS = 3 ** np.arange(9, dtype=np.int32)
_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


class Tables(NamedTuple):
    value: np.ndarray  # [3**9] int8
    optimal: np.ndarray  # [3**9, 9] bool
    reachable: np.ndarray  # [3**9] bool
    terminal: np.ndarray  # [3**9] bool


def board_index(board) -> np.ndarray:
    """Base-3 index of a board [..., 9] (NumPy or JAX; the result has the input's kind)."""
    if isinstance(board, jax.Array):
        return jnp.sum(jnp.asarray(board, jnp.int32) * jnp.asarray(_POWERS), axis=-1)
    return np.sum(np.asarray(board, np.int32) * _POWERS, axis=-1)


def to_move(board) -> int:
    """X or O: whose turn it is on a (legal) board."""
    b = np.asarray(board)
    return X if np.sum(b == X) == np.sum(b == O) else O


def winner(board) -> int:
    """X or O if that player has three in a line, else EMPTY."""
    b = np.asarray(board)
    for a, c, d in _LINES:
        if b[a] != EMPTY and b[a] == b[c] == b[d]:
            return int(b[a])
    return EMPTY


@functools.cache
def tables() -> Tables:
    """Solve the game once by minimax over every reachable position."""
    value = np.zeros(NUM_INDICES, np.int8)
    optimal = np.zeros((NUM_INDICES, 9), bool)
    reachable = np.zeros(NUM_INDICES, bool)
    terminal = np.zeros(NUM_INDICES, bool)

    def solve(board: list[int], mover: int, idx: int) -> int:
        if reachable[idx]:
            return int(value[idx])
        reachable[idx] = True
        # The last move was the opponent's, so a line on the board is the opponent's win.
        if winner(board) != EMPTY:
            terminal[idx], value[idx] = True, -1
            return -1
        if EMPTY not in board:
            terminal[idx] = True
            return 0
        children = {}
        for cell in range(9):
            if board[cell] == EMPTY:
                board[cell] = mover
                # The child's value is the opponent's view; negamax flips it.
                children[cell] = -solve(board, X + O - mover, idx + mover * 3**cell)
                board[cell] = EMPTY
        best = max(children.values())
        value[idx] = best
        optimal[idx, [c for c, v in children.items() if v == best]] = True
        return best

    solve([EMPTY] * 9, X, 0)
    for array in (value, optimal, reachable, terminal):
        array.flags.writeable = False
    return Tables(value, optimal, reachable, terminal)


def _index_checked(board) -> int:
    idx = int(board_index(board))
    if not tables().reachable[idx]:
        raise ValueError(f"board {list(np.asarray(board))} is not reachable from the empty board")
    return idx


def value(board) -> int:
    """Game-theoretic value of one board for the player to move: +1, 0 or -1."""
    return int(tables().value[_index_checked(board)])


def optimal_moves(board) -> list[int]:
    """The cells the player to move may take without lowering its value ([] if terminal)."""
    return [int(c) for c in np.flatnonzero(tables().optimal[_index_checked(board)])]


def _optimal_table() -> jax.Array:
    # Not cached as a jax.Array: one made while tracing would be a tracer and leak. Inside
    # jit this is a constant of the compiled program (19,683 x 9 bools, 177 kB).
    return jnp.asarray(tables().optimal)


def perfect_policy(boards: jax.Array) -> jax.Array:
    """[B, 9] boards -> [B, 9] float32 probabilities, uniform over the optimal moves.

    Rows of terminal or unreachable boards are all zeros. jit-able and vmap-able.
    """
    mask = _optimal_table()[board_index(jnp.asarray(boards))]
    counts = jnp.sum(mask, axis=-1, keepdims=True)
    return jnp.where(mask, 1.0 / jnp.maximum(counts, 1), 0.0).astype(jnp.float32)


def choose(key: jax.Array, boards: jax.Array) -> jax.Array:
    """[B, 9] boards -> [B] int32 cells, each uniform among that board's optimal moves.

    The argmax of independent uniform draws restricted to the optimal cells is uniform over
    them. A board with no optimal move (terminal, or unreachable) gets cell 0: the caller
    must not play it (pgx ignores actions on terminated states).
    """
    mask = _optimal_table()[board_index(jnp.asarray(boards))]
    draws = jax.random.uniform(key, mask.shape)
    return jnp.argmax(jnp.where(mask, draws, -1.0), axis=-1).astype(jnp.int32)


def from_pgx_board(pgx_board):
    """pgx tic_tac_toe's `state._x.board` (-1 empty, 0 X, 1 O; [..., 9]) -> this module's.

    pgx's X (color 0) always moves first whichever player id `current_player` names, so the
    mapping is a shift and needs nothing else from the state.
    """
    return pgx_board + 1
