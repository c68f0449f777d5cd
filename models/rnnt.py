"""The RNN-Transducer network of the speech benchmark (issue 15), in Flax linen.

Encoder: 2 LSTM layers -> time stacking x2 -> 3 LSTM layers, all of enc_hidden units, with
dropout enc_dropout on each layer's output. Prediction network: the start symbol (a zero
input vector) and the labels' embeddings -> 2 LSTM layers, dropout pred_dropout on each
output. Joint: linear(enc -> joint_hidden) + linear(pred -> joint_hidden) -> ReLU ->
linear(-> vocab).

Joint dropout (deviation, on purpose): it is applied to the two projections (`project`),
before transducer_loss cuts the frames into remat'd chunks, not after the ReLU. The loss
calls joint_fn(slab, pred) without the chunk index, so a dropout rng closed over by joint_fn
would give every chunk the same mask; dropping the projections once avoids that and keeps
`joint` deterministic (the same in training and decoding).

Initialisation as the reference's code does it (mlcommons/training
rnn_speech_recognition/pytorch: rnnt/model.py, common/rnn.py): PyTorch's defaults,
uniform(+-1/sqrt(H)) for LSTM weights and biases and uniform(+-1/sqrt(fan_in)) for the
linear layers' weights and biases, N(0, 1) for the embedding (n_classes - 1 rows: blank is
never an input), and the forget gate's bias 1. The reference passes a weights_init_scale to
its LSTM wrapper, which ignores it, so no scale applies (lstm_weight_scale = 1). PyTorch's
LSTM keeps a second, hidden-side bias (the reference zeroes its forget part); flax's cell has
one bias per gate, so the count differs by 4H per layer.

Params float32; every param carries logical axis names (vocab, embed, mlp).

Decoding: `pred_step` runs the prediction network one label at a time from a carried state
(`pred_init_state`), on the same params as `predict`; `decode` is MLPerf's greedy decoding
of a padded batch (models/rnnt_decode.py).
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import traverse_util

from models import rnnt_decode


@dataclasses.dataclass(frozen=True)
class RNNTConfig:
    features: int = 240  # 80 mel x 3 stacked frames
    vocab_size: int = 1024  # 1,023 sentencepiece pieces + blank, blank last
    enc_hidden: int = 1024
    enc_pre_layers: int = 2
    enc_post_layers: int = 3
    stack: int = 2
    enc_dropout: float = 0.1
    pred_embed: int = 512
    pred_hidden: int = 512
    pred_layers: int = 2
    pred_dropout: float = 0.3
    joint_hidden: int = 512
    joint_dropout: float = 0.3
    lstm_weight_scale: float = 1.0
    forget_bias: float = 1.0
    unroll: Any = 1  # passed to nn.RNN's scan; True unrolls (FLOP cross-check on CPU)
    # Matmul inputs (bfloat16 on accelerators); params and the LSTMs' (c, h) stay float32.
    dtype: Any = jnp.float32

    @property
    def blank(self) -> int:
        return self.vocab_size - 1


reference_config = RNNTConfig
tiny_config = functools.partial(
    RNNTConfig, features=12, vocab_size=11, enc_hidden=16, pred_embed=8, pred_hidden=8,
    joint_hidden=12)


def _boxed(init, names):
    return nn.with_logical_partitioning(init, names)


def _symmetric_uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def _lstm(cfg: RNNTConfig, hidden: int, name: str) -> nn.RNN:
    bound = cfg.lstm_weight_scale / math.sqrt(hidden)
    cell = nn.OptimizedLSTMCell(
        hidden, param_dtype=jnp.float32, dtype=cfg.dtype,
        kernel_init=_boxed(_symmetric_uniform(bound), ("embed", "mlp")),
        recurrent_kernel_init=_boxed(_symmetric_uniform(bound), ("embed", "mlp")),
        # The forget gate's 1 is written by set_forget_bias: the cell has one bias_init for
        # all four gates.
        bias_init=_boxed(_symmetric_uniform(bound), ("mlp",)))
    return nn.RNN(cell, unroll=cfg.unroll, name=name)


def _dense(cfg: RNNTConfig, fan_in: int, features: int, names: tuple[str, str],
           name: str) -> nn.Dense:
    bound = 1 / math.sqrt(fan_in)  # PyTorch's nn.Linear default, weights and biases
    return nn.Dense(
        features, param_dtype=jnp.float32, dtype=cfg.dtype, name=name,
        kernel_init=_boxed(_symmetric_uniform(bound), names),
        bias_init=_boxed(_symmetric_uniform(bound), names[1:]))


def stack_time(x: jax.Array, lengths: jax.Array, factor: int) -> tuple[jax.Array, jax.Array]:
    """[B, T, D] -> [B, ceil(T/f), f*D] (f consecutive frames side by side), new lengths.

    Frames at or past each example's length are zeroed first, so a stacked frame that holds
    the last valid frame and padding does not depend on what the padding was.
    """
    batch, t_max, dim = x.shape
    x = jnp.where(jnp.arange(t_max)[None, :, None] < lengths[:, None, None], x, 0)
    padded_t = -(-t_max // factor) * factor
    x = jnp.pad(x, ((0, 0), (0, padded_t - t_max), (0, 0)))
    return x.reshape(batch, padded_t // factor, factor * dim), -(-lengths // factor)


# The prediction network's recurrent state while decoding: one (c, h) per LSTM layer, each
# [B, pred_hidden] (OptimizedLSTMCell's carry order).
PredState = tuple[tuple[jax.Array, jax.Array], ...]


def pred_init_state(cfg: RNNTConfig, batch: int) -> PredState:
    """The zero state that `predict`'s nn.RNN layers also start from."""
    zeros = jnp.zeros((batch, cfg.pred_hidden), jnp.float32)
    return tuple((zeros, zeros) for _ in range(cfg.pred_layers))


class RNNT(nn.Module):
    config: RNNTConfig

    def setup(self):
        cfg = self.config
        self.enc_pre = [_lstm(cfg, cfg.enc_hidden, f"enc_pre_{i}")
                        for i in range(cfg.enc_pre_layers)]
        self.enc_post = [_lstm(cfg, cfg.enc_hidden, f"enc_post_{i}")
                         for i in range(cfg.enc_post_layers)]
        self.embed = nn.Embed(
            cfg.vocab_size - 1, cfg.pred_embed, param_dtype=jnp.float32, dtype=cfg.dtype,
            embedding_init=_boxed(nn.initializers.normal(1.0), ("vocab", "embed")))
        self.pred = [_lstm(cfg, cfg.pred_hidden, f"pred_{i}") for i in range(cfg.pred_layers)]
        joint_in = ("embed", "mlp")
        self.enc_proj = _dense(cfg, cfg.enc_hidden, cfg.joint_hidden, joint_in, "enc_proj")
        self.pred_proj = _dense(cfg, cfg.pred_hidden, cfg.joint_hidden, joint_in, "pred_proj")
        self.out = _dense(cfg, cfg.joint_hidden, cfg.vocab_size, ("mlp", "vocab"), "out")
        self.enc_drop = nn.Dropout(cfg.enc_dropout)
        self.pred_drop = nn.Dropout(cfg.pred_dropout)
        self.joint_drop = nn.Dropout(cfg.joint_dropout)

    def encode(self, feats: jax.Array, lengths: jax.Array,
               deterministic: bool) -> tuple[jax.Array, jax.Array]:
        """[B, T, features], [B] -> [B, ceil(T/stack), enc_hidden], their lengths."""
        cfg = self.config
        x = feats
        for layer in self.enc_pre:
            x = self.enc_drop(layer(x, seq_lengths=lengths), deterministic)
        x, lengths = stack_time(x, lengths, cfg.stack)
        for layer in self.enc_post:
            x = self.enc_drop(layer(x, seq_lengths=lengths), deterministic)
        return x, lengths

    def _embed(self, labels: jax.Array) -> jax.Array:
        """Label embeddings; blank stands for the start symbol, whose input is all zeros
        (the reference's table has no row for blank and prepends a zero vector)."""
        cfg = self.config
        x = self.embed(jnp.minimum(labels, cfg.vocab_size - 2))
        return jnp.where((labels == cfg.blank)[..., None], jnp.zeros((), x.dtype), x)

    def predict(self, labels: jax.Array, deterministic: bool) -> jax.Array:
        """[B, U] label ids -> [B, U+1, pred_hidden]; row u has seen the start + u labels."""
        cfg = self.config
        start = jnp.full((labels.shape[0], 1), cfg.blank, labels.dtype)
        x = self._embed(jnp.concatenate([start, labels], axis=1))
        # Causal: rows past a label length never touch earlier rows, so no seq_lengths.
        for layer in self.pred:
            x = self.pred_drop(layer(x), deterministic)
        return x

    def pred_step(self, labels: jax.Array, state: PredState) -> tuple[jax.Array, PredState]:
        """One prediction-network step for decoding: [B] labels, each layer's carried (c, h)
        -> the projected output [B, joint_hidden] (pred_proj applied) and the new state.

        The same params as `predict` (each nn.RNN's `cell` is called directly, so it reads
        pred_i/cell/...), without dropout: decoding is deterministic.
        """
        x = self._embed(labels)
        new_state = []
        for layer, carry in zip(self.pred, state, strict=True):
            carry, x = layer.cell(carry, x)
            new_state.append(carry)
        return self.pred_proj(x), tuple(new_state)

    def project(self, enc: jax.Array, pred: jax.Array,
                deterministic: bool) -> tuple[jax.Array, jax.Array]:
        """The joint's two input projections, with the joint dropout (see module doc)."""
        return (self.joint_drop(self.enc_proj(enc), deterministic),
                self.joint_drop(self.pred_proj(pred), deterministic))

    def joint(self, enc_p: jax.Array, pred_p: jax.Array) -> jax.Array:
        """[B, c, J] projected frames, [B, U+1, J] -> logits [B, c, U+1, vocab] (float32).

        Fits transducer_loss's joint_fn (models/transducer.py).
        """
        hidden = nn.relu(enc_p[:, :, None, :] + pred_p[:, None, :, :])
        return self.out(hidden).astype(jnp.float32)

    def __call__(self, feats: jax.Array, lengths: jax.Array, labels: jax.Array,
                 deterministic: bool = True) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Everything the loss needs: projected encoder output, projected prediction, lengths."""
        enc, enc_lengths = self.encode(feats, lengths, deterministic)
        enc_p, pred_p = self.project(enc, self.predict(labels, deterministic), deterministic)
        # Touch `joint` at init so its params exist (one frame, cheap).
        if self.is_initializing():
            self.joint(enc_p[:, :1], pred_p)
        return enc_p, pred_p, enc_lengths


def decode(cfg: RNNTConfig, variables: Any, feats: jax.Array, lengths: jax.Array, *,
           max_symbols_per_frame: int = 30,
           max_symbols: int = 300) -> tuple[jax.Array, jax.Array]:
    """Greedy transcripts of a padded batch: encode (no dropout) -> enc_proj ->
    rnnt_decode.greedy_decode. Returns (tokens [B, max_symbols], blank-padded; lengths [B]).
    Pure and jit-able; the caps are MLPerf's eval defaults."""
    model = RNNT(cfg)
    enc, enc_lengths = model.apply(variables, feats, lengths, True, method=model.encode)
    enc_p = model.apply(variables, enc, method=lambda m, x: m.enc_proj(x))

    def joint_fn(frames: jax.Array, pred_p: jax.Array) -> jax.Array:
        logits = model.apply(variables, frames[:, None], pred_p[:, None], method=model.joint)
        return logits[:, 0, 0]

    def pred_step_fn(labels: jax.Array, state: PredState) -> tuple[jax.Array, PredState]:
        return model.apply(variables, labels, state, method=model.pred_step)

    return rnnt_decode.greedy_decode(
        joint_fn, pred_step_fn, pred_init_state(cfg, feats.shape[0]), enc_p, enc_lengths,
        blank=cfg.blank, max_symbols_per_frame=max_symbols_per_frame, max_symbols=max_symbols)


def set_forget_bias(variables: Any, value: float) -> Any:
    """Every LSTM's forget-gate bias ('hf' bias) set to value; boxes kept."""
    flat = traverse_util.flatten_dict(variables)
    for path, leaf in flat.items():
        if path[-2:] == ("hf", "bias"):
            flat[path] = (leaf.replace_boxed(jnp.full_like(leaf.value, value))
                          if isinstance(leaf, nn.Partitioned) else jnp.full_like(leaf, value))
    return traverse_util.unflatten_dict(flat)


def init_variables(cfg: RNNTConfig, key: jax.Array, batch: int = 1, frames: int = 4,
                   labels: int = 2) -> Any:
    """Initialised variables with the reference's forget-gate bias."""
    feats = jnp.zeros((batch, frames, cfg.features), jnp.float32)
    variables = RNNT(cfg).init(key, feats, jnp.full((batch,), frames),
                               jnp.zeros((batch, labels), jnp.int32))
    return set_forget_bias(variables, cfg.forget_bias)


def param_count(cfg: RNNTConfig) -> int:
    """Counted from the abstract params (jax.eval_shape: nothing is allocated)."""
    variables = jax.eval_shape(functools.partial(init_variables, cfg), jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nn.unbox(variables)["params"]))


def _lstm_params(inputs: int, hidden: int) -> int:
    return 4 * hidden * (inputs + hidden) + 4 * hidden  # 4 gates; one bias per gate


def rnnt_params(cfg: RNNTConfig) -> int:
    """The parameter count by formula (what param_count must equal)."""
    h = cfg.enc_hidden
    encoder = _lstm_params(cfg.features, h) + (cfg.enc_pre_layers - 1) * _lstm_params(h, h)
    encoder += _lstm_params(cfg.stack * h, h) + (cfg.enc_post_layers - 1) * _lstm_params(h, h)
    p = cfg.pred_hidden
    prediction = ((cfg.vocab_size - 1) * cfg.pred_embed + _lstm_params(cfg.pred_embed, p)
                  + (cfg.pred_layers - 1) * _lstm_params(p, p))
    j = cfg.joint_hidden
    joint = (h + 1) * j + (p + 1) * j + (j + 1) * cfg.vocab_size
    return encoder + prediction + joint


def _lstm_flops(inputs: int, hidden: int) -> int:
    return 2 * 4 * hidden * (inputs + hidden)  # per step: 4 gates' matmuls, 2 FLOPs per MAC


def forward_flops(cfg: RNNTConfig, frames: int, labels: int) -> int:
    """Matmul FLOPs of one example's forward pass (frames T, labels U), the full joint.

    Counts the LSTM gate matmuls at every step (T before stacking, ceil(T/stack) after), the
    prediction network's U+1 steps, the two joint projections and the joint output over all
    T' x (U+1) cells. Leaves out biases, gate nonlinearities, the log-softmax and the lattice
    recursion. A training step is about 3x (forward + 2x backward): see train_flops.
    """
    h, p, j = cfg.enc_hidden, cfg.pred_hidden, cfg.joint_hidden
    t2, u1 = -(-frames // cfg.stack), labels + 1
    enc = frames * (_lstm_flops(cfg.features, h) + (cfg.enc_pre_layers - 1) * _lstm_flops(h, h))
    enc += t2 * (_lstm_flops(cfg.stack * h, h) + (cfg.enc_post_layers - 1) * _lstm_flops(h, h))
    pred = u1 * (_lstm_flops(cfg.pred_embed, p) + (cfg.pred_layers - 1) * _lstm_flops(p, p))
    joint = 2 * t2 * h * j + 2 * u1 * p * j + 2 * t2 * u1 * j * cfg.vocab_size
    return enc + pred + joint


def train_flops(cfg: RNNTConfig, frames: int, labels: int) -> int:
    """Forward + backward (gradients of activations and of weights): 3x the forward."""
    return 3 * forward_flops(cfg, frames, labels)
