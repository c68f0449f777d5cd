"""MiniGo's dual network (policy and value), in Flax linen: a first part of the research
benchmark (issue 16).

The architecture of the reference's dual_net.py (tensorflow/minigo, which MLPerf's minigo
reference runs): a 3x3 convolution of conv_width filters -> batch norm -> ReLU; trunk_layers
residual blocks (3x3 conv -> BN -> ReLU -> 3x3 conv -> BN, added to the block's input, ReLU);
a policy head (1x1 conv of policy_conv_width filters -> BN without scale or offset -> ReLU ->
dense to N*N + 1 moves, pass included) and a value head (1x1 conv of value_conv_width filters
-> BN without scale or offset -> ReLU -> dense fc_width -> ReLU -> dense 1 -> tanh).
Convolutions have no bias; batch norm keeps running averages with momentum 0.95 and epsilon
1e-5. Boards are NHWC here (the reference runs NCHW on GPUs; the layout changes no numbers).
The widths, depth and input planes are the config's: the presets set them.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn


@dataclasses.dataclass(frozen=True)
class MiniGoConfig:
    board_size: int = 19
    input_planes: int = 17
    conv_width: int = 32
    trunk_layers: int = 9
    fc_width: int = 64
    policy_conv_width: int = 2
    value_conv_width: int = 1
    dtype: Any = jnp.float32  # of the convolutions' and dense layers' inputs

    @property
    def moves(self) -> int:
        return self.board_size * self.board_size + 1  # every point, and pass


class MiniGoNet(nn.Module):
    config: MiniGoConfig

    @nn.compact
    def __call__(self, boards: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """[B, N, N, planes] -> (policy logits [B, N*N + 1] float32, value [B] in (-1, 1))."""
        cfg = self.config
        conv = functools.partial(nn.Conv, use_bias=False, dtype=cfg.dtype,
                                 param_dtype=jnp.float32)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.95,
                                 epsilon=1e-5, dtype=cfg.dtype, param_dtype=jnp.float32)
        x = nn.relu(norm()(conv(cfg.conv_width, (3, 3))(boards.astype(cfg.dtype))))
        for _ in range(cfg.trunk_layers):
            inner = nn.relu(norm()(conv(cfg.conv_width, (3, 3))(x)))
            x = nn.relu(x + norm()(conv(cfg.conv_width, (3, 3))(inner)))
        batch = boards.shape[0]
        bare_norm = functools.partial(norm, use_scale=False, use_bias=False)
        policy = nn.relu(bare_norm()(conv(cfg.policy_conv_width, (1, 1))(x)))
        logits = nn.Dense(cfg.moves, dtype=cfg.dtype, param_dtype=jnp.float32)(
            policy.reshape(batch, -1))
        value = nn.relu(bare_norm()(conv(cfg.value_conv_width, (1, 1))(x)))
        hidden = nn.relu(nn.Dense(cfg.fc_width, dtype=cfg.dtype, param_dtype=jnp.float32)(
            value.reshape(batch, -1)))
        value = nn.Dense(1, dtype=cfg.dtype, param_dtype=jnp.float32)(hidden)[:, 0]
        return logits.astype(jnp.float32), jnp.tanh(value.astype(jnp.float32))


def init_variables(cfg: MiniGoConfig, key: jax.Array) -> Any:
    boards = jnp.zeros((1, cfg.board_size, cfg.board_size, cfg.input_planes), jnp.float32)
    return MiniGoNet(cfg).init(key, boards, train=False)


def param_count(cfg: MiniGoConfig) -> int:
    """Trainable parameters, from the abstract init (nothing is allocated)."""
    variables = jax.eval_shape(functools.partial(init_variables, cfg), jax.random.key(0))
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


def minigo_params(cfg: MiniGoConfig) -> int:
    """The same count by formula: what param_count must equal."""
    w, points = cfg.conv_width, cfg.board_size * cfg.board_size
    stem = 9 * cfg.input_planes * w + 2 * w  # conv, then BN's scale and offset
    trunk = cfg.trunk_layers * 2 * (9 * w * w + 2 * w)
    policy = w * cfg.policy_conv_width + (cfg.policy_conv_width * points + 1) * cfg.moves
    value = (w * cfg.value_conv_width + (cfg.value_conv_width * points + 1) * cfg.fc_width
             + cfg.fc_width + 1)
    return stem + trunk + policy + value


def forward_flops(cfg: MiniGoConfig, count_padding: bool = True) -> int:
    """Multiply-add FLOPs (2 per MAC) of one board's forward pass: the convolutions and
    dense layers; batch norm, activations and the softmax left out.

    count_padding: a 3x3 kernel's taps that fall off the board count too (what a dense
    convolution computes, and the usual convention for MFU); False counts only the taps on
    the board, as XLA's cost analysis does: (3N - 2)^2 of every (3N)^2 on an N x N board.
    """
    w, n = cfg.conv_width, cfg.board_size
    points = n * n
    taps = 9 * points if count_padding else (3 * n - 2) ** 2  # 3x3 taps over the board
    convs = taps * (cfg.input_planes * w + cfg.trunk_layers * 2 * w * w)
    convs += points * (w * cfg.policy_conv_width + w * cfg.value_conv_width)
    dense = (cfg.policy_conv_width * points * cfg.moves
             + cfg.value_conv_width * points * cfg.fc_width + cfg.fc_width)
    return 2 * (convs + dense)
