"""BERT in Flax: the MLPerf language-model (Wikipedia masked-LM) reference model, BERT-large.

google-research BERT with post-LayerNorm residual blocks: word + learned position +
token-type embeddings, summed and layer-normed; each encoder layer is self-attention then
a GELU feed-forward, each followed by dropout, the residual and LayerNorm. On top: the
pooler (tanh dense of the first token), the masked-LM head (dense + GELU + LayerNorm on
the gathered masked positions, then logits tied to the word embeddings plus a bias) and
the next-sentence head (dense to 2).

Inputs (int32): input_ids, input_mask (1 real, 0 padding) and segment_ids [batch, seq];
masked_lm_positions [batch, predictions]. Outputs (float32): masked-LM logits
[batch, predictions, vocab] and next-sentence logits [batch, 2]. Dropout draws from the
"dropout" rng; train=False is deterministic.

Params are float32, activations config.dtype; attention scores, softmax and logits are
float32. Every param carries logical axis names (vocab, embed, heads, kv, mlp, plus
position, token_type and classes, which no sharding rule needs to map) so the runner can
shard them. The param tree mirrors the TF checkpoint's variables one to one; see
models.bert_checkpoint for the mapping.
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

# The reference's additive bias on padded keys: exp(-10000) underflows to exactly 0 in
# float32, so padding gets no weight, and it stays finite (no inf - inf NaNs).
_MASK_BIAS = -10000.0
NSP_CLASSES = 2  # next-sentence prediction: is sentence B the true continuation or not


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_dim: int = 4096
    max_position: int = 512
    type_vocab: int = 2
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    layer_norm_eps: float = 1e-12
    dtype: Any = jnp.float32  # compute dtype; params stay float32
    # The MLCommons TF reference's modeling.py uses the tanh approximation of GELU (the
    # first google-research release used erf). The closed division trains the reference's
    # math, so tanh it is; False gives the exact erf form.
    approximate_gelu: bool = True

    def __post_init__(self):
        sizes = dict(vocab_size=self.vocab_size, hidden=self.hidden, layers=self.layers,
                     heads=self.heads, mlp_dim=self.mlp_dim, max_position=self.max_position,
                     type_vocab=self.type_vocab)
        for name, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} not divisible by {self.heads} heads")
        for name in ("dropout_rate", "attention_dropout_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def tiny_config(**overrides) -> BertConfig:
    """CPU-sized for tests: two layers of four heads of 8."""
    shape = dict(vocab_size=97, hidden=32, layers=2, heads=4, mlp_dim=64, max_position=64)
    return BertConfig(**(shape | overrides))


def _boxed(init, names):
    return nn.with_logical_partitioning(init, names)


# tf.truncated_normal_initializer(0.02): the std of the normal *before* truncation at two
# standard deviations, which is also what jax's truncated_normal scales by.
_kernel_init = nn.initializers.truncated_normal(0.02)


def _layer_norm(cfg, name):
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=jnp.float32, name=name,
        scale_init=_boxed(nn.initializers.ones, ("embed",)),
        bias_init=_boxed(nn.initializers.zeros, ("embed",)))


def _dense(cfg, features, axis, kernel_names, bias_names, name):
    return nn.DenseGeneral(
        features=features, axis=axis, dtype=cfg.dtype, param_dtype=jnp.float32, name=name,
        kernel_init=_boxed(_kernel_init, kernel_names),
        bias_init=_boxed(nn.initializers.zeros, bias_names))


def _gelu(cfg, x):
    return jax.nn.gelu(x, approximate=cfg.approximate_gelu)


class Embeddings(nn.Module):
    """The three embedding tables and their LayerNorm; `attend` gives the tied logits."""

    config: BertConfig

    def setup(self):
        cfg = self.config

        def table(name, rows, row_axis):
            return self.param(name, _boxed(_kernel_init, (row_axis, "embed")),
                              (rows, cfg.hidden), jnp.float32)

        self.word_embeddings = table("word_embeddings", cfg.vocab_size, "vocab")
        self.position_embeddings = table("position_embeddings", cfg.max_position, "position")
        self.token_type_embeddings = table("token_type_embeddings", cfg.type_vocab,
                                           "token_type")
        self.layer_norm = _layer_norm(cfg, "layer_norm")
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def __call__(self, input_ids, segment_ids, train):
        cfg = self.config
        seq_len = input_ids.shape[1]
        if seq_len > cfg.max_position:  # jnp.take would quietly clamp or NaN-fill the rows
            raise ValueError(f"sequence length {seq_len} exceeds max_position "
                             f"{cfg.max_position}")
        # Summed in float32 like the reference, then normalised in the compute dtype.
        x = (jnp.take(self.word_embeddings, input_ids, axis=0)
             + jnp.take(self.token_type_embeddings, segment_ids, axis=0)
             + self.position_embeddings[None, :seq_len])
        x = self.layer_norm(x.astype(cfg.dtype))
        return self.dropout(x, deterministic=not train)

    def attend(self, x):
        table = self.word_embeddings.astype(self.config.dtype)
        return jnp.einsum("...e,ve->...v", x, table).astype(jnp.float32)


class SelfAttention(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, mask_bias, train):
        cfg = self.config

        def project(name):
            return _dense(cfg, (cfg.heads, cfg.head_dim), -1, ("embed", "heads", "kv"),
                          ("heads", "kv"), name)(x)

        query, key, value = project("query"), project("key"), project("value")
        query *= jnp.asarray(cfg.head_dim**-0.5, cfg.dtype)
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32)
        probs = jax.nn.softmax(scores + mask_bias, axis=-1).astype(cfg.dtype)
        probs = nn.Dropout(cfg.attention_dropout_rate)(probs, deterministic=not train)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, value)
        return _dense(cfg, cfg.hidden, (-2, -1), ("heads", "kv", "embed"), ("embed",),
                      "out")(out)


class EncoderLayer(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, mask_bias, train):
        cfg = self.config
        drop = nn.Dropout(cfg.dropout_rate, deterministic=not train)
        y = SelfAttention(cfg, name="attention")(x, mask_bias, train)
        x = _layer_norm(cfg, "attention_norm")(x + drop(y))
        y = _dense(cfg, cfg.mlp_dim, -1, ("embed", "mlp"), ("mlp",), "wi")(x)
        y = _dense(cfg, cfg.hidden, -1, ("mlp", "embed"), ("embed",), "wo")(_gelu(cfg, y))
        return _layer_norm(cfg, "mlp_norm")(x + drop(y))


class Encoder(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, input_mask, train):
        # [batch, 1 (heads), 1 (queries), keys]: padded keys are hidden from every query;
        # padded queries still attend, and their outputs are simply never read.
        mask_bias = jnp.where(input_mask[:, None, None, :] > 0, 0.0, _MASK_BIAS)
        for i in range(self.config.layers):
            x = EncoderLayer(self.config, name=f"layer_{i}")(x, mask_bias, train)
        return x


class MaskedLMHead(nn.Module):
    """Transform (dense + GELU + LayerNorm), then logits tied to the word embeddings."""

    config: BertConfig

    @nn.compact
    def __call__(self, hidden, attend):
        cfg = self.config
        # A square kernel needs two distinct axis names; "mlp" lets tensor parallelism
        # split its output units, as it does the feed-forward's.
        h = _dense(cfg, cfg.hidden, -1, ("embed", "mlp"), ("mlp",), "transform")(hidden)
        h = _layer_norm(cfg, "transform_norm")(_gelu(cfg, h))
        bias = self.param("output_bias", _boxed(nn.initializers.zeros, ("vocab",)),
                          (cfg.vocab_size,), jnp.float32)
        return attend(h) + bias


class Bert(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, masked_lm_positions, *,
                 train: bool):
        cfg = self.config
        embeddings = Embeddings(cfg, name="embeddings")
        x = embeddings(input_ids, segment_ids, train)
        x = Encoder(cfg, name="encoder")(x, input_mask, train)

        pooled = _dense(cfg, cfg.hidden, -1, ("embed", "mlp"), ("mlp",), "pooler")(x[:, 0])
        nsp_logits = _dense(cfg, NSP_CLASSES, -1, ("embed", "classes"), ("classes",),
                            "nsp_head")(jnp.tanh(pooled))

        # Only the masked positions reach the vocabulary-sized projection, as in the
        # reference: ~76 of 512 tokens, so the head costs a seventh of the full sequence.
        masked = jnp.take_along_axis(x, masked_lm_positions[..., None], axis=1)
        mlm_logits = MaskedLMHead(cfg, name="mlm_head")(masked, embeddings.attend)
        return mlm_logits.astype(jnp.float32), nsp_logits.astype(jnp.float32)


def abstract_variables(cfg: BertConfig, batch_size: int = 1, seq_len: int = 8,
                       predictions: int = 2):
    """Shapes (and logical names) of Bert(cfg)'s variables; nothing is allocated."""
    tokens = jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32)
    positions = jax.ShapeDtypeStruct((batch_size, predictions), jnp.int32)
    init = functools.partial(Bert(cfg).init, train=False)
    return jax.eval_shape(init, jax.random.key(0), tokens, tokens, tokens, positions)


def param_count(cfg: BertConfig) -> int:
    """Exact number of parameters, counted from the abstract params."""
    params = nn.unbox(abstract_variables(cfg))["params"]
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def forward_flops(cfg: BertConfig, seq_len: int, masked_positions: int) -> float:
    """Matmul FLOPs (2 per multiply-add) of one sequence's forward pass.

    Counts, per layer, the q/k/v/out projections and the two feed-forward matmuls on
    every token, plus attention scores and weighted values over the full seq_len square
    (padding is computed, then masked); the pooler and next-sentence head on the first
    token; the masked-LM transform and tied vocabulary projection on the masked positions
    only. Leaves out the embedding gathers, LayerNorms, softmax, GELU, tanh, biases and
    dropout. A training step is about 3x this (forward + 2x backward).
    """
    h, s = cfg.hidden, seq_len
    per_token = 2 * 4 * h * h + 2 * 2 * h * cfg.mlp_dim
    attention = 2 * 2 * s * s * h  # q.k scores and probs.v, summed over heads
    encoder = cfg.layers * (s * per_token + attention)
    heads = 2 * h * h + 2 * h * NSP_CLASSES  # pooler and next-sentence head: one token
    masked_lm = masked_positions * (2 * h * h + 2 * h * cfg.vocab_size)
    return float(encoder + heads + masked_lm)


def masked_lm_accuracy_sums(mlm_logits, masked_lm_ids, masked_lm_weights):
    """(correct, count): weighted sums over one batch's masked positions, float32.

    As the reference's weighted tf.metrics.accuracy: a position counts with its weight,
    so padded prediction slots (weight 0) count for nothing whatever their argmax. Sum
    these over the eval set and divide once; a per-batch mean would weight batches with
    few predictions too much.
    """
    weights = masked_lm_weights.astype(jnp.float32)
    hits = (jnp.argmax(mlm_logits, axis=-1) == masked_lm_ids).astype(jnp.float32)
    return jnp.sum(hits * weights), jnp.sum(weights)


def pretraining_loss(mlm_logits, nsp_logits, masked_lm_ids, masked_lm_weights,
                     next_sentence_labels):
    """The reference's loss: weighted-mean masked-LM cross-entropy + mean NSP cross-entropy."""
    log_probs = jax.nn.log_softmax(mlm_logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, masked_lm_ids[..., None], axis=-1)[..., 0]
    weights = masked_lm_weights.astype(jnp.float32)
    # The reference's 1e-5 keeps a batch without predictions at loss 0 rather than NaN.
    mlm_loss = jnp.sum(nll * weights) / (jnp.sum(weights) + 1e-5)
    nsp_log_probs = jax.nn.log_softmax(nsp_logits.astype(jnp.float32), axis=-1)
    labels = jnp.reshape(next_sentence_labels, (-1, 1))
    nsp_loss = -jnp.mean(jnp.take_along_axis(nsp_log_probs, labels, axis=-1))
    return mlm_loss + nsp_loss
