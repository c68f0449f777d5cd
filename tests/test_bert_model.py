"""BERT-large: exact size, logical axis names, the reference TF checkpoint format both ways
(checked against a numpy transcription of google-research BERT's forward pass), padding
invariance, the masked-LM metric and loss, and hand-counted FLOPs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import linen as nn

from common.errors import UserError
from models import bert
from models import bert_checkpoint as bc

TINY = bert.tiny_config()  # vocab 97, hidden 32, 2 layers of 4 heads of 8, mlp 64, 64 positions
SHARDING_RULES = [("embed", "fsdp"), ("heads", "model"), ("mlp", "model"), ("vocab", "model")]


def _reference_names(layers):
    """Every model variable of google-research BERT's pretraining graph."""
    names = {
        "bert/embeddings/word_embeddings", "bert/embeddings/position_embeddings",
        "bert/embeddings/token_type_embeddings", "bert/embeddings/LayerNorm/gamma",
        "bert/embeddings/LayerNorm/beta", "bert/pooler/dense/kernel", "bert/pooler/dense/bias",
        "cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
        "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
        "cls/predictions/output_bias", "cls/seq_relationship/output_weights",
        "cls/seq_relationship/output_bias",
    }
    for i in range(layers):
        layer = f"bert/encoder/layer_{i}"
        for dense in ("attention/self/query", "attention/self/key", "attention/self/value",
                      "attention/output/dense", "intermediate/dense", "output/dense"):
            names |= {f"{layer}/{dense}/kernel", f"{layer}/{dense}/bias"}
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            names |= {f"{layer}/{norm}/gamma", f"{layer}/{norm}/beta"}
    return names


def _batch(seq_len, real_lengths, pad_to=None, seed=0):
    """Inputs for rows with the given real lengths; with pad_to, the same rows extended by
    padding (random ids and segments, mask 0) up to pad_to tokens."""
    rng = np.random.default_rng(seed)
    rows = len(real_lengths)
    ids = rng.integers(1, TINY.vocab_size, (rows, seq_len))
    segments = (np.arange(seq_len)[None] >= np.asarray(real_lengths)[:, None] // 2)
    mask = np.arange(seq_len)[None] < np.asarray(real_lengths)[:, None]
    positions = np.stack([rng.choice(n, 3, replace=False) for n in real_lengths])
    if pad_to is not None:
        extra = pad_to - seq_len
        ids = np.concatenate([ids, rng.integers(0, TINY.vocab_size, (rows, extra))], 1)
        segments = np.concatenate([segments, rng.integers(0, 2, (rows, extra))], 1)
        mask = np.concatenate([mask, np.zeros((rows, extra), bool)], 1)
    return tuple(jnp.asarray(a, jnp.int32) for a in (ids, mask, segments, positions))


@pytest.fixture(scope="module")
def tiny():
    """(jitted eval apply(params, *batch), params): initialised, then every value moved off
    its init (zero biases, unit LayerNorm scales) so a swapped or misplaced variable shows."""
    model = bert.Bert(TINY)
    variables = jax.jit(lambda rng: model.init(rng, *_batch(8, [8]), train=False))(
        jax.random.key(0))
    params = nn.unbox(variables)["params"]
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(1)
    params = jax.tree.unflatten(treedef, [
        np.asarray(leaf) + rng.normal(0, 0.05, leaf.shape).astype(np.float32)
        for leaf in leaves])
    apply = jax.jit(lambda params, *batch: model.apply({"params": params}, *batch, train=False))
    return apply, params


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("bert") / "model.ckpt-7")
    bc.write_reference_checkpoint(tiny[1], prefix)
    return prefix


def _reference_forward(tensors, cfg, ids, mask, segments, positions):
    """google-research BERT's pretraining forward pass (eval mode), in float64 numpy,
    straight from the TF variables: a check on both the model and the name mapping."""
    t = {name: np.asarray(value, np.float64) for name, value in tensors.items()}
    ids, mask, segments, positions = (np.asarray(a) for a in (ids, mask, segments, positions))
    def gelu(x):  # modeling.py's: the tanh approximation
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + cfg.layer_norm_eps) * t[f"{name}/gamma"] + t[
            f"{name}/beta"]

    def dense(x, name):
        return x @ t[f"{name}/kernel"] + t[f"{name}/bias"]

    b, s = ids.shape
    n, d = cfg.heads, cfg.hidden // cfg.heads
    x = (t["bert/embeddings/word_embeddings"][ids] + t["bert/embeddings/position_embeddings"][:s]
         + t["bert/embeddings/token_type_embeddings"][segments])
    x = norm(x, "bert/embeddings/LayerNorm")
    adder = (1.0 - mask[:, None, None, :]) * -10000.0
    for i in range(cfg.layers):
        layer = f"bert/encoder/layer_{i}"
        q, k, v = (dense(x, f"{layer}/attention/self/{p}").reshape(b, s, n, d)
                   for p in ("query", "key", "value"))
        scores = np.einsum("bfnd,btnd->bnft", q, k) / math.sqrt(d) + adder
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = np.einsum("bnft,btnd->bfnd", probs, v).reshape(b, s, n * d)
        x = norm(dense(context, f"{layer}/attention/output/dense") + x,
                 f"{layer}/attention/output/LayerNorm")
        y = dense(gelu(dense(x, f"{layer}/intermediate/dense")), f"{layer}/output/dense")
        x = norm(y + x, f"{layer}/output/LayerNorm")
    pooled = np.tanh(dense(x[:, 0], "bert/pooler/dense"))
    nsp = pooled @ t["cls/seq_relationship/output_weights"].T + t[
        "cls/seq_relationship/output_bias"]
    h = np.take_along_axis(x, positions[..., None], axis=1)
    h = norm(gelu(dense(h, "cls/predictions/transform/dense")),
             "cls/predictions/transform/LayerNorm")
    mlm = h @ t["bert/embeddings/word_embeddings"].T + t["cls/predictions/output_bias"]
    return mlm, nsp


def _read_all(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _save(tensors, prefix):
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tensors[n] for n in names])


# --- model structure ---------------------------------------------------------------------


def test_bert_large_parameter_count():
    h, m, vocab, positions, types, layers = 1024, 4096, 30522, 512, 2, 24
    embeddings = (vocab + positions + types) * h + 2 * h  # three tables + LayerNorm
    attention = 4 * (h * h + h)  # query, key, value, output dense
    feed_forward = (h * m + m) + (m * h + h)
    layer = attention + feed_forward + 2 * (2 * h)  # two LayerNorms
    pooler = h * h + h
    mlm_head = (h * h + h) + 2 * h + vocab  # transform dense + LayerNorm + output bias
    nsp_head = h * 2 + 2
    expected = embeddings + layers * layer + pooler + mlm_head + nsp_head
    assert bert.param_count(bert.BertConfig()) == expected == 336_226_108


def test_every_param_has_logical_names_a_sharding_rule_set_can_use():
    params = bert.abstract_variables(TINY)["params"]
    leaves = jax.tree_util.tree_leaves_with_path(
        params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    names = {}
    for path, leaf in leaves:
        key = jax.tree_util.keystr(path, simple=True, separator="/")
        assert isinstance(leaf, nn.LogicallyPartitioned), key
        assert len(leaf.names) == leaf.value.ndim and all(leaf.names), key
        mesh_axes = nn.logical_to_mesh_axes(leaf.names, SHARDING_RULES)  # no duplicates
        # Everything but the 2-wide next-sentence bias is split over some mesh axis.
        assert any(mesh_axes) or key == "nsp_head/bias", key
        names[key] = leaf.names
    assert len(names) == len(_reference_names(TINY.layers))
    assert names["embeddings/word_embeddings"] == ("vocab", "embed")
    assert names["encoder/layer_0/attention/query/kernel"] == ("embed", "heads", "kv")
    assert names["encoder/layer_0/attention/out/kernel"] == ("heads", "kv", "embed")
    assert names["encoder/layer_1/wi/kernel"] == ("embed", "mlp")
    assert names["encoder/layer_1/wo/kernel"] == ("mlp", "embed")
    assert names["mlm_head/output_bias"] == ("vocab",)


def test_config_is_validated():
    with pytest.raises(ValueError, match="not divisible"):
        bert.BertConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="layers"):
        bert.BertConfig(layers=0)


def test_forward_flops_match_a_hand_count():
    # Tiny config, one sequence of 16 tokens with 3 masked: hidden 32, mlp 64, 2 layers.
    projections = 16 * 4 * (2 * 32 * 32)  # query, key, value, out on every token
    feed_forward = 16 * 2 * (2 * 32 * 64)  # up and down
    attention = 2 * (2 * 16 * 16 * 32)  # scores and weighted values
    encoder = 2 * (projections + feed_forward + attention)
    pooler_and_nsp = 2 * 32 * 32 + 2 * 32 * 2
    masked_lm = 3 * (2 * 32 * 32 + 2 * 32 * 97)  # transform and tied logits
    assert encoder == 589_824
    assert bert.forward_flops(TINY, 16, 3) == encoder + pooler_and_nsp + masked_lm == 616_768


def test_appended_padding_changes_no_output(tiny):
    apply, params = tiny
    mlm, nsp = apply(params, *_batch(8, [8, 5]))
    mlm_padded, nsp_padded = apply(params, *_batch(8, [8, 5], pad_to=16))
    np.testing.assert_allclose(mlm_padded, mlm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nsp_padded, nsp, rtol=1e-5, atol=1e-5)


# --- the reference checkpoint ------------------------------------------------------------


def test_checkpoint_round_trip_matches_the_reference_names_and_forward_pass(tiny, checkpoint):
    apply, params = tiny
    shapes = dict(tf.train.list_variables(checkpoint))
    assert set(shapes) == _reference_names(TINY.layers)
    # TF's layouts: q/k/v kernels [hidden, hidden], next-sentence weights [2, hidden].
    assert shapes["bert/encoder/layer_1/attention/self/query/kernel"] == [32, 32]
    assert shapes["bert/encoder/layer_1/attention/self/query/bias"] == [32]
    assert shapes["bert/encoder/layer_1/attention/output/dense/kernel"] == [32, 32]
    assert shapes["cls/seq_relationship/output_weights"] == [2, 32]

    loaded = bc.load_reference_checkpoint(checkpoint, TINY)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for ours, theirs in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)

    batch = _batch(8, [8, 5])
    mlm, nsp = apply(params, *batch)
    mlm_loaded, nsp_loaded = apply(loaded, *batch)
    np.testing.assert_array_equal(mlm_loaded, mlm)
    np.testing.assert_array_equal(nsp_loaded, nsp)
    mlm_ref, nsp_ref = _reference_forward(_read_all(checkpoint), TINY, *batch)
    # float32 lands within ~2e-7 of the float64 reference; the exact (erf) GELU would be
    # ~8e-5 off, so this also pins the reference's tanh approximation.
    np.testing.assert_allclose(mlm, mlm_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(nsp, nsp_ref, rtol=0, atol=1e-5)


def test_optimizer_slots_and_counters_in_the_checkpoint_are_ignored(tiny, checkpoint, tmp_path):
    tensors = _read_all(checkpoint)
    kernel = "bert/pooler/dense/kernel"
    tensors |= {f"{kernel}/adam_m": np.ones_like(tensors[kernel]),
                f"{kernel}/adam_v": np.ones_like(tensors[kernel]),
                "global_step": np.int64(28252), "loss_scale": np.float32(2.0**15)}
    _save(tensors, str(tmp_path / "model.ckpt-28252"))
    loaded = bc.load_reference_checkpoint(str(tmp_path / "model.ckpt-28252"), TINY)
    np.testing.assert_array_equal(loaded["pooler"]["kernel"], tiny[1]["pooler"]["kernel"])


@pytest.mark.parametrize("variable,change,found", [
    ("bert/encoder/layer_1/attention/self/key/bias", "drop", "missing"),
    ("cls/seq_relationship/output_weights", "transpose", "[32, 2]"),
])
def test_a_missing_or_misshapen_variable_is_refused_in_one_line(
        checkpoint, tmp_path, variable, change, found):
    tensors = _read_all(checkpoint)
    if change == "drop":
        del tensors[variable]
    else:
        tensors[variable] = np.ascontiguousarray(tensors[variable].T)
    prefix = str(tmp_path / "model.ckpt-1")
    _save(tensors, prefix)
    with pytest.raises(UserError) as raised:
        bc.load_reference_checkpoint(prefix, TINY)
    message = str(raised.value)
    assert "\n" not in message
    assert prefix in message and variable in message and found in message
    assert "model.ckpt-28252" in message  # the fix: the checkpoint the benchmark needs


def test_a_checkpoint_for_another_config_is_refused(checkpoint):
    with pytest.raises(UserError, match="word_embeddings"):
        bc.load_reference_checkpoint(checkpoint, bert.tiny_config(vocab_size=98))
    with pytest.raises(UserError, match="layer_2"):
        bc.load_reference_checkpoint(checkpoint, bert.tiny_config(layers=3))


def test_an_unreadable_checkpoint_path_is_refused_in_one_line(tmp_path):
    prefix = str(tmp_path / "nowhere" / "model.ckpt-28252")
    with pytest.raises(UserError) as raised:
        bc.load_reference_checkpoint(prefix, TINY)
    assert "\n" not in str(raised.value) and prefix in str(raised.value)


# --- metric and loss ---------------------------------------------------------------------


def test_masked_lm_accuracy_counts_only_weighted_positions():
    labels = jnp.array([[3, 1, 2, 0, 4]])
    weights = jnp.array([[1.0, 1.0, 1.0, 0.0, 0.0]])
    predicted = jnp.array([[3, 1, 0, 0, 4]])  # two of three real right; both padded "right"
    logits = jax.nn.one_hot(predicted, 5) * 10.0
    correct, count = bert.masked_lm_accuracy_sums(logits, labels, weights)
    assert (float(correct), float(count)) == (2.0, 3.0)


def test_pretraining_loss_is_the_weighted_masked_lm_mean_plus_the_nsp_mean():
    vocab = 7
    labels = jnp.array([[1, 2, 0], [3, 0, 0]])
    weights = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # Uniform over the vocabulary at real positions; padded slots confidently wrong, which
    # must not matter.
    mlm_logits = jnp.where(weights[..., None] > 0, 0.0, 50.0 * jax.nn.one_hot(5, vocab))
    nsp_logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(label 0) = 1/2, 3/4
    loss = bert.pretraining_loss(mlm_logits, nsp_logits, labels, weights,
                                 jnp.array([[0], [0]]))
    expected_mlm = math.log(vocab) * 3 / (3 + 1e-5)
    expected_nsp = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    assert float(loss) == pytest.approx(expected_mlm + expected_nsp, rel=1e-6)
