"""Transformer-big in Flax: the MLPerf translation (WMT en->de) reference model.

Encoder-decoder with pre-LayerNorm residual blocks and a final LayerNorm on each
stack (tensor2tensor's layout), sinusoidal positions, ReLU feed-forward, and one
embedding shared by source, target and the output logits (scaled by sqrt(emb_dim)
on lookup). Token ids: 0 is padding (and the decoder's BOS), 1 is EOS.

API of `Transformer(config)`:
  encode(inputs, inputs_positions=None, inputs_segmentation=None, train=False)
      -> encoded [batch, src_len, emb_dim] in config.dtype
  decode(encoded, inputs, targets, targets_positions=None, inputs_segmentation=None,
         targets_segmentation=None, train=False) -> float32 logits [batch, tgt_len, vocab]
  __call__(inputs, targets, inputs_positions=None, targets_positions=None,
           inputs_segmentation=None, targets_segmentation=None, train=False) -> logits
Packed rows pass *_positions and *_segmentation (segment 0 = padding): attention
then stays within a segment and targets are shifted right within each segment.
Dropout draws from the "dropout" rng; train=False is deterministic.

Decoding (config.decode=True) keeps keys/values in the "cache" collection. The
first decode call, the one that creates the cache (`init_cache` below), takes
targets [batch, max_decode_len]: their length sizes the self-attention cache,
and it stores the cross-attention keys/values of `encoded`, so each later step
(targets [batch, 1], the previous token, 0 at the first step) projects only the
new token. Later steps do not read `encoded`; `inputs` gives the source padding.
`translate(...)` wraps it all: encoder once, cache, beam search; best output per row.

Params are float32, activations config.dtype, logits float32. Every param carries logical
axis names (vocab, embed, heads, kv, mlp) for the runner's mesh; activations carry none.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from models import beam_search

PAD_ID = 0
EOS_ID = 1
_MASKED = -1e9  # softmax weight exp(-1e9) is exactly 0, and no inf - inf NaNs


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int
    emb_dim: int = 1024
    num_heads: int = 16
    enc_layers: int = 6
    dec_layers: int = 6
    qkv_dim: int = 1024
    mlp_dim: int = 4096
    max_len: int = 512  # rows of the sinusoid table: longest source, target or decode
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    dtype: Any = jnp.float32
    decode: bool = False

    def __post_init__(self):
        if self.qkv_dim % self.num_heads:
            raise ValueError(f"qkv_dim {self.qkv_dim} not divisible by {self.num_heads} heads")


def tiny_config(vocab_size: int, **overrides) -> TransformerConfig:
    """CPU-sized for tests: one layer each side, two heads of 16."""
    shape = dict(emb_dim=32, num_heads=2, enc_layers=1, dec_layers=1, qkv_dim=32, mlp_dim=64,
                 max_len=64)
    return TransformerConfig(vocab_size=vocab_size, **(shape | overrides))


def _boxed(init, names):
    return nn.with_logical_partitioning(init, names)


def _layer_norm(cfg, name):
    return nn.LayerNorm(
        dtype=cfg.dtype, param_dtype=jnp.float32, name=name,
        scale_init=_boxed(nn.initializers.ones, ("embed",)),
        bias_init=_boxed(nn.initializers.zeros, ("embed",)))


def _dense(cfg, features, axis, kernel_names, bias_names, name):
    # DenseGeneral initialises the kernel flattened to 2-D, so Glorot sees the true
    # fan-in and fan-out (emb_dim and qkv_dim) rather than per-head sizes.
    return nn.DenseGeneral(
        features=features, axis=axis, dtype=cfg.dtype, param_dtype=jnp.float32, name=name,
        kernel_init=_boxed(nn.initializers.xavier_uniform(), kernel_names),
        bias_init=_boxed(nn.initializers.zeros, bias_names))


def sinusoids(max_len: int, dim: int) -> np.ndarray:
    """tensor2tensor's timing signal: [sin | cos] over geometric timescales 1..1e4."""
    half = dim // 2
    inv_timescales = np.exp(-math.log(1e4) * np.arange(half) / max(half - 1, 1))
    angles = np.arange(max_len)[:, None] * inv_timescales[None, :]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    return np.pad(table, ((0, 0), (0, dim % 2))).astype(np.float32)


def shift_right(targets, segmentation=None):
    """Decoder inputs: each token sees its predecessor, the first of a segment sees 0."""
    shifted = jnp.pad(targets[:, :-1], ((0, 0), (1, 0)))
    if segmentation is not None:
        previous_segment = jnp.pad(segmentation[:, :-1], ((0, 0), (1, 0)))
        shifted = jnp.where(segmentation == previous_segment, shifted, 0)
    return shifted


def attention_mask(query_tokens, key_tokens, query_segments=None, key_segments=None):
    """[batch, 1, q, k]: both tokens real and, when packed, in the same segment."""
    mask = (query_tokens != PAD_ID)[:, :, None] & (key_tokens != PAD_ID)[:, None, :]
    if query_segments is not None:
        mask &= query_segments[:, :, None] == key_segments[:, None, :]
    return mask[:, None]


class SharedEmbedding(nn.Module):
    config: TransformerConfig

    def setup(self):
        cfg = self.config
        # std emb^-0.5 with a sqrt(emb) scale on lookup: unit-variance inputs to the
        # stacks, and unit-scale logits from the tied projection of a layer-normed output.
        self.embedding = self.param(
            "embedding", _boxed(nn.initializers.normal(cfg.emb_dim**-0.5), ("vocab", "embed")),
            (cfg.vocab_size, cfg.emb_dim), jnp.float32)

    def __call__(self, ids):
        x = jnp.take(self.embedding, ids, axis=0).astype(self.config.dtype)
        return x * jnp.asarray(math.sqrt(self.config.emb_dim), self.config.dtype)

    def attend(self, x):
        logits = jnp.einsum("...e,ve->...v", x, self.embedding.astype(self.config.dtype))
        return logits.astype(jnp.float32)


class Attention(nn.Module):
    """Multi-head dot-product attention.

    kind: "self" (encoder), "causal" (decoder self-attention: keys/values of past
    tokens are cached when decoding) or "cross" (decoder to encoder: the projected
    encoder output is cached when decoding).
    """

    config: TransformerConfig
    kind: str

    @nn.compact
    def __call__(self, inputs_q, inputs_kv, mask, train, decode_index=None, cache_len=None):
        cfg = self.config
        head_dim = cfg.qkv_dim // cfg.num_heads

        def project(name, x):
            return _dense(cfg, (cfg.num_heads, head_dim), -1, ("embed", "heads", "kv"),
                          ("heads", "kv"), name)(x)

        query = project("query", inputs_q)
        if cfg.decode and self.kind == "cross" and self.has_variable("cache", "cross_key"):
            key = self.get_variable("cache", "cross_key")
            value = self.get_variable("cache", "cross_value")
        else:
            key, value = project("key", inputs_kv), project("value", inputs_kv)
            if cfg.decode and self.kind == "cross":
                self.put_variable("cache", "cross_key", key)
                self.put_variable("cache", "cross_value", value)
        if cfg.decode and self.kind == "causal":
            key, value, mask = self._extend_cache(key, value, decode_index, cache_len)

        query *= jnp.asarray(head_dim**-0.5, cfg.dtype)
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32)
        probs = jax.nn.softmax(jnp.where(mask, scores, _MASKED), axis=-1).astype(cfg.dtype)
        probs = nn.Dropout(cfg.attention_dropout_rate)(probs, deterministic=not train)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, value)
        return _dense(cfg, cfg.emb_dim, (-2, -1), ("heads", "kv", "embed"), ("embed",),
                      "out")(out)

    def _extend_cache(self, key, value, index, cache_len):
        """Writes this step's key/value at `index`; attends to positions <= index."""
        creating = not self.has_variable("cache", "cached_key")
        shape = (key.shape[0], cache_len, *key.shape[2:])
        cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, shape, value.dtype)
        at = (0, index, 0, 0)
        key = jax.lax.dynamic_update_slice(cached_key.value, key, at)
        value = jax.lax.dynamic_update_slice(cached_value.value, value, at)
        if not creating:  # the creating call only sizes the cache; step 0 comes after it
            cached_key.value, cached_value.value = key, value
        mask = (jnp.arange(key.shape[1]) <= index)[None, None, None, :]
        return key, value, mask


class MlpBlock(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        x = _dense(cfg, cfg.mlp_dim, -1, ("embed", "mlp"), ("mlp",), "wi")(x)
        return _dense(cfg, cfg.emb_dim, -1, ("mlp", "embed"), ("embed",), "wo")(nn.relu(x))


class EncoderLayer(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, x, mask, train):
        cfg = self.config
        drop = nn.Dropout(cfg.dropout_rate, deterministic=not train)
        y = _layer_norm(cfg, "pre_attention_norm")(x)
        x = x + drop(Attention(cfg, "self", name="attention")(y, y, mask, train))
        y = _layer_norm(cfg, "pre_mlp_norm")(x)
        return x + drop(MlpBlock(cfg, name="mlp")(y))


class DecoderLayer(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, x, encoded, self_mask, cross_mask, train, decode_index, cache_len):
        cfg = self.config
        drop = nn.Dropout(cfg.dropout_rate, deterministic=not train)
        y = _layer_norm(cfg, "pre_self_attention_norm")(x)
        y = Attention(cfg, "causal", name="self_attention")(
            y, y, self_mask, train, decode_index, cache_len)
        x = x + drop(y)
        y = _layer_norm(cfg, "pre_cross_attention_norm")(x)
        x = x + drop(Attention(cfg, "cross", name="cross_attention")(y, encoded, cross_mask, train))
        y = _layer_norm(cfg, "pre_mlp_norm")(x)
        return x + drop(MlpBlock(cfg, name="mlp")(y))


def _embed_with_positions(cfg, embed, ids, positions, train):
    x = embed(ids) + jnp.take(sinusoids(cfg.max_len, cfg.emb_dim), positions, axis=0).astype(
        cfg.dtype)
    return nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)


def _check_length(cfg, length):
    if length > cfg.max_len:  # jnp.take would quietly fill the missing table rows with NaN
        raise ValueError(f"length {length} exceeds the sinusoid table's max_len {cfg.max_len}")


def _positions(cfg, ids, positions):
    if positions is not None:
        return positions
    _check_length(cfg, ids.shape[1])
    return jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)


class Encoder(nn.Module):
    config: TransformerConfig
    embed: nn.Module

    @nn.compact
    def __call__(self, inputs, positions, mask, train):
        cfg = self.config
        positions = _positions(cfg, inputs, positions)
        x = _embed_with_positions(cfg, self.embed, inputs, positions, train)
        for i in range(cfg.enc_layers):
            x = EncoderLayer(cfg, name=f"layer_{i}")(x, mask, train)
        return _layer_norm(cfg, "norm")(x)


class Decoder(nn.Module):
    config: TransformerConfig
    embed: nn.Module

    @nn.compact
    def __call__(self, encoded, decoder_inputs, positions, self_mask, cross_mask, train):
        cfg = self.config
        index = cache_len = None
        if cfg.decode:
            # One step counter for all layers: it is the position of the new token.
            creating = not self.has_variable("cache", "index")
            counter = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
            index = counter.value
            if creating:
                cache_len = decoder_inputs.shape[1]
                _check_length(cfg, cache_len)
                decoder_inputs = decoder_inputs[:, :1]
            else:
                counter.value = index + 1
            positions = jnp.full(decoder_inputs.shape, index)
        positions = _positions(cfg, decoder_inputs, positions)
        x = _embed_with_positions(cfg, self.embed, decoder_inputs, positions, train)
        for i in range(cfg.dec_layers):
            x = DecoderLayer(cfg, name=f"layer_{i}")(
                x, encoded, self_mask, cross_mask, train, index, cache_len)
        return _layer_norm(cfg, "norm")(x)


class Transformer(nn.Module):
    config: TransformerConfig

    def setup(self):
        self.embed = SharedEmbedding(self.config)
        self.encoder = Encoder(self.config, self.embed)
        self.decoder = Decoder(self.config, self.embed)

    def encode(self, inputs, inputs_positions=None, inputs_segmentation=None, train=False):
        mask = attention_mask(inputs, inputs, inputs_segmentation, inputs_segmentation)
        return self.encoder(inputs, inputs_positions, mask, train)

    def decode(self, encoded, inputs, targets, targets_positions=None, inputs_segmentation=None,
               targets_segmentation=None, train=False):
        if self.config.decode:
            # Packing is a training-time layout; a decode step sees one real token.
            decoder_inputs, self_mask = targets, None
            cross_mask = (inputs != PAD_ID)[:, None, None, :]
        else:
            decoder_inputs = shift_right(targets, targets_segmentation)
            length = targets.shape[1]
            causal = jnp.tril(jnp.ones((length, length), jnp.bool_))
            self_mask = causal & attention_mask(
                targets, targets, targets_segmentation, targets_segmentation)
            cross_mask = attention_mask(targets, inputs, targets_segmentation, inputs_segmentation)
        x = self.decoder(encoded, decoder_inputs, targets_positions, self_mask, cross_mask, train)
        return self.embed.attend(x)

    def __call__(self, inputs, targets, inputs_positions=None, targets_positions=None,
                 inputs_segmentation=None, targets_segmentation=None, train=False):
        encoded = self.encode(inputs, inputs_positions, inputs_segmentation, train)
        return self.decode(encoded, inputs, targets, targets_positions, inputs_segmentation,
                           targets_segmentation, train)


def init_cache(config: TransformerConfig, params, encoded, inputs, max_decode_len: int):
    """The decode cache for `encoded` (rows as the decode steps will see them, e.g. tiled
    per beam): zeroed self-attention keys/values for max_decode_len tokens, the
    cross-attention keys/values of `encoded`, and the step counter at 0."""
    model = Transformer(dataclasses.replace(config, decode=True))
    targets = jnp.zeros((inputs.shape[0], max_decode_len), jnp.int32)
    _, variables = model.apply({"params": params}, encoded, inputs, targets,
                               method=Transformer.decode, mutable=["cache"])
    return variables["cache"]


def param_count(config: TransformerConfig) -> int:
    """Exact number of parameters, counted from the architecture."""
    e, q, m = config.emb_dim, config.qkv_dim, config.mlp_dim
    norm = 2 * e
    attention = 3 * (e * q + q) + q * e + e  # query/key/value kernels+biases, out
    mlp = e * m + m + m * e + e
    encoder_layer = 2 * norm + attention + mlp
    decoder_layer = 3 * norm + 2 * attention + mlp
    return (config.vocab_size * e + config.enc_layers * encoder_layer
            + config.dec_layers * decoder_layer + 2 * norm)


def forward_flops(config: TransformerConfig, src_len: int, tgt_len: int) -> int:
    """Matmul FLOPs (2*m*n*k) of one forward pass over one source/target pair.

    Counts the q/k/v/out projections, attention scores and weighted values (over
    the full square, as the masked implementation computes it), the feed-forward
    layers and the tied output logits. Leaves out the embedding lookup (a gather),
    softmax, LayerNorm, biases, ReLU and dropout. For packed rows pass the row
    lengths: attention then spans the whole row, masked or not. A training step is
    about 3x this (forward + 2x backward).
    """
    e, q, m = config.emb_dim, config.qkv_dim, config.mlp_dim
    s, t = src_len, tgt_len
    projections = 2 * 4 * e * q  # per token: query, key, value, out
    mlp = 2 * 2 * e * m
    encoder = config.enc_layers * (s * (projections + mlp) + 2 * 2 * s * s * q)
    self_attention = t * projections + 2 * 2 * t * t * q
    # Cross attention: query/out on target tokens, key/value on source tokens.
    cross_attention = 2 * 2 * e * q * (t + s) + 2 * 2 * t * s * q
    decoder = config.dec_layers * (self_attention + cross_attention + t * mlp)
    return encoder + decoder + 2 * t * e * config.vocab_size


def translate(model: Transformer, params, inputs, *, beam_size: int, alpha: float,
              max_decode_len: int, extra_length: int = 50, eos_id: int = EOS_ID):
    """Best beam-search translation of each row of `inputs`: int32 [batch, max_decode_len].

    Runs the encoder once per example, then decodes with the cache (`model` may have
    decode on or off); each output holds at most (non-pad input tokens + extra_length)
    tokens, EOS included. Jit with beam_size and max_decode_len static (e.g. a partial).
    """
    decoder = Transformer(dataclasses.replace(model.config, decode=True))
    encoded = decoder.apply({"params": params}, inputs, method=Transformer.encode)
    # Beams of one example share its encoding and source padding.
    encoded = beam_search.tile_beams(encoded, beam_size)
    tiled_inputs = beam_search.tile_beams(inputs, beam_size)
    cache = init_cache(decoder.config, params, encoded, tiled_inputs, max_decode_len)

    def tokens_to_logits(ids, cache):
        logits, variables = decoder.apply(
            {"params": params, "cache": cache}, encoded, tiled_inputs, ids,
            method=Transformer.decode, mutable=["cache"])
        return logits[:, 0], variables["cache"]

    length_limit = jnp.sum(inputs != PAD_ID, axis=1) + extra_length
    sequences, _ = beam_search.beam_search(
        tokens_to_logits, cache, batch_size=inputs.shape[0], beam_size=beam_size, alpha=alpha,
        eos_id=eos_id, max_decode_len=max_decode_len, length_limit=length_limit)
    return sequences[:, 0]
