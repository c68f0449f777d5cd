"""Transformer-big and its beam search: exact size, axis names, packing, the decode cache,
hand-counted FLOPs, and search results checked against greedy, brute force and a model
trained for a few hundred steps to reverse token strings."""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from models import beam_search as bs
from models import transformer as tr

EOS = tr.EOS_ID
VOCAB, SRC_LEN, MAX_DECODE_LEN = 16, 10, 14  # the toy reversal task


def _init(config, src_len=8, tgt_len=8):
    # Jitted throughout: op-by-op Flax on CPU spends seconds compiling each small op.
    model = tr.Transformer(config)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.ones((2, src_len), jnp.int32),
                                    jnp.ones((2, tgt_len), jnp.int32))
    return model, nn.unbox(variables)["params"]


def _search_fns(model, params, max_decode_len, beam_sizes):
    """Jitted greedy(inputs, length_limit) and beam(inputs, length_limit, alpha) per beam
    size; alpha is traced, so one compilation serves every alpha."""

    def search(inputs, length_limit, alpha=None, beam_size=None):
        rows = beam_size or 1  # greedy: one row per example
        encoded = model.apply({"params": params}, inputs, method=tr.Transformer.encode)
        encoded, inputs = bs.tile_beams(encoded, rows), bs.tile_beams(inputs, rows)
        cache = tr.init_cache(model.config, params, encoded, inputs, max_decode_len)
        decoder = tr.Transformer(dataclasses.replace(model.config, decode=True))

        def tokens_to_logits(ids, cache):
            logits, variables = decoder.apply(
                {"params": params, "cache": cache}, encoded, inputs, ids,
                method=tr.Transformer.decode, mutable=["cache"])
            return logits[:, 0], variables["cache"]

        common = dict(batch_size=inputs.shape[0] // rows, eos_id=EOS,
                      max_decode_len=max_decode_len, length_limit=length_limit)
        if beam_size is None:
            return bs.greedy_search(tokens_to_logits, cache, **common)
        return bs.beam_search(tokens_to_logits, cache, beam_size=beam_size, alpha=alpha,
                              **common)

    beams = {k: jax.jit(functools.partial(search, beam_size=k)) for k in beam_sizes}
    return jax.jit(search), beams


def _log_prob_fn(model, params):
    """Jitted (inputs, sequences) -> (sum of log p(token) up to and including the first
    EOS, that length), from one teacher-forced pass without the cache."""

    @jax.jit
    def log_prob(inputs, sequences):
        log_probs = jax.nn.log_softmax(model.apply({"params": params}, inputs, sequences))
        token_log_probs = jnp.take_along_axis(log_probs, sequences[..., None], -1)[..., 0]
        length = bs.decoded_length(sequences, EOS)
        in_sequence = jnp.arange(sequences.shape[1])[None] < length[:, None]
        return jnp.sum(token_log_probs * in_sequence, -1), length

    return log_prob


# --- model structure ---------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [32768, 33708])
def test_transformer_big_parameter_count_matches_the_formula(vocab):
    config = tr.TransformerConfig(vocab_size=vocab)
    model = tr.Transformer(config)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 8), jnp.int32),
                            jnp.ones((1, 8), jnp.int32))
    counted = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)["params"]))
    assert counted == tr.param_count(config)
    if vocab == 32768:
        # ~210M: Transformer-big with one embedding shared by source, target and logits.
        assert counted == 209_915_904


def test_every_param_has_logical_axis_names_of_its_rank():
    model = tr.Transformer(tr.tiny_config(40))
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 8), jnp.int32),
                            jnp.ones((1, 8), jnp.int32))["params"]
    leaves = jax.tree_util.tree_leaves_with_path(
        params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    names = {}
    for path, leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned), path
        assert len(leaf.names) == leaf.value.ndim, path
        names[jax.tree_util.keystr(path, simple=True, separator="/")] = leaf.names
    assert names["embed/embedding"] == ("vocab", "embed")
    attention = "decoder/layer_0/cross_attention"
    assert names[f"{attention}/query/kernel"] == ("embed", "heads", "kv")
    assert names[f"{attention}/value/bias"] == ("heads", "kv")
    assert names[f"{attention}/out/kernel"] == ("heads", "kv", "embed")
    assert names["encoder/layer_0/mlp/wi/kernel"] == ("embed", "mlp")
    assert names["encoder/layer_0/mlp/wo/kernel"] == ("mlp", "embed")
    assert names["encoder/norm/scale"] == ("embed",)
    # Tensor parallelism splits exactly the attention heads and the MLP's hidden units.
    split = {n for leaf_names in names.values() for n in leaf_names} & {"heads", "mlp"}
    assert split == {"heads", "mlp"}


def test_packed_examples_give_the_logits_of_each_example_alone():
    model, params = _init(tr.tiny_config(40))
    apply = jax.jit(lambda *args: model.apply({"params": params}, *args))
    src = [np.array([5, 6, 7, 8, 9]), np.array([10, 11, 12])]
    tgt = [np.array([13, 14, 15, EOS]), np.array([16, 17, 18, 19, 20, EOS])]

    def pack(parts, length):
        tokens, positions, segments = (np.zeros((1, length), np.int32) for _ in range(3))
        start = 0
        for segment, part in enumerate(parts, start=1):
            end = start + len(part)
            tokens[0, start:end], positions[0, start:end] = part, np.arange(len(part))
            segments[0, start:end] = segment
            start = end
        return tokens, positions, segments

    inputs, inputs_pos, inputs_seg = pack(src, 10)
    targets, targets_pos, targets_seg = pack(tgt, 12)
    packed = apply(inputs, targets, inputs_pos, targets_pos, inputs_seg, targets_seg)[0]
    start = 0
    for s, t in zip(src, tgt, strict=True):
        alone = apply(np.pad(s, (0, 10 - len(s)))[None], np.pad(t, (0, 12 - len(t)))[None])[0]
        np.testing.assert_allclose(packed[start:start + len(t)], alone[:len(t)], atol=1e-5)
        start += len(t)


def test_cached_decoding_matches_teacher_forcing():
    model, params = _init(tr.tiny_config(40))
    inputs = jnp.array([[5, 6, 7, 8, 9, 0], [10, 11, 0, 0, 0, 0]], jnp.int32)
    targets = jnp.array([[12, 13, 14, 15, 16, EOS, 17], [18, 19, 20, 21, 22, 23, 24]], jnp.int32)
    full = jax.jit(model.apply)({"params": params}, inputs, targets)
    encoded = jax.jit(functools.partial(model.apply, method=tr.Transformer.encode))(
        {"params": params}, inputs)
    cache = jax.jit(tr.init_cache, static_argnums=(0, 4))(
        model.config, params, encoded, inputs, targets.shape[1])
    decoder = tr.Transformer(dataclasses.replace(model.config, decode=True))

    @jax.jit
    def step(ids, cache):
        logits, variables = decoder.apply({"params": params, "cache": cache}, encoded, inputs,
                                          ids, method=tr.Transformer.decode, mutable=["cache"])
        return logits[:, 0], variables["cache"]

    previous = jnp.zeros((2, 1), jnp.int32)  # BOS
    for i in range(targets.shape[1]):
        logits, cache = step(previous, cache)
        np.testing.assert_allclose(logits, full[:, i], atol=1e-5, err_msg=f"step {i}")
        previous = targets[:, i:i + 1]
    assert int(cache["decoder"]["index"]) == targets.shape[1]


@pytest.mark.parametrize("shape,tolerance", [
    (dict(), 0.10),
    (dict(emb_dim=64, qkv_dim=64, num_heads=4, mlp_dim=256), 0.04),
])
def test_hand_counted_flops_match_xla_on_cpu(shape, tolerance):
    config = tr.tiny_config(128, **shape)
    model = tr.Transformer(config)
    inputs, targets = jnp.ones((1, 16), jnp.int32), jnp.ones((1, 12), jnp.int32)
    variables = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), inputs, targets))
    cost = jax.jit(model.apply).lower(variables, inputs, targets).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    ours = tr.forward_flops(config, 16, 12)
    # The formula counts matmuls only; XLA adds LayerNorm, softmax, biases and ReLU:
    # 7 % more at emb_dim 32, 3 % at 64, shrinking as the matmuls grow with the width.
    assert ours <= xla
    assert (xla - ours) / xla < tolerance


def test_transformer_big_flops_are_two_per_parameter_per_token_plus_attention():
    # With 64 tokens a side every weight multiplies 64 activations: source tokens meet
    # the encoder and the cross-attention keys/values, target tokens the rest and the
    # tied logits. Attention's score/value matmuls add ~1 %; biases and norms cost ~0.
    config = tr.TransformerConfig(vocab_size=32768)
    ratio = tr.forward_flops(config, 64, 64) / (2 * 64 * tr.param_count(config))
    assert 1.005 < ratio < 1.02, ratio


# --- search ------------------------------------------------------------------------------


@pytest.mark.parametrize("trained", [False, True])
def test_beam_of_one_is_greedy_search(trained, request):
    # A hypothesis finishes only when its EOS is within the beam, so a one-wide beam
    # follows greedy's path. With alpha = 0 it then stops where greedy stops; with
    # alpha > 0 it may go on to a longer hypothesis that scores better after the
    # length penalty, so there it can only match or beat greedy.
    if trained:
        greedy, beams = request.getfixturevalue("reverser_search")
    else:
        greedy, beams = _search_fns(*_init(tr.tiny_config(VOCAB)), MAX_DECODE_LEN, [1])
    rng = np.random.default_rng(0)
    lengths = []
    for alpha in (0.0, 0.6):
        for _ in range(2):
            inputs, _ = _reverse_batch(rng, 8)
            limit = rng.integers(3, 18, 8).astype(np.int32)  # some past the buffer
            greedy_seqs, greedy_log_probs = greedy(inputs, limit)
            beam_seqs, beam_scores = beams[1](inputs, limit, alpha)
            greedy_lengths = bs.decoded_length(greedy_seqs, EOS)
            greedy_scores = bs.sequence_score(greedy_log_probs, greedy_lengths, alpha)
            if alpha == 0:
                np.testing.assert_array_equal(beam_seqs[:, 0], greedy_seqs)
                np.testing.assert_allclose(beam_scores[:, 0], greedy_scores, rtol=1e-5)
                lengths += list(np.asarray(greedy_lengths))
            else:
                assert np.all(beam_scores[:, 0] >= greedy_scores - 1e-5)
    assert len(set(lengths)) > 2, lengths  # not all stopping at once: a real comparison


def _markov_logits(vocab, seed):
    """A toy model whose next token depends on the previous two. The older one lives in
    the cache, so a result is right only if cache rows follow their beams."""
    table = np.random.default_rng(seed).normal(size=(vocab, vocab, vocab)).astype(np.float32)

    def tokens_to_logits(ids, cache):
        logits = jnp.asarray(table)[cache["before_last"], ids[:, 0]]
        # A scalar leaf, like the Transformer's step counter, is carried, not gathered.
        return logits, {"before_last": ids[:, 0], "steps": cache["steps"] + 1}

    def empty_cache(rows):
        return {"before_last": jnp.zeros((rows,), jnp.int32), "steps": jnp.zeros((), jnp.int32)}

    return table, tokens_to_logits, empty_cache


def test_unpruned_beam_search_finds_the_brute_force_best():
    # At most 3**3 * 4 candidates a step, all within a 128-wide beam: nothing is pruned.
    vocab, max_len, alpha, beam = 4, 4, 0.6, 128
    table, tokens_to_logits, empty_cache = _markov_logits(vocab, seed=3)
    log_probs = np.asarray(jax.nn.log_softmax(table))
    hypotheses = []
    for length in range(1, max_len + 1):
        for prefix in itertools.product([t for t in range(vocab) if t != EOS], repeat=length - 1):
            tokens = (0, 0, *prefix, EOS)
            total = sum(log_probs[tokens[j - 2], tokens[j - 1], tokens[j]]
                        for j in range(2, len(tokens)))
            hypotheses.append((total / ((5 + length) / 6) ** alpha, tokens[2:]))
    hypotheses.sort(reverse=True)
    sequences, scores = jax.jit(functools.partial(
        bs.beam_search, tokens_to_logits, batch_size=1, beam_size=beam, alpha=alpha,
        eos_id=EOS, max_decode_len=max_len))(empty_cache(beam))
    found = int(np.isfinite(scores[0]).sum())
    assert found >= 3
    for (score, tokens), got, got_score in zip(hypotheses, sequences[0], scores[0][:found],
                                               strict=False):
        np.testing.assert_array_equal(got, np.pad(tokens, (0, max_len - len(tokens))))
        np.testing.assert_allclose(got_score, score, rtol=1e-5)


def test_length_limit_forces_eos():
    table, tokens_to_logits, empty_cache = _markov_logits(vocab=8, seed=0)
    # EOS (and PAD) so unlikely that only the limit ends a sentence.
    table[..., EOS] = table[..., 0] = -1e4
    limit = jnp.array([2, 3, 6, 9], jnp.int32)  # 9 is past the buffer: never forced
    search = dict(batch_size=4, eos_id=EOS, max_decode_len=7, length_limit=limit)
    sequences, scores = bs.beam_search(tokens_to_logits, empty_cache(16), beam_size=4,
                                       alpha=0.6, **search)
    greedy, _ = bs.greedy_search(tokens_to_logits, empty_cache(4), **search)
    for b, n in enumerate([2, 3, 6]):
        expected_eos = np.arange(7) == n - 1
        np.testing.assert_array_equal(sequences[b] == EOS, np.tile(expected_eos, (4, 1)))
        assert np.all(sequences[b, :, n:] == 0) and np.all(sequences[b, :, :n - 1] != 0)
        np.testing.assert_array_equal(greedy[b] == EOS, expected_eos)
        assert np.all(np.isfinite(scores[b]))
    # Unlimited and unfinished: the fallback returns the full-length alive hypotheses.
    assert not np.any(sequences[3] == EOS) and np.all(sequences[3] != 0)
    assert np.all(np.isfinite(scores[3])) and np.all(scores[3, :-1] >= scores[3, 1:])
    assert not np.any(greedy[3] == EOS)


# --- search on a trained model -----------------------------------------------------------


def _reverse_batch(rng, batch, min_len=2, max_len=7):
    inputs = np.zeros((batch, SRC_LEN), np.int32)
    targets = np.zeros((batch, SRC_LEN + 1), np.int32)
    for row, n in enumerate(rng.integers(min_len, max_len + 1, batch)):
        tokens = rng.integers(2, VOCAB, n)
        inputs[row, :n], targets[row, :n], targets[row, n] = tokens, tokens[::-1], EOS
    return inputs, targets


@pytest.fixture(scope="module")
def reverser():
    """A tiny Transformer trained to reverse its input, a few seconds on CPU."""
    config = tr.tiny_config(VOCAB, dropout_rate=0.0, attention_dropout_rate=0.0)
    model, params = _init(config, SRC_LEN, SRC_LEN + 1)
    optimizer = optax.adam(3e-3)

    @jax.jit
    def train_step(params, opt_state, inputs, targets):
        def loss_fn(params):
            logits = model.apply({"params": params}, inputs, targets)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
            return (losses * (targets != 0)).sum() / (targets != 0).sum()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(0)
    opt_state = optimizer.init(params)
    for _ in range(400):
        params, opt_state, loss = train_step(params, opt_state, *_reverse_batch(rng, 64))
    assert loss < 0.5, float(loss)
    return model, params


@pytest.fixture(scope="module")
def reverser_search(reverser):
    return _search_fns(*reverser, MAX_DECODE_LEN, [1, 4])


def test_translate_reverses_after_training(reverser):
    model, params = reverser
    inputs, targets = _reverse_batch(np.random.default_rng(1), 32)
    translate = jax.jit(functools.partial(tr.translate, model, beam_size=4, alpha=0.6,
                                          max_decode_len=12, extra_length=2))
    outputs = np.asarray(translate(params, inputs))
    assert outputs.shape == (32, 12)
    assert np.mean(np.all(outputs[:, :SRC_LEN + 1] == targets, axis=1)) > 0.8
    # Nothing longer than the source plus extra_length, EOS included.
    assert np.all(bs.decoded_length(outputs, EOS) <= (inputs != 0).sum(1) + 2)


def test_beam_search_never_scores_below_greedy_on_a_trained_model(reverser, reverser_search):
    greedy, beams = reverser_search
    log_prob_of, alpha = _log_prob_fn(*reverser), 0.6
    rng = np.random.default_rng(2)
    for _ in range(3):
        # Longer than anything seen in training, so the model hesitates and beams differ.
        inputs, _ = _reverse_batch(rng, 16, min_len=5, max_len=SRC_LEN)
        limit = (inputs != 0).sum(1) + 3
        greedy_seqs, greedy_log_probs = greedy(inputs, limit)
        beam_seqs, beam_scores = beams[4](inputs, limit, alpha)
        greedy_scores = bs.sequence_score(
            greedy_log_probs, bs.decoded_length(greedy_seqs, EOS), alpha)
        assert np.all(beam_scores[:, 0] >= greedy_scores - 1e-5)
        assert np.all(beam_scores[:, :-1] >= beam_scores[:, 1:])  # best first
        # The scores are what the model, run without the cache, says of the sequences.
        assert np.all(np.isfinite(beam_scores[:, 0]))
        for k in range(2):  # empty slots (-inf) of an early-stopped search are left out
            log_prob, length = log_prob_of(inputs, beam_seqs[:, k])
            finite = np.isfinite(beam_scores[:, k])
            expected = bs.sequence_score(log_prob, length, alpha)
            np.testing.assert_allclose(beam_scores[finite, k], expected[finite], rtol=1e-4)
        log_prob, _ = log_prob_of(inputs, greedy_seqs)
        np.testing.assert_allclose(greedy_log_probs, log_prob, rtol=1e-4, atol=1e-5)
