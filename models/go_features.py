"""The reference MiniGo's `mlperf07` input planes, computed from a pgx Go state in JAX.

MLPerf's minigo target model (models/minigo_target.py, TARGET_CONFIG) reads these 13 planes,
and the reference trains on them: its C++ self-play writes them into every training example
(tensorflow/minigo cc/tf_utils.cc MakeExamples -> FeatureDescriptor), so the C++ definitions
(cc/model/features.h, `Mlperf07Features`) are the ones followed here. Planes, in the
reference's order, all from the view of the colour to move ("own" = that colour, for every
past board too):

| plane | meaning                                                                  |
|-------|--------------------------------------------------------------------------|
| 0     | own stones now                                                           |
| 1     | opponent stones now                                                      |
| 2, 3  | own, opponent stones one move ago                                        |
| 4, 5  | own, opponent stones two moves ago                                       |
| 6, 7  | own, opponent stones three moves ago                                     |
| 8     | all ones if black is to move, all zeros if white is                      |
| 9     | stone whose chain has exactly 1 liberty                                  |
| 10    | stone whose chain has exactly 2 liberties                                |
| 11    | stone whose chain has 3 or more liberties                                |
| 12    | empty point where the player to move may legally play and capture       |

A pass is a move: it repeats the board in the history. Before the game's first positions the
history planes are zero (the reference pads with zeros; the empty board is zeros too). Plane 12
marks the single liberty of each opponent chain in atari unless taking it would repeat an
earlier whole-board position: the reference's self-play enforces positional superko in its legal
moves, and retaking a simple ko always recreates the position before the ko was taken, so this
one check also leaves out the ko point. (pgx's legal_action_mask forbids the ko point but lets
any other repeating move end the game as a loss.)

Where the reference's Python features.py differs (it is used only by its Python inference and
SGF tools, not by the self-play that writes training data): its plane 11 is exactly 3 liberties
(a chain with 4 or more has none of planes 9-11), its plane 12 ignores ko and superko, and it
repeats the oldest board instead of padding with zeros (the same thing when the history reaches
the empty board at the start of the game).

pgx keeps what the planes need: `board` (0 empty, +id black, -id white, one id per chain),
`board_history` (the last `history_length` boards, newest first, 2 before the first move;
pgx's default 8 >= the 4 needed), `color` (0 black, 1 white to move; `current_player` is the
agent id, which pgx randomises, not the colour) and `hash_history` (every position's
Zobrist hash of the stones, for superko). Points are pgx's actions: index row * N + column,
which is the reference's point index too, so plane [r, c] and policy entry r * N + c agree.

The result is bool, [N, N, 13] (the reference's 19x19 flags set --bool_features; its training
examples hold the same values as uint8 bytes).
"""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from pgx._src.games import go as pgx_go  # pgx's Go rules: its Zobrist table and board hash

PLANES = 13
HISTORY = 4  # boards in the stone planes: now and three moves back
_BITS = 32  # pgx's hashes are pairs of uint32


@functools.cache
def _neighbours(n: int) -> np.ndarray:
    """[N*N, 4] indices of each point's neighbours, -1 off the board."""
    rows, cols = np.divmod(np.arange(n * n), n)
    out = np.full((n * n, 4), -1, np.int32)
    for k, (dr, dc) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
        r, c = rows + dr, cols + dc
        on = (r >= 0) & (r < n) & (c >= 0) & (c < n)
        out[on, k] = (r * n + c)[on]
    return out


def chain_liberties(board: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For pgx's flat board: (distinct liberties of the chain at each point, 0 where empty;
    the sum of those liberties' indices, which is the liberty itself for a chain in atari)."""
    points = board.shape[-1]
    nbr = _neighbours(math.isqrt(points))
    chain = jnp.abs(board)  # 0 empty, else one id per chain (1 + one of its stones' index)
    empty = board == 0
    nbr_chain = jnp.where(nbr >= 0, chain[nbr], 0)  # [N*N, 4]
    # An empty point is one liberty of each distinct chain beside it, however many of that
    # chain's stones touch it.
    repeat = jnp.stack([(nbr_chain[:, k:k + 1] == nbr_chain[:, :k]).any(-1)
                        for k in range(4)], axis=1)
    counts = empty[:, None] & (nbr_chain > 0) & ~repeat
    where = jnp.where(counts, jnp.arange(points)[:, None], 0)
    libs = jnp.zeros(points + 1, jnp.int32).at[nbr_chain].add(counts.astype(jnp.int32))
    at = jnp.zeros(points + 1, jnp.int32).at[nbr_chain].add(where)
    return libs[chain], at[chain]  # index 0 (empty) never receives a count


def _segment_xor(values: jax.Array, segments: jax.Array, num: int) -> jax.Array:
    """XOR of the uint32 rows of values [P, 2] landing in each of num segments: each bit's
    parity, from a sum, since JAX has no scatter-XOR."""
    shifts = jnp.arange(_BITS, dtype=jnp.uint32)
    # uint8 sums wrap modulo 256, which keeps their parity.
    bits = ((values[..., None] >> shifts) & 1).astype(jnp.uint8)  # [P, 2, 32]
    parity = jnp.zeros((num, *bits.shape[1:]), jnp.uint8).at[segments].add(bits) & 1
    return lax.reduce(parity.astype(jnp.uint32) << shifts, np.uint32(0), lax.bitwise_or, (2,))


def _would_capture(x: Any, libs: jax.Array, liberty_at: jax.Array, me: jax.Array) -> jax.Array:
    """Plane 12, flat: the liberties of the opponent's chains in atari that the player to move
    may take without repeating an earlier position (positional superko, the ko point
    included)."""
    board = x.board
    points = board.shape[-1]
    in_atari = (board * me < 0) & (libs == 1)  # opponent stones whose chain has one liberty
    target = jnp.where(in_atari, liberty_at, points)  # their liberty; `points` is a dump slot
    captures = jnp.zeros(points + 1, jnp.int32).at[target].add(1)[:points] > 0

    # The stones' hash after playing p: pgx hashes a board as the XOR over points of
    # ZOBRIST_BOARD[value, point] (value -1 indexes row 2), so playing p and lifting the
    # chains whose liberty is p changes it by those points' rows.
    zobrist = pgx_go.ZOBRIST_BOARD[:, :points]  # [3, N*N, 2]
    mine, theirs = jnp.where(me > 0, 1, 2), jnp.where(me > 0, 2, 1)
    lifted = jnp.where(in_atari[:, None], zobrist[0] ^ zobrist[theirs], 0)
    captured = _segment_xor(lifted, target, points + 1)[:points]
    after = pgx_go._compute_hash(x)[None] ^ zobrist[0] ^ zobrist[mine] ^ captured  # [N*N, 2]
    # pgx writes hash_history[t] at step t; the slots of steps to come hold zeros, which (as
    # pgx's own superko check assumes) no position's 64-bit hash is taken to equal.
    return captures & ~seen_before(after, x.hash_history)


def seen_before(hashes: jax.Array, history: jax.Array) -> jax.Array:
    """Whether each row of hashes [P, 2] is a row of history [T, 2]: a binary search of the
    rows sorted as pairs, so the memory grows with P + T, not P * T (T is 722 on 19x19)."""
    first, second = lax.sort((history[:, 0], history[:, 1]), num_keys=2)
    size = first.shape[0]
    lo = jnp.zeros(hashes.shape[0], jnp.int32)
    hi = jnp.full(hashes.shape[0], size, jnp.int32)
    for _ in range(size.bit_length()):  # enough halvings to close [lo, hi) on `size` rows
        # Once lo == hi the step changes nothing: row lo is not below the hash, or lo is
        # `size` and the clamped row size - 1 is below it.
        mid = jnp.minimum((lo + hi) // 2, size - 1)
        below = (first[mid] < hashes[:, 0]) | (
            (first[mid] == hashes[:, 0]) & (second[mid] < hashes[:, 1]))
        lo = jnp.where(below, mid + 1, lo)
        hi = jnp.where(below, hi, mid)
    at = jnp.minimum(lo, size - 1)
    return (first[at] == hashes[:, 0]) & (second[at] == hashes[:, 1])


def mlperf07(state: Any) -> jax.Array:
    """The reference's 13 mlperf07 planes for ONE pgx Go state (pgx.go.State): bool
    [N, N, 13], in the order of the module's table. Pure JAX: jit and vmap over states."""
    x = state._x
    if x.board_history.shape[0] < HISTORY:
        raise ValueError(f"pgx Go keeps {x.board_history.shape[0]} past boards, mlperf07 needs "
                         f"{HISTORY}; make the environment with history_length >= {HISTORY}")
    points = x.board.shape[-1]
    n = math.isqrt(points)
    me = jnp.where(x.color == 0, 1, -1)  # the colour to move: +1 black, -1 white (pgx's signs)
    past = x.board_history[:HISTORY]  # newest first; 2 (neither colour) before the first move
    stones = jnp.stack([past == me, past == -me], axis=1).reshape(2 * HISTORY, points)
    black_to_move = jnp.broadcast_to(x.color == 0, (1, points))
    libs, liberty_at = chain_liberties(x.board)
    liberty_planes = jnp.stack([libs == 1, libs == 2, libs >= 3])
    capture = _would_capture(x, libs, liberty_at, me)[None]
    planes = jnp.concatenate([stones, black_to_move, liberty_planes, capture])
    return planes.T.reshape(n, n, PLANES)
