"""Fixed-shape, jit-able beam search and greedy search for any autoregressive decoder.

Both searches drive a `tokens_to_logits(ids [rows, 1], cache) -> (logits [rows, vocab],
new_cache)` function, where rows = batch * beam (beam 1 for greedy) and every cache
leaf with a leading dimension is indexed by row; scalar leaves (a step counter) are
carried as they are. The searches run in one `lax.while_loop` with static shapes, so
they jit and shard like any other step.

Sequences hold the decoded tokens after the BOS (id 0, never returned) up to and
including EOS, zeros after it. Scores are length-penalised log-probabilities with
GNMT's penalty ((5 + length) / 6) ** alpha, length counting the EOS; MLPerf uses
alpha = 0.6. `length_limit[b]` forces EOS as token number length_limit[b] of
example b; without it a hypothesis that fills max_decode_len stops unfinished.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

_DEAD = -jnp.inf  # log-probability of a hypothesis that must never be picked


def length_penalty(length, alpha: float):
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def sequence_score(log_prob_sum, length, alpha: float):
    """The score beam search ranks finished hypotheses by."""
    return log_prob_sum / length_penalty(length, alpha)


def decoded_length(sequences, eos_id: int):
    """Tokens up to and including the first EOS; the full buffer if there is none."""
    is_eos = sequences == eos_id
    return jnp.where(is_eos.any(-1), jnp.argmax(is_eos, -1) + 1, sequences.shape[-1])


def tile_beams(tree, beam_size: int):
    """Repeats each batch row beam_size times in a row: [batch, ...] -> [batch*beam, ...]."""
    return jax.tree.map(lambda x: x if x.ndim == 0 else jnp.repeat(x, beam_size, axis=0), tree)


def _gather_rows(tree, beam_ids, beam_size: int):
    """Picks, for each example, the rows of the given beams: beam_ids [batch, beam_size]."""
    batch_size = beam_ids.shape[0]
    rows = (beam_ids + beam_size * jnp.arange(batch_size)[:, None]).reshape(-1)
    return jax.tree.map(lambda x: x if x.ndim == 0 else jnp.take(x, rows, axis=0), tree)


def _step_log_probs(tokens_to_logits, last_tokens, cache, new_length, length_limit, eos_id):
    """log_softmax of the next token, [rows, vocab], with EOS forced at the length limit."""
    logits, cache = tokens_to_logits(last_tokens[:, None], cache)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    if length_limit is not None:
        at_limit = (new_length >= length_limit)[:, None]
        not_eos = jnp.arange(log_probs.shape[-1]) != eos_id
        log_probs = jnp.where(at_limit & not_eos, _DEAD, log_probs)
    return log_probs, cache


class _BeamState(NamedTuple):
    step: jax.Array  # tokens decoded so far
    alive_seqs: jax.Array  # [batch, beam, max_decode_len + 1], column 0 is the BOS
    alive_log_probs: jax.Array  # [batch, beam], best first
    finished_seqs: jax.Array  # [batch, beam, max_decode_len + 1]
    finished_scores: jax.Array  # [batch, beam], best first, -inf in empty slots
    finished_flags: jax.Array  # [batch, beam]
    cache: object


def beam_search(tokens_to_logits, cache, *, batch_size: int, beam_size: int, alpha: float,
                eos_id: int, max_decode_len: int, length_limit=None):
    """Returns sequences int32 [batch, beam, max_decode_len] and scores [batch, beam], best first.

    `cache` rows are batch-major (see `tile_beams`). Examples where no hypothesis
    finished fall back to their alive ones, scored at the length they reached.
    Expects alpha >= 0, which makes the early stop below exact.
    """
    k = beam_size
    rows = jnp.arange(batch_size)[:, None]
    seqs = jnp.zeros((batch_size, k, max_decode_len + 1), jnp.int32)
    # Every beam starts from the same BOS: keep one live so the first step's
    # top-k does not pick the same continuation k times.
    first = jnp.where(jnp.arange(k) == 0, 0.0, _DEAD)
    if length_limit is not None:
        length_limit = jnp.asarray(length_limit, jnp.int32)
        longest = jnp.minimum(length_limit, max_decode_len)
    else:
        longest = jnp.full((batch_size,), max_decode_len)
    state = _BeamState(
        step=jnp.zeros((), jnp.int32), alive_seqs=seqs,
        alive_log_probs=jnp.broadcast_to(first, (batch_size, k)),
        finished_seqs=seqs, finished_scores=jnp.full((batch_size, k), _DEAD),
        finished_flags=jnp.zeros((batch_size, k), jnp.bool_), cache=cache)

    def not_done(state):
        # No alive beam can beat the worst finished one: log-probs only fall as
        # tokens are added, and the penalty is largest at the longest length.
        best_alive = state.alive_log_probs[:, 0] / length_penalty(longest, alpha)
        worst_finished = jnp.min(jnp.where(state.finished_flags, state.finished_scores, jnp.inf),
                                 axis=1)
        worst_finished = jnp.where(state.finished_flags.any(1), worst_finished, _DEAD)
        return (state.step < max_decode_len) & ~jnp.all(best_alive <= worst_finished)

    def body(state):
        i = state.step
        last = state.alive_seqs[:, :, i].reshape(-1)
        limit = None if length_limit is None else jnp.repeat(length_limit, k)
        log_probs, cache = _step_log_probs(tokens_to_logits, last, state.cache, i + 1, limit,
                                           eos_id)
        vocab = log_probs.shape[-1]
        candidates = state.alive_log_probs[:, :, None] + log_probs.reshape(batch_size, k, vocab)
        # 2k candidates hold at least k that do not end, since each beam has one EOS.
        top_log_probs, top_ids = jax.lax.top_k(candidates.reshape(batch_size, k * vocab), 2 * k)
        parents, tokens = top_ids // vocab, top_ids % vocab
        top_seqs = jax.lax.dynamic_update_slice(
            state.alive_seqs[rows, parents], tokens[:, :, None], (0, 0, i + 1))
        ends = tokens == eos_id
        # A hypothesis finishes only if its EOS ranks within the beam (the top k), as in
        # fairseq, MLPerf's reference: the search then explores exactly k candidates a
        # step, and a beam of one is greedy search. The next k only refill the alive set.
        finishing = ends & (jnp.arange(2 * k) < k) & (top_log_probs > _DEAD)

        new_scores = jnp.where(finishing, sequence_score(top_log_probs, i + 1, alpha), _DEAD)
        scores = jnp.concatenate([state.finished_scores, new_scores], axis=1)
        finished_scores, keep = jax.lax.top_k(scores, k)
        finished_seqs = jnp.concatenate([state.finished_seqs, top_seqs], axis=1)[rows, keep]
        flags = jnp.concatenate([state.finished_flags, finishing], axis=1)

        alive_log_probs, keep_alive = jax.lax.top_k(jnp.where(ends, _DEAD, top_log_probs), k)
        return _BeamState(
            step=i + 1, alive_seqs=top_seqs[rows, keep_alive], alive_log_probs=alive_log_probs,
            finished_seqs=finished_seqs, finished_scores=finished_scores,
            finished_flags=flags[rows, keep],
            cache=_gather_rows(cache, parents[rows, keep_alive], k))

    state = jax.lax.while_loop(not_done, body, state)
    any_finished = state.finished_flags.any(axis=1)
    alive_scores = sequence_score(state.alive_log_probs, state.step, alpha)
    sequences = jnp.where(any_finished[:, None, None], state.finished_seqs, state.alive_seqs)
    scores = jnp.where(any_finished[:, None], state.finished_scores, alive_scores)
    return sequences[:, :, 1:], scores


def greedy_search(tokens_to_logits, cache, *, batch_size: int, eos_id: int,
                  max_decode_len: int, length_limit=None):
    """Returns sequences int32 [batch, max_decode_len] and their summed log-probs [batch]."""
    if length_limit is not None:
        length_limit = jnp.asarray(length_limit, jnp.int32)

    def not_done(carry):
        step, _, _, done, _ = carry
        return (step < max_decode_len) & ~jnp.all(done)

    def body(carry):
        step, seqs, log_prob_sums, done, cache = carry
        log_probs, cache = _step_log_probs(tokens_to_logits, seqs[:, step], cache, step + 1,
                                           length_limit, eos_id)
        tokens = jnp.argmax(log_probs, axis=-1)
        token_log_probs = jnp.take_along_axis(log_probs, tokens[:, None], axis=-1)[:, 0]
        tokens = jnp.where(done, 0, tokens)
        log_prob_sums += jnp.where(done, 0.0, token_log_probs)
        seqs = jax.lax.dynamic_update_slice(seqs, tokens[:, None].astype(jnp.int32),
                                            (0, step + 1))
        return step + 1, seqs, log_prob_sums, done | (tokens == eos_id), cache

    carry = (jnp.zeros((), jnp.int32), jnp.zeros((batch_size, max_decode_len + 1), jnp.int32),
             jnp.zeros((batch_size,), jnp.float32), jnp.zeros((batch_size,), jnp.bool_), cache)
    _, seqs, log_prob_sums, _, _ = jax.lax.while_loop(not_done, body, carry)
    return seqs[:, 1:], log_prob_sums
