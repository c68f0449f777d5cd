"""The reference MiniGo's mlperf07 planes from pgx Go states: hand-built positions with known
answers, and every plane re-derived in NumPy (flood-fill liberties, own board history, superko
by replaying the capture) over random games."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pgx
import pgx.go
import pytest

from models import go_features as gf

PASS = "pass"
OWN, OPP = [0, 2, 4, 6], [1, 3, 5, 7]
TO_PLAY, ONE_LIB, TWO_LIBS, MANY_LIBS, CAPTURE = 8, 9, 10, 11, 12


@functools.cache
def _env(size: int) -> tuple:
    env = pgx.go.Go(size=size) if size != 19 else pgx.make("go_19x19")
    return env, jax.jit(env.step), jax.jit(gf.mlperf07)


def _play(size: int, moves: list) -> list:
    """The states after each of `moves` ((row, column) or PASS, black first), the empty
    board's included."""
    env, step, _ = _env(size)
    states = [env.init(jax.random.key(0))]
    for move in moves:
        action = size * size if move == PASS else move[0] * size + move[1]
        assert states[-1].legal_action_mask[action], move
        states.append(step(states[-1], action))
    return states


def _planes(size: int, moves: list) -> np.ndarray:
    return np.asarray(_env(size)[2](_play(size, moves)[-1]))


def _points(plane: np.ndarray) -> set:
    return {tuple(int(v) for v in p) for p in np.argwhere(plane)}


def test_liberty_buckets_and_a_stone_in_atari():
    # Black (0,1) ataris white's corner stone; black (0,4) on the edge, white (6,6) in the open.
    f = _planes(9, [(0, 1), (0, 0), (0, 4), (6, 6)])
    assert f.shape == (9, 9, gf.PLANES) and f.dtype == bool and gf.PLANES == 13
    assert _points(f[..., ONE_LIB]) == {(0, 0)}
    assert _points(f[..., TWO_LIBS]) == {(0, 1)}  # (0,2) and (1,1)
    assert _points(f[..., MANY_LIBS]) == {(0, 4), (6, 6)}  # 3 on the edge, 4 in the open
    assert _points(f[..., CAPTURE]) == {(1, 0)}  # black to move takes the corner there
    assert f[..., TO_PLAY].all()


def test_a_liberty_counts_once_however_many_stones_touch_it():
    # Black's bent chain (0,0)-(0,1)-(1,1) has one liberty, (1,0), touching two of its stones.
    moves = [(0, 0), (0, 2), (0, 1), (1, 2), (1, 1), (2, 1), (8, 8)]
    f = _planes(9, moves)
    assert _points(f[..., ONE_LIB]) == {(0, 0), (0, 1), (1, 1)}
    assert _points(f[..., TWO_LIBS]) == {(8, 8)}
    assert _points(f[..., CAPTURE]) == {(1, 0)}  # white to move
    assert not f[..., TO_PLAY].any()


def test_history_planes_through_a_capture_and_a_pass():
    moves = [(0, 1), (0, 0), (0, 4), (6, 6), (1, 0), PASS]  # (1,0) takes (0,0), white passes
    f = _planes(9, moves)  # black to move: own = black on every past board too
    black = [{(0, 1), (0, 4), (1, 0)}, {(0, 1), (0, 4), (1, 0)}, {(0, 1), (0, 4)},
             {(0, 1), (0, 4)}]
    white = [{(6, 6)}, {(6, 6)}, {(0, 0), (6, 6)}, {(0, 0)}]  # now, 1, 2 and 3 moves ago
    assert [_points(f[..., p]) for p in OWN] == black
    assert [_points(f[..., p]) for p in OPP] == white
    assert f[..., TO_PLAY].all()
    assert _points(f[..., MANY_LIBS]) == black[0] | white[0]  # (1,0) has 3 after the capture

    g = _planes(9, moves[:-1])  # white to move: the same boards, colours swapped
    assert [_points(g[..., p]) for p in OWN] == white[1:] + [{(0, 0)}]
    assert [_points(g[..., p]) for p in OPP] == black[1:] + [{(0, 1)}]
    assert not g[..., TO_PLAY].any()


def test_before_the_first_moves_the_history_is_empty():
    f = _planes(9, [])
    assert not f[..., :TO_PLAY].any() and f[..., TO_PLAY].all() and not f[..., ONE_LIB:].any()
    f = _planes(9, [(4, 4)])
    assert [_points(f[..., p]) for p in OPP] == [{(4, 4)}, set(), set(), set()]
    assert not f[..., OWN].any()


# White's (1,1) sits in black's mouth; black (1,2) takes it, making a ko at (1,1).
KO = [(0, 1), (0, 2), (1, 0), (1, 1), (2, 1), (2, 2), (8, 8), (1, 3), (1, 2)]


def test_the_ko_point_is_no_capture_until_the_ko_clears():
    states = _play(9, KO)
    f = np.asarray(_env(9)[2](states[-1]))
    # Black's capturing stone is in atari (and white's (0,2))...
    assert _points(f[..., ONE_LIB]) == {(1, 2), (0, 2)}
    assert not f[1, 1, CAPTURE] and not states[-1].legal_action_mask[10]  # ...but retaking is ko
    f = _planes(9, KO + [PASS, (8, 6)])
    assert _points(f[..., CAPTURE]) == {(1, 1)}


@pytest.mark.parametrize("moves, capture", [
    (KO + [PASS, (8, 6)], (1, 1)),  # one stone
    ([(0, 0), (0, 2), (0, 1), (1, 2), (1, 1), (2, 1), (8, 8)], (1, 0)),  # three
])
def test_a_capture_that_repeats_a_position_is_no_capture(moves, capture):
    """Positional superko: mark the position the capture makes as seen before (its hash, as
    pgx computes it by playing the move) and the point is no longer marked."""
    _, step, features = _env(9)
    state = _play(9, moves)[-1]
    after = step(state, capture[0] * 9 + capture[1])
    assert after._x.num_captured.sum() > state._x.num_captured.sum()
    repeated = after._x.hash_history[state._x.step_count]
    earlier = state._x._replace(hash_history=state._x.hash_history.at[1].set(repeated))
    assert np.asarray(features(state))[capture + (CAPTURE,)]
    assert not np.asarray(features(state.replace(_x=earlier)))[capture + (CAPTURE,)]


def test_nineteen_by_nineteen():
    f = _planes(19, [(0, 0), (18, 18), (0, 1), (9, 9)])
    assert f.shape == (19, 19, 13)
    assert _points(f[..., OWN[0]]) == {(0, 0), (0, 1)} and f[..., TO_PLAY].all()
    assert _points(f[..., OPP[0]]) == {(18, 18), (9, 9)}
    assert _points(f[..., TWO_LIBS]) == {(18, 18)}
    assert _points(f[..., MANY_LIBS]) == {(0, 0), (0, 1), (9, 9)}


def test_too_short_a_history_is_refused():
    env = pgx.go.Go(size=9, history_length=3)
    with pytest.raises(ValueError, match="history_length >= 4"):
        gf.mlperf07(env.init(jax.random.key(0)))


# --- the NumPy re-derivation -------------------------------------------------------------


def _chains(board: np.ndarray) -> list[tuple[set, set, int]]:
    """Flood fill: (stones, liberties, colour) of every chain of a [N, N] board of -1/0/1."""
    n, seen, chains = board.shape[0], set(), []
    for start in zip(*np.nonzero(board), strict=True):
        if start in seen:
            continue
        stones, libs, todo = {start}, set(), [start]
        while todo:
            r, c = todo.pop()
            for q in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= q[0] < n and 0 <= q[1] < n:
                    if board[q] == 0:
                        libs.add(q)
                    elif board[q] == board[start] and q not in stones:
                        stones.add(q)
                        todo.append(q)
        seen |= stones
        chains.append((stones, libs, int(board[start])))
    return chains


def _after(board: np.ndarray, p: tuple, colour: int) -> np.ndarray:
    """The board once `colour` plays p (legal) and lifts the chains it leaves no liberty."""
    board = board.copy()
    board[p] = colour
    for stones, libs, c in _chains(board):
        if c == -colour and not libs:
            for s in stones:
                board[s] = 0
    return board


def _expected(boards: list[np.ndarray], legal: np.ndarray) -> np.ndarray:
    """The 13 planes from the boards of a game so far (oldest first, the empty one first)."""
    n, board = boards[-1].shape[0], boards[-1]
    me = 1 if (len(boards) - 1) % 2 == 0 else -1
    planes = np.zeros((n, n, 13), bool)
    for k in range(4):
        past = boards[-1 - k] if k < len(boards) else np.zeros_like(board)
        planes[..., 2 * k], planes[..., 2 * k + 1] = past == me, past == -me
    planes[..., TO_PLAY] = me == 1
    seen = {b.tobytes() for b in boards}
    for stones, libs, colour in _chains(board):
        for s in stones:
            planes[s + (ONE_LIB + min(len(libs), 3) - 1,)] = True
        if colour == -me and len(libs) == 1:
            (p,) = libs
            repeats = _after(board, p, me).tobytes() in seen
            planes[p + (CAPTURE,)] = legal[p[0] * n + p[1]] and not repeats
    return planes


def _random_game(size: int, moves: int, seed: int) -> tuple[list, list]:
    """pgx states and their [N, N] colour boards, after random legal moves (few passes)."""
    env, step, _ = _env(size)
    rng = np.random.default_rng(seed)
    states, boards = [env.init(jax.random.key(seed))], [np.zeros((size, size), np.int32)]
    for _ in range(moves):
        state = states[-1]
        if state.terminated:
            break
        legal = np.flatnonzero(np.asarray(state.legal_action_mask)[:-1])
        action = size * size if rng.random() < 0.04 or not len(legal) else rng.choice(legal)
        states.append(step(state, action))
        boards.append(np.sign(np.asarray(states[-1]._x.board)).reshape(size, size))
    return states, boards


def _stack(states: list):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


@functools.cache
def _random_positions() -> tuple:
    """Every position of four random 9x9 games: (pgx states, the planes the NumPy
    re-derivation gives, mlperf07 under jit(vmap) over all of them, stones captured). The
    longer games fill the board, so chains get captured and kos arise."""
    states, expected, captured = [], [], 0
    for seed, moves in ((0, 100), (1, 140), (2, 60), (3, 40)):
        game, boards = _random_game(9, moves, seed)
        captured += int(game[-1]._x.num_captured.sum())
        for t, state in enumerate(game):
            states.append(state)
            expected.append(_expected(boards[:t + 1], np.asarray(state.legal_action_mask)))
    got = np.asarray(jax.jit(jax.vmap(gf.mlperf07))(_stack(states)))
    return states, np.stack(expected), got, captured


def test_every_plane_against_numpy_over_random_games():
    states, expected, got, captured = _random_positions()
    bad = [(i, p) for i in range(len(states)) for p in range(13)
           if not (got[i, ..., p] == expected[i, ..., p]).all()]
    assert not bad, bad[:10]
    # The games exercise every plane, captures and kos.
    assert all(expected[..., p].any() for p in range(13))
    assert captured > 50 and sum(int(s._x.ko) >= 0 for s in states) >= 3


def test_vmap_equals_one_state_at_a_time():
    states, _, batched, _ = _random_positions()
    single = _env(9)[2]
    for i in range(0, len(states), 10):
        assert (np.asarray(single(states[i])) == batched[i]).all(), i


@pytest.mark.parametrize("rows", [1, 5, 722])
def test_seen_before_is_set_membership(rows):
    rng = np.random.default_rng(rows)
    # Few distinct words, so pairs share a first or a second word and rows repeat.
    history = rng.integers(0, 6, (rows, 2), dtype=np.uint32)
    hashes = np.concatenate([history[rng.integers(0, rows, 40)],
                             rng.integers(0, 7, (60, 2), dtype=np.uint32)])
    expected = [tuple(h) in set(map(tuple, history)) for h in hashes]
    assert np.asarray(gf.seen_before(jnp.asarray(hashes), jnp.asarray(history))).tolist() \
        == expected
