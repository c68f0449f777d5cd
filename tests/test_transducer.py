"""The transducer loss against a brute-force sum over alignments, the published warp-transducer
small case, finite differences, and the chunked path's memory."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from models.transducer import (
    transducer_loss,
    transducer_loss_from_logits,
    transducer_loss_from_logprobs,
)

BLANK = 0


def _brute_force(logits: np.ndarray, labels: np.ndarray, t_len: int, u_len: int) -> float:
    """-log of the summed probability of every alignment, enumerated one by one.

    An alignment is T blanks and U labels in some order, ending with a blank; the label slots
    are any U of the first T + U - 1 moves."""
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    path_logps = []
    for label_moves in itertools.combinations(range(t_len + u_len - 1), u_len):
        t = u = 0
        total = 0.0
        for move in range(t_len + u_len):
            if move in label_moves:
                total += logp[t, u, labels[u]]
                u += 1
            else:
                total += logp[t, u, BLANK]
                t += 1
        assert (t, u) == (t_len, u_len)
        path_logps.append(total)
    return -float(np.logaddexp.reduce(path_logps))


def _padded_batch(rng, lengths, t_max, u_max, vocab):
    """Random logits and labels, with NaN and huge values where padding lies."""
    batch = len(lengths)
    logits = rng.normal(size=(batch, t_max, u_max + 1, vocab)) * 2
    labels = rng.integers(1, vocab, size=(batch, u_max))
    for b, (t_len, u_len) in enumerate(lengths):
        logits[b, t_len:] = np.nan
        logits[b, :, u_len + 1:] = 1e6
        labels[b, u_len:] = vocab + 7  # not even a class: padding must never be read
    t_lens = np.array([t for t, _ in lengths])
    u_lens = np.array([u for _, u in lengths])
    return logits, labels, t_lens, u_lens


def test_equals_the_sum_over_all_alignments():
    rng = np.random.default_rng(0)
    lengths = [(t, u) for t in (1, 2, 3, 4) for u in (0, 1, 2, 3)]
    logits, labels, t_lens, u_lens = _padded_batch(rng, lengths, 4, 3, 5)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(transducer_loss_from_logits, static_argnums=4)(
            jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(t_lens), jnp.asarray(u_lens),
            BLANK))
    want = [_brute_force(logits[b, :t, :u + 1], labels[b, :u], t, u)
            for b, (t, u) in enumerate(lengths)]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    print(f"brute force: max |error| {np.max(np.abs(got - want)):.2e} over {len(lengths)} cases")


# The warp-transducer small test (1 x T=2 x U+1=3 x V=5, labels [1, 2], blank 0), as published
# with its loss and its gradient with respect to the logits.
WARP_ACTS = np.array([0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.2, 0.8, 0.1,
                      0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1, 0.7, 0.1, 0.2, 0.1, 0.1],
                     np.float32).reshape(1, 2, 3, 5)
WARP_GRADS = np.array([
    -0.13116688, -0.3999269, 0.17703125, 0.17703125, 0.17703125,
    -0.18572757, 0.12247056, -0.18168412, 0.12247056, 0.12247056,
    -0.32091254, 0.06269141, 0.06928472, 0.12624499, 0.06269141,
    0.05456069, -0.21824276, 0.05456069, 0.05456069, 0.05456069,
    0.12073959, 0.12073959, -0.48295835, 0.12073959, 0.12073959,
    -0.6925882, 0.16871116, 0.18645467, 0.16871116, 0.16871116]).reshape(1, 2, 3, 5)


def test_reproduces_the_warp_transducer_small_case():
    def loss(acts):
        return transducer_loss_from_logits(acts, jnp.array([[1, 2]]), jnp.array([2]),
                                           jnp.array([2]), BLANK).sum()

    value, grads = jax.jit(jax.value_and_grad(loss))(jnp.asarray(WARP_ACTS))
    print(f"warp-transducer small case: loss {float(value):.6f}")
    assert abs(float(value) - 4.495666) < 1e-5
    np.testing.assert_allclose(grads, WARP_GRADS, atol=1e-6)


def _central_differences(f, x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (f(up) - f(down)) / (2 * step)
    return grad


def _tiny_joint(weights):
    w_enc, w_pred, w_out = weights

    def joint(enc, pred):  # [B, t, E], [B, U+1, P] -> [B, t, U+1, V]
        hidden = jnp.tanh((enc @ w_enc)[:, :, None] + (pred @ w_pred)[:, None])
        return hidden @ w_out
    return joint


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    lengths = [(3, 2), (2, 1)]
    logits, labels, t_lens, u_lens = _padded_batch(rng, lengths, 3, 2, 4)
    logits = np.nan_to_num(logits, nan=3.0)  # differences must stay finite in the padding
    scale = rng.uniform(0.5, 2.0, size=len(lengths))  # weights expose per-example gradients
    enc, pred = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 3, 2))
    weights = [rng.normal(size=s) for s in [(3, 4), (2, 4), (4, 4)]]
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (labels, t_lens, u_lens)]

        @jax.jit
        def from_logits(x):
            return (transducer_loss_from_logits(x, *args, BLANK) * scale).sum()

        @jax.jit
        def from_joint(enc, pred):
            return (transducer_loss(enc, pred, _tiny_joint(weights), *args, BLANK, time_chunk=2)
                    * scale).sum()

        errors = []
        for f, argnums, inputs in [(from_logits, 0, [logits]), (from_joint, (0, 1), [enc, pred])]:
            grads = jax.grad(f, argnums=argnums)(*inputs)
            grads = grads if isinstance(grads, tuple) else (grads,)
            for k, grad in enumerate(grads):
                def f_k(x, k=k, f=f, inputs=inputs):
                    return float(f(*[x if j == k else v for j, v in enumerate(inputs)]))
                numeric = _central_differences(f_k, inputs[k])
                errors.append(np.max(np.abs(np.asarray(grad) - numeric)))
                np.testing.assert_allclose(grad, numeric, atol=1e-7)
        # Padding gets exactly zero gradient.
        grad = jax.grad(from_logits)(logits)
        assert not np.any(grad[0, 3:]) and not np.any(grad[1, 2:]) and not np.any(grad[1, :, 2:])
    print(f"finite differences: max |error| {max(errors):.2e}")


def test_chunked_joint_equals_full_logits():
    rng = np.random.default_rng(2)
    lengths = [(7, 3), (4, 0), (5, 2)]
    _, labels, t_lens, u_lens = _padded_batch(rng, lengths, 7, 3, 6)
    enc, pred = rng.normal(size=(3, 7, 5)), rng.normal(size=(3, 4, 3))
    weights = [rng.normal(size=s) for s in [(5, 8), (3, 8), (8, 6)]]
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (labels, t_lens, u_lens)]

        def chunked(enc, pred, weights):
            return transducer_loss(enc, pred, _tiny_joint(weights), *args, BLANK, time_chunk=3)

        def full(enc, pred, weights):
            return transducer_loss_from_logits(_tiny_joint(weights)(enc, pred), *args, BLANK)

        inputs = [jnp.asarray(enc), jnp.asarray(pred), [jnp.asarray(w) for w in weights]]
        np.testing.assert_allclose(jax.jit(chunked)(*inputs), jax.jit(full)(*inputs), rtol=1e-12)
        grads = [jax.jit(jax.grad(lambda *a, f=f: f(*a).sum(), argnums=(0, 1, 2)))(*inputs)
                 for f in (chunked, full)]
        for a, b in zip(*map(jax.tree.leaves, grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_without_labels_the_loss_is_the_blanks_alone():
    # U = 0 everywhere: the only alignment is T blanks, so the loss is their summed -log p.
    blank_lp = -jnp.arange(1.0, 13.0).reshape(2, 3, 2)
    label_lp = jnp.full((2, 3, 2), jnp.nan)
    loss = jax.jit(transducer_loss_from_logprobs)(blank_lp, label_lp, jnp.array([3, 2]),
                                                  jnp.array([0, 0]))
    np.testing.assert_allclose(loss, [1 + 3 + 5, 7 + 9])


def _train_step_temp_bytes(batch, t_max, u_max, vocab, hidden, time_chunk):
    """XLA's temp-buffer estimate for loss + gradients through a joint of the given size."""
    def loss(enc, pred, weights, labels, t_lens, u_lens):
        return transducer_loss(enc, pred, _tiny_joint(weights), labels, t_lens, u_lens, BLANK,
                               time_chunk).mean()

    f32 = jnp.float32
    shapes = (jax.ShapeDtypeStruct((batch, t_max, hidden), f32),
              jax.ShapeDtypeStruct((batch, u_max + 1, hidden), f32),
              [jax.ShapeDtypeStruct(s, f32) for s in [(hidden, hidden), (hidden, hidden),
                                                       (hidden, vocab)]],
              jax.ShapeDtypeStruct((batch, u_max), jnp.int32),
              jax.ShapeDtypeStruct((batch,), jnp.int32), jax.ShapeDtypeStruct((batch,), jnp.int32))
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    return step.lower(*shapes).compile().memory_analysis().temp_size_in_bytes


def test_chunked_loss_never_holds_the_whole_joint():
    # Without the remat per chunk this comes to about 99 MB; with it, about 14 MB.
    batch, t_max, u_max, vocab, time_chunk = 2, 200, 50, 1024, 8
    joint_bytes = batch * t_max * (u_max + 1) * vocab * 4
    temp = _train_step_temp_bytes(batch, t_max, u_max, vocab, 32, time_chunk)
    print(f"B={batch} T={t_max} U={u_max} V={vocab}: full joint {joint_bytes / 1e6:.1f} MB, "
          f"chunked loss+grad temp {temp / 1e6:.1f} MB (chunk {time_chunk})")
    assert temp < joint_bytes / 4
