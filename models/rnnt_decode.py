"""Batched greedy decoding of a transducer, with fixed shapes, as MLPerf's RNN-T eval does it.

Per example, the rule is the reference's: at frame t (t < the example's encoder length), take
the argmax of joint(frame t, prediction output); blank moves on to frame t + 1, any other
class is emitted and fed to the prediction network, whose new output the next argmax at the
same frame sees. A frame emits at most `max_symbols_per_frame` symbols (the reference's 30);
an utterance at most `max_symbols` (its eval_max_prediction_symbols, 300), after which its
remaining frames emit nothing. The prediction network starts from the blank (start) symbol.

Every example keeps its own frame pointer, and one lax.while_loop steps all of them together:
each step is one argmax per example, which either emits (pointer stays) or advances it. An
example that has passed its last frame, or has emitted max_symbols, is done and no longer
changes. So the loop runs max over the batch of (frames + symbols) steps, at most
T + max_symbols: fewer than a scan over frames with an inner symbol loop, which pays, at every
frame, for the example that emits most there.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# joint_fn(frames [B, J], pred_out [B, P]) -> logits [B, V].
JointFn = Callable[[jax.Array, jax.Array], jax.Array]
# pred_step_fn(labels [B] int32, state) -> (pred_out [B, P], new state).
PredStepFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def _where_rows(mask: jax.Array, new: Any, old: Any) -> Any:
    """new where mask[b], else old, for every leaf of two pytrees with batch leading."""
    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


def greedy_decode(joint_fn: JointFn, pred_step_fn: PredStepFn, pred_init: Any,
                  enc_p: jax.Array, enc_lengths: jax.Array, *, blank: int,
                  max_symbols_per_frame: int = 30,
                  max_symbols: int = 300) -> tuple[jax.Array, jax.Array]:
    """Greedy transducer decoding of a batch: (tokens [B, max_symbols] int32, padded with
    blank; lengths [B] int32).

    enc_p: [B, T, J] encoder frames as the joint takes them (projected); frames at or past
    enc_lengths[b] are never read. pred_init: the prediction network's starting state (a
    pytree of [B, ...] arrays); the first step feeds it the blank symbol. Pure and jit-able:
    no host round trips, fixed output shapes.
    """
    batch, t_max = enc_p.shape[:2]
    rows = jnp.arange(batch)
    enc_lengths = enc_lengths.astype(jnp.int32)
    pred_out, pred_state = pred_step_fn(jnp.full((batch,), blank, jnp.int32), pred_init)

    def done(frame, total):
        return (frame >= enc_lengths) | (total >= max_symbols)

    def cond(carry):
        frame, _, total = carry[:3]
        return jnp.any(~done(frame, total))

    def body(carry):
        frame, at_frame, total, tokens, pred_out, pred_state = carry
        active = ~done(frame, total)
        frames = enc_p[rows, jnp.minimum(frame, t_max - 1)]
        k = jnp.argmax(joint_fn(frames, pred_out), axis=-1).astype(jnp.int32)
        emit = active & (k != blank) & (at_frame < max_symbols_per_frame)
        advance = active & ~emit
        # Done rows write their own current value back, so nothing of theirs changes.
        slot = jnp.minimum(total, max_symbols - 1)
        tokens = tokens.at[rows, slot].set(jnp.where(emit, k, tokens[rows, slot]))

        def feed(pred):
            new_out, new_state = pred_step_fn(k, pred[1])
            return _where_rows(emit, (new_out, new_state), pred)

        # Steps where nobody emits (every example moving on) skip the prediction network,
        # the costliest part of a step.
        pred_out, pred_state = jax.lax.cond(jnp.any(emit), feed, lambda pred: pred,
                                            (pred_out, pred_state))
        return (frame + advance, jnp.where(advance, 0, at_frame + emit), total + emit,
                tokens, pred_out, pred_state)

    zeros = jnp.zeros((batch,), jnp.int32)
    tokens = jnp.full((batch, max_symbols), blank, jnp.int32)
    carry = jax.lax.while_loop(cond, body,
                               (zeros, zeros, zeros, tokens, pred_out, pred_state))
    return carry[3], carry[2]
