"""DLRM-DCNv2 in Flax: the MLPerf recommendation (Criteo 1TB multi-hot) reference model.

The layout of torchrec's `DLRM_DCN`: a bottom MLP on the dense features, one sum-pooled
embedding bag per categorical feature, a low-rank DCNv2 cross network over the
concatenation [bottom output, pooled_0, ..., pooled_{F-1}], and a top MLP down to one logit.

Inputs: dense [batch, num_dense] float32 and sparse [batch, sparse_width] int32, where
feature k's ids are the columns offsets[k]:offsets[k] + hotness[k] (offsets being the
running sum of hotness). Ids must lie in [0, vocab_sizes[k]). Output: [batch] float32 logits.

Params are float32 whatever config.dtype is; the MLPs and the cross network compute in
config.dtype. Tables carry the logical axes ("table_rows", "table_dim") so a workload can
split their rows over a mesh axis; dense params carry names no rule maps ("mlp_in",
"mlp_out"), so they stay replicated and the dense part runs data parallel.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from models import embedding_bag

_TABLE_AXES = ("table_rows", "table_dim")
_KERNEL_AXES = ("mlp_in", "mlp_out")
_BIAS_AXES = ("mlp_out",)


@dataclasses.dataclass(frozen=True)
class DLRMConfig:
    vocab_sizes: tuple[int, ...]
    hotness: tuple[int, ...]  # ids per example (multi-hot) of each table
    embed_dim: int = 128
    num_dense: int = 13
    bottom_mlp: tuple[int, ...] = (512, 256, 128)
    top_mlp: tuple[int, ...] = (1024, 1024, 512, 256, 1)
    dcn_layers: int = 3
    dcn_low_rank: int = 512
    dtype: Any = jnp.float32
    # Stored rows of each table are padded up to a multiple of this, so splitting rows
    # over a mesh axis of this size divides evenly; the padded rows are never looked up.
    row_multiple: int = 1

    def __post_init__(self):
        # Tuples even when built from lists (flags, JSON): the config must stay hashable,
        # since Flax modules holding it are compared and hashed by jit.
        for name in ("vocab_sizes", "hotness", "bottom_mlp", "top_mlp"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.vocab_sizes or len(self.vocab_sizes) != len(self.hotness):
            raise ValueError(f"need one hotness per table: {len(self.vocab_sizes)} tables, "
                             f"{len(self.hotness)} hotness values")
        if min(self.vocab_sizes) < 1 or min(self.hotness) < 1:
            raise ValueError("every table needs >= 1 row and >= 1 id per example")
        sizes = dict(embed_dim=self.embed_dim, num_dense=self.num_dense,
                     dcn_low_rank=self.dcn_low_rank, row_multiple=self.row_multiple)
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.dcn_layers < 0:
            raise ValueError(f"dcn_layers must be >= 0, got {self.dcn_layers}")
        if not self.bottom_mlp or self.bottom_mlp[-1] != self.embed_dim:
            raise ValueError(f"bottom_mlp {self.bottom_mlp} must end in embed_dim "
                             f"{self.embed_dim}: its output sits beside the pooled embeddings")
        if not self.top_mlp or self.top_mlp[-1] != 1:
            raise ValueError(f"top_mlp {self.top_mlp} must end in 1 (one logit)")

    @property
    def num_tables(self) -> int:
        return len(self.vocab_sizes)

    @property
    def sparse_width(self) -> int:
        """Columns of the batch's sparse array: every table's ids side by side."""
        return sum(self.hotness)

    @property
    def sparse_offsets(self) -> tuple[int, ...]:
        """First sparse column of each table's ids."""
        return tuple(int(v) for v in np.cumsum((0,) + self.hotness[:-1]))

    @property
    def interaction_dim(self) -> int:
        """Width of the cross network's input: the bottom output and every pooled bag."""
        return (1 + self.num_tables) * self.embed_dim

    def padded_rows(self, table: int) -> int:
        return -(-self.vocab_sizes[table] // self.row_multiple) * self.row_multiple


def _torch_linear_init(fan_in: int):
    """torch.nn.Linear's default for kernel and bias alike: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The reference trains from this init, so its learning rates and warm-up carry over.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _embedding_init(vocab_size: int):
    # torchrec's default bound uses the real vocabulary. The real rows are drawn alone and
    # the padding is zeros, so a table padded for row sharding starts with exactly the
    # values of the unpadded one: sharded and single-device runs train the same model.
    bound = math.sqrt(1.0 / vocab_size)

    def init(key, shape, dtype=jnp.float32):
        real = jax.random.uniform(key, (vocab_size, *shape[1:]), dtype, -bound, bound)
        return jnp.pad(real, ((0, shape[0] - vocab_size), (0, 0)))

    return init


# torch's xavier_normal_ draws an untruncated normal; jax's glorot_normal truncates.
_xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")


def _linear(cfg, features, fan_in, name):
    init = _torch_linear_init(fan_in)
    return nn.Dense(features, dtype=cfg.dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=nn.with_logical_partitioning(init, _KERNEL_AXES),
                    bias_init=nn.with_logical_partitioning(init, _BIAS_AXES))


class MLP(nn.Module):
    """Linear layers with ReLU after each; the last one's ReLU is optional."""

    config: DLRMConfig
    features: tuple[int, ...]
    relu_last: bool

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.features):
            x = _linear(self.config, width, x.shape[-1], f"dense_{i}")(x)
            if self.relu_last or i < len(self.features) - 1:
                x = nn.relu(x)
        return x


class LowRankCrossNet(nn.Module):
    """DCNv2 with low-rank weights: x_{l+1} = x0 * (W_l (V_l x_l) + b_l) + x_l."""

    config: DLRMConfig

    @nn.compact
    def __call__(self, x0):
        cfg = self.config
        width = x0.shape[-1]
        x = x0
        for layer in range(cfg.dcn_layers):
            common = dict(dtype=cfg.dtype, param_dtype=jnp.float32,
                          kernel_init=nn.with_logical_partitioning(_xavier_normal, _KERNEL_AXES))
            down = nn.Dense(cfg.dcn_low_rank, use_bias=False, name=f"v_{layer}", **common)
            up = nn.Dense(width, name=f"w_{layer}", **common,
                          bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                                 _BIAS_AXES))
            x = x0 * up(down(x)) + x
        return x


class DLRM(nn.Module):
    config: DLRMConfig
    # (table, ids [batch, hotness]) -> pooled [batch, dim]: embedding_bag.pooled, or the
    # row-sharded bag a workload picks for tables split over a mesh axis.
    bag: Callable = embedding_bag.pooled

    @nn.compact
    def __call__(self, dense, sparse):
        cfg = self.config
        if dense.shape[-1] != cfg.num_dense or sparse.shape[-1] != cfg.sparse_width:
            raise ValueError(f"expected dense [B, {cfg.num_dense}] and sparse "
                             f"[B, {cfg.sparse_width}], got {dense.shape} and {sparse.shape}")
        features = [MLP(cfg, cfg.bottom_mlp, relu_last=True, name="bottom_mlp")(
            dense.astype(cfg.dtype))]
        for k, (offset, hot) in enumerate(zip(cfg.sparse_offsets, cfg.hotness, strict=True)):
            table = self.param(
                f"embedding_{k}",
                nn.with_logical_partitioning(_embedding_init(cfg.vocab_sizes[k]), _TABLE_AXES),
                (cfg.padded_rows(k), cfg.embed_dim), jnp.float32)
            # Pooling stays in float32 like the reference's embedding bags; only the
            # pooled vector drops to cfg.dtype.
            bag = self.bag(table, sparse[:, offset:offset + hot])
            # A no-op unless the caller passes a "perturbations" collection: then the gradient
            # w.r.t. it is the pooled bag's, all a sparse table update needs.
            bag = self.perturb(f"pooled_{k}", bag)
            features.append(bag.astype(cfg.dtype))
        x = LowRankCrossNet(cfg, name="cross_net")(jnp.concatenate(features, axis=-1))
        logits = MLP(cfg, cfg.top_mlp, relu_last=False, name="top_mlp")(x)
        return logits[:, 0].astype(jnp.float32)


def abstract_variables(cfg: DLRMConfig, batch_size: int = 1):
    """Shapes (and logical names) of DLRM(cfg)'s variables; nothing is allocated."""
    dense = jax.ShapeDtypeStruct((batch_size, cfg.num_dense), jnp.float32)
    sparse = jax.ShapeDtypeStruct((batch_size, cfg.sparse_width), jnp.int32)
    return jax.eval_shape(DLRM(cfg).init, jax.random.key(0), dense, sparse)


def embedding_rows(cfg: DLRMConfig) -> int:
    """Real rows over all tables (padding left out)."""
    return sum(cfg.vocab_sizes)


def param_count(cfg: DLRMConfig) -> int:
    """Real parameters: every param of the initialised model, less the tables' padded rows."""
    params = nn.unbox(abstract_variables(cfg))["params"]
    stored = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
    padding = sum(cfg.padded_rows(k) - cfg.vocab_sizes[k] for k in range(cfg.num_tables))
    return stored - padding * cfg.embed_dim


def forward_flops(cfg: DLRMConfig) -> float:
    """FLOPs of one example's forward pass, counted by hand from the architecture.

    Counts 2 per multiply-add of every matmul (bottom MLP, both low-rank factors of each
    cross layer, top MLP) and the adds of sum pooling ((hotness - 1) * embed_dim per bag).
    Leaves out the gathers, biases, ReLUs and the cross layers' elementwise scale and
    residual (3 * interaction_dim per layer, under 0.1% at the reference size).
    A training step is about 3x this.
    """
    def mlp(fan_in, widths):
        total = 0
        for width in widths:
            total += 2 * fan_in * width
            fan_in = width
        return total

    pooling = sum(hot - 1 for hot in cfg.hotness) * cfg.embed_dim
    cross = cfg.dcn_layers * 2 * (2 * cfg.interaction_dim * cfg.dcn_low_rank)
    return float(mlp(cfg.num_dense, cfg.bottom_mlp) + pooling + cross
                 + mlp(cfg.interaction_dim, cfg.top_mlp))
