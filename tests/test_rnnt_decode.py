"""Batched greedy transducer decoding: caps, padding, batching, and the real tiny RNN-T."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from models import rnnt
from models.rnnt_decode import greedy_decode

# A hand-built transducer whose greedy output is known by construction. Encoder frame (b, t)
# is the vector [t, b]; the prediction network counts the labels fed to it (u), so its output
# is [u]. `plan[b][t]` symbols are due at frame t: the joint emits token t + 1 while fewer
# than plan[b][0] + ... + plan[b][t] symbols have been emitted, else blank. So each emitted
# token names the frame it was emitted at, and a frame cut short by the per-frame cap leaves
# its remainder to the next frame.
_VOCAB = 32
_BLANK = _VOCAB - 1


def _hand_built(plans: list[list[int]]):
    frames = max(len(p) for p in plans)
    due = np.zeros((len(plans), frames), np.int32)
    for b, plan in enumerate(plans):
        due[b, : len(plan)] = np.cumsum(plan)
    due = jnp.asarray(due)

    def joint_fn(enc_frames, pred_out):
        t, b = enc_frames[:, 0].astype(jnp.int32), enc_frames[:, 1].astype(jnp.int32)
        emit = pred_out[:, 0].astype(jnp.int32) < due[b, t]
        return jax.nn.one_hot(jnp.where(emit, t + 1, _BLANK), _VOCAB)

    def pred_step_fn(labels, fed):
        fed = fed + (labels != _BLANK)
        return fed[:, None].astype(jnp.float32), fed

    t_grid, b_grid = np.meshgrid(np.arange(frames), np.arange(len(plans)))
    enc_p = jnp.asarray(np.stack([t_grid, b_grid], -1), jnp.float32)  # [B, T, 2]
    return joint_fn, pred_step_fn, enc_p


def _decode_hand_built(plans, lengths, **caps):
    joint_fn, pred_step_fn, enc_p = _hand_built(plans)
    run = jax.jit(functools.partial(greedy_decode, joint_fn, pred_step_fn, blank=_BLANK,
                                    **caps))
    tokens, counts = run(jnp.zeros((len(plans),), jnp.int32), enc_p, jnp.asarray(lengths))
    return np.asarray(tokens), np.asarray(counts)


def _rows(tokens, counts):
    return [row[:n].tolist() for row, n in zip(tokens, counts, strict=True)]


def test_caps_padding_and_examples_finishing_apart():
    plans = [
        [2, 0, 1, 5, 0, 2],  # frame 3 wants 5 but the cap is 3: 2 more follow at frame 4
        [1, 1, 1, 4, 4, 4],  # only 3 valid frames: the symbols due later are never emitted
        [4, 4, 4, 4, 4, 4],  # 3 per frame, then the utterance cap (10) cuts it at frame 3
        [0, 0, 0, 0, 0, 1],  # nothing until its last frame
    ]
    lengths = [6, 3, 6, 6]
    tokens, counts = _decode_hand_built(plans, lengths, max_symbols_per_frame=3,
                                        max_symbols=10)
    assert tokens.shape == (4, 10) and tokens.dtype == np.int32
    assert _rows(tokens, counts) == [
        [1, 1, 3, 4, 4, 4, 5, 5, 6, 6],
        [1, 2, 3],
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 4],
        [6],
    ]
    # Padded with blank past each length.
    assert all((row[n:] == _BLANK).all() for row, n in zip(tokens, counts, strict=True))
    # Each row is what that example gives alone: examples that finish early do not change
    # while the others go on.
    for b in range(len(plans)):
        alone, n = _decode_hand_built([plans[b]], [lengths[b]], max_symbols_per_frame=3,
                                      max_symbols=10)
        np.testing.assert_array_equal(alone[0], tokens[b])
        assert n[0] == counts[b]


def test_reference_caps_30_per_frame_300_per_utterance():
    plans = [
        [40, 0, 0] + [0] * 9,  # 30 at frame 0, the other 10 at frame 1
        [30] * 12,  # 360 due; frames 0..9 give 300, the rest nothing
        [5] * 12,  # an encoder length of 0: nothing at all
    ]
    tokens, counts = _decode_hand_built(plans, [12, 12, 0])  # the defaults: 30 and 300
    assert tokens.shape == (3, 300)
    assert _rows(tokens, counts) == [
        [1] * 30 + [2] * 10,
        [t + 1 for t in range(10) for _ in range(30)],
        [],
    ]


# The real tiny RNN-T, its weights scaled so that the random network's argmax moves with the
# frame and the label history (at the reference's initial scale it is one class everywhere):
# LSTM kernels x8, projections x5, a normal output layer, blank's bias 1.
@pytest.fixture(scope="module")
def lively():
    cfg = rnnt.tiny_config()
    variables = nn.unbox(jax.jit(functools.partial(rnnt.init_variables, cfg))(
        jax.random.key(2)))
    out = jax.random.normal(jax.random.key(102), (cfg.joint_hidden, cfg.vocab_size)) * 3.0

    def scale(path, x):
        name = jax.tree_util.keystr(path)
        if "cell" in name and "kernel" in name:
            return x * 8.0
        if "_proj" in name and "kernel" in name:
            return x * 5.0
        if "'out'" in name:
            return out if "kernel" in name else x.at[cfg.blank].set(1.0)
        return x

    return cfg, jax.tree_util.tree_map_with_path(scale, variables)


def _reference_decoder(cfg, variables, per_frame, per_utterance):
    """Decodes one example, unpadded, in plain Python. The prediction output after each
    emitted prefix comes from `predict` over the whole prefix (the training path), not from
    pred_step."""
    model = rnnt.RNNT(cfg)

    @jax.jit
    def encode(feats):
        enc, _ = model.apply(variables, feats[None], jnp.array([feats.shape[0]]), True,
                             method=model.encode)
        return model.apply(variables, enc, method=lambda m, x: m.enc_proj(x))[0]

    @jax.jit
    def pred_after(prefix, u):  # prefix padded to per_utterance; `predict` is causal
        rows = model.apply(variables, prefix[None], True, method=model.predict)
        return model.apply(variables, rows[0, u], method=lambda m, x: m.pred_proj(x))

    @jax.jit
    def logits(frame, pred_p):
        return model.apply(variables, frame[None, None], pred_p[None, None],
                           method=model.joint)[0, 0, 0]

    def decode(feats):
        emitted = []
        prefix = np.zeros((per_utterance,), np.int32)
        pred_p = pred_after(prefix, 0)
        for frame in encode(feats):  # ceil(length / stack) frames
            at_frame = 0
            while at_frame < per_frame and len(emitted) < per_utterance:
                k = int(jnp.argmax(logits(frame, pred_p)))
                if k == cfg.blank:
                    break
                prefix[len(emitted)] = k
                emitted.append(k)
                at_frame += 1
                pred_p = pred_after(prefix, len(emitted))
        return emitted

    return decode


def test_tiny_rnnt_batched_equals_step_by_step_reference(lively):
    cfg, variables = lively
    feats = 2.0 * jax.random.normal(jax.random.key(1), (3, 13, cfg.features))
    lengths = jnp.array([13, 7, 10])
    caps = dict(max_symbols_per_frame=3, max_symbols=16)
    tokens, counts = jax.jit(functools.partial(rnnt.decode, cfg, **caps))(
        variables, feats, lengths)
    got = _rows(np.asarray(tokens), np.asarray(counts))
    reference = _reference_decoder(cfg, variables, per_frame=3, per_utterance=16)
    expected = [reference(feats[b, : int(lengths[b])]) for b in range(3)]
    assert got == expected
    # The case is not trivial: lengths differ, one example reaches the utterance cap, and
    # the output holds several classes.
    assert len({len(row) for row in got}) > 1 and max(len(row) for row in got) == 16
    assert len({k for row in got for k in row}) >= 4


def test_pred_step_equals_predict(lively):
    cfg, variables = lively
    model = rnnt.RNNT(cfg)
    labels = jnp.array([[1, 2, 3, 4, 0], [5, 6, 0, 9, 9]])
    full = model.apply(variables, labels, True, method=model.predict)
    expected = model.apply(variables, full, method=lambda m, x: m.pred_proj(x))

    state = rnnt.pred_init_state(cfg, labels.shape[0])
    feed = jnp.full((labels.shape[0],), cfg.blank)
    steps = []
    for u in range(labels.shape[1] + 1):
        out, state = model.apply(variables, feed, state, method=model.pred_step)
        steps.append(out)
        if u < labels.shape[1]:
            feed = labels[:, u]
    np.testing.assert_allclose(jnp.stack(steps, axis=1), expected, atol=1e-5, rtol=1e-5)
    # The comparison can fail: the rows differ from one label to the next.
    assert float(jnp.max(jnp.abs(expected[:, 1:] - expected[:, :-1]))) > 1e-2
