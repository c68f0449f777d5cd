"""The exact RNN-Transducer loss: the negative log of the sum over every alignment.

A transducer's joint network scores every (frame t, emitted-label count u) cell of a
T x (U+1) lattice with a distribution over V classes. Only two entries of each distribution
matter to the loss: blank (move to t+1) and the next label y_{u+1} (move to u+1). So the
lattice recursion works on two (B, T, U+1) log-probability arrays, and the joint is applied a
few frames at a time under remat: the B x T x (U+1) x V logits never exist at once, in the
forward pass or in the backward one.

The forward variable alpha[t, u] (log-probability of reaching the cell) depends on its left
and lower neighbours, so all cells of one anti-diagonal t + u = n are independent: the
recursion is a scan over the T + U diagonals, each one a vectorised step over u. Autodiff
through the scan is exact and keeps one (B, U+1) diagonal per step.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

# Stands for log(0). Finite, so that unreachable cells give zero gradients rather than the
# NaNs that (-inf) - (-inf) would make inside logaddexp's derivative; T + U of them summed
# still stay far inside float32's range.
_LOG_ZERO = -1e30


def _valid_cells(shape: tuple[int, int, int], enc_lengths: jax.Array,
                 label_lengths: jax.Array) -> jax.Array:
    """[B, T, U+1] bool: the cells inside each example's own T_b x (U_b + 1) lattice."""
    _, t_max, u1_max = shape
    t_ok = jnp.arange(t_max)[None, :, None] < enc_lengths[:, None, None]
    u_ok = jnp.arange(u1_max)[None, None, :] <= label_lengths[:, None, None]
    return t_ok & u_ok


def _skew(x: jax.Array) -> jax.Array:
    """[B, T, U+1] -> [T+U, B, U+1] with out[n, b, u] = x[b, n-u, u] (log 0 off the lattice)."""
    _, t_max, u1_max = x.shape
    n = jnp.arange(t_max + u1_max - 1)[:, None]
    u = jnp.arange(u1_max)[None, :]
    t = n - u
    inside = (t >= 0) & (t < t_max)
    gathered = x[:, jnp.clip(t, 0, t_max - 1), u]  # [B, T+U, U+1]
    return jnp.where(inside[None], gathered, _LOG_ZERO).transpose(1, 0, 2)


def transducer_loss_from_logprobs(blank_lp: jax.Array, label_lp: jax.Array,
                                  enc_lengths: jax.Array, label_lengths: jax.Array) -> jax.Array:
    """Per-example loss [B] from the two log-probabilities of every lattice cell.

    blank_lp[b, t, u] = log P(blank | t, u); label_lp[b, t, u] = log P(y_{u+1} | t, u) (its
    last column, u = U, is never used). Example b uses frames t < enc_lengths[b] and labels
    u < label_lengths[b]; whatever lies outside (padding) does not change the loss and gets
    zero gradient. enc_lengths must be >= 1.
    """
    valid = _valid_cells(blank_lp.shape, enc_lengths, label_lengths)
    has_next = jnp.arange(label_lp.shape[2])[None, None, :] < label_lengths[:, None, None]
    # Zero (not log 0) in padding: a finite value that no valid cell ever reads.
    blank_lp = jnp.where(valid, blank_lp, 0.0)
    label_lp = jnp.where(valid & has_next, label_lp, 0.0)
    skew_blank, skew_label = _skew(blank_lp), _skew(label_lp)

    batch, _, u1_max = blank_lp.shape
    first = jnp.full((batch, u1_max), _LOG_ZERO, blank_lp.dtype).at[:, 0].set(0.0)

    def step(alpha, inputs):
        # alpha[:, u] = alpha[n - u, u]; the new diagonal is n + 1.
        blank_n, label_n = inputs
        from_below = alpha + blank_n  # (n-u, u) --blank--> (n+1-u, u)
        from_left = alpha + label_n  # (n-u, u) --label--> (n-u, u+1)
        from_left = jnp.concatenate(
            [jnp.full((batch, 1), _LOG_ZERO, alpha.dtype), from_left[:, :-1]], axis=1)
        new = jnp.logaddexp(from_below, from_left)
        return new, new

    _, later = jax.lax.scan(step, first, (skew_blank[:-1], skew_label[:-1]))
    diagonals = jnp.concatenate([first[None], later], axis=0)  # [T+U, B, U+1]

    # The lattice ends with a blank from (T_b - 1, U_b), which lies on diagonal T_b - 1 + U_b.
    last_t, last_u = enc_lengths - 1, label_lengths
    examples = jnp.arange(batch)
    alpha_end = diagonals[last_t + last_u, examples, last_u]
    return -(alpha_end + blank_lp[examples, last_t, last_u])


def _cell_logprobs(logits: jax.Array, targets: jax.Array, blank: int) -> tuple[jax.Array,
                                                                               jax.Array]:
    """[B, t, U+1, V] logits, [B, U+1] next-label ids -> blank and next-label log-probs."""
    # At least float32: a bfloat16 joint's softmax would lose the small probabilities.
    logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)),
                              axis=-1)
    blank_lp = logp[..., blank]
    index = jnp.broadcast_to(targets[:, None, :, None], logp.shape[:-1] + (1,))
    label_lp = jnp.take_along_axis(logp, index, axis=-1)[..., 0]
    return blank_lp, label_lp


def _next_labels(labels: jax.Array, blank: int) -> jax.Array:
    """[B, U] -> [B, U+1]: the label emitted from column u; column U gets a dummy (blank)."""
    return jnp.pad(labels, ((0, 0), (0, 1)), constant_values=blank)


def transducer_loss_from_logits(logits: jax.Array, labels: jax.Array, enc_lengths: jax.Array,
                                label_lengths: jax.Array, blank: int) -> jax.Array:
    """Per-example loss [B] from full joint logits [B, T, U+1, V] and labels [B, U].

    Materialises the whole joint output: meant for small cases and as the reference the
    chunked transducer_loss is checked against.
    """
    blank_lp, label_lp = _cell_logprobs(logits, _next_labels(labels, blank), blank)
    return transducer_loss_from_logprobs(blank_lp, label_lp, enc_lengths, label_lengths)


def transducer_loss(enc: jax.Array, pred: jax.Array,
                    joint_fn: Callable[[jax.Array, jax.Array], jax.Array], labels: jax.Array,
                    enc_lengths: jax.Array, label_lengths: jax.Array, blank: int,
                    time_chunk: int) -> jax.Array:
    """Per-example loss [B] without ever holding more than time_chunk frames of joint output.

    enc: [B, T, ...] encoder output; pred: [B, U+1, ...] prediction-network output (its row
    u follows the first u labels); joint_fn(enc[:, t0:t0+c], pred) -> logits [B, c, U+1, V].
    joint_fn may close over parameters being differentiated. Each time chunk's joint runs
    under jax.checkpoint, so the backward pass recomputes it instead of storing its logits.
    """
    batch, t_max = enc.shape[:2]
    chunks = -(-t_max // time_chunk)
    padded = jnp.pad(enc, [(0, 0), (0, chunks * time_chunk - t_max)]
                     + [(0, 0)] * (enc.ndim - 2))
    # [chunks, B, c, ...]: scan over chunks, each one a whole-batch slab of frames.
    slabs = padded.reshape((batch, chunks, time_chunk) + enc.shape[2:]).swapaxes(0, 1)
    targets = _next_labels(labels, blank)

    @jax.checkpoint
    def one_chunk(slab):
        return _cell_logprobs(joint_fn(slab, pred), targets, blank)

    def step(carry, slab):
        return carry, one_chunk(slab)

    _, (blank_lp, label_lp) = jax.lax.scan(step, None, slabs)

    def unchunk(x):  # [chunks, B, c, U+1] -> [B, T, U+1]
        return x.swapaxes(0, 1).reshape((batch, chunks * time_chunk) + x.shape[3:])[:, :t_max]

    return transducer_loss_from_logprobs(unchunk(blank_lp), unchunk(label_lp), enc_lengths,
                                         label_lengths)
