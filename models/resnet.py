"""ResNet v1.5 in Flax: the MLPerf image-classification reference model.

v1.5 differs from v1 in one place: the bottleneck's stride sits on the 3x3
convolution, not the first 1x1. Kernels carry logical axis names so the runner
can shard them from configuration; for ResNet every name maps to replication
by default (pure data parallelism), which is what MLPerf submissions use.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

# Logical names of a conv kernel's axes: height, width, input and output channels.
CONV_AXES = ("conv_height", "conv_width", "conv_in", "conv_out")
DENSE_AXES = ("embed", "classes")
BN_EPSILON = 1e-5


MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def normalize(pixels: jax.Array, mean_rgb: Sequence[float] = MEAN_RGB,
              std_rgb: Sequence[float] = STD_RGB) -> jax.Array:
    """Pixels (any dtype, 0-255) -> float32 per-channel standard scores."""
    mean = jnp.asarray(mean_rgb, jnp.float32)
    std = jnp.asarray(std_rgb, jnp.float32)
    return (pixels.astype(jnp.float32) - mean) / std


def _conv(dtype: Any, param_dtype: Any, folded: bool = False):
    init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    return functools.partial(
        nn.Conv,
        # A folded conv carries its batch norm's shift as a bias.
        use_bias=folded,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(init, CONV_AXES),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
    )


def _identity_norm(**_):
    return lambda x: x


def _norm(dtype: Any, param_dtype: Any, train: bool, folded: bool = False):
    if folded:
        return _identity_norm
    # Statistics over the whole global batch: under jit the batch axis is one
    # logical array however it is sharded, so this is "sync BN" for free.
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=0.9,
        epsilon=BN_EPSILON,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("conv_out",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
    )


class BottleneckBlock(nn.Module):
    filters: int
    strides: tuple[int, int]
    dtype: Any
    param_dtype: Any
    train: bool
    folded: bool = False

    @nn.compact
    def __call__(self, x):
        conv = _conv(self.dtype, self.param_dtype, self.folded)
        norm = _norm(self.dtype, self.param_dtype, self.train, self.folded)
        residual = x
        y = nn.relu(norm()(conv(self.filters, (1, 1))(x)))
        y = nn.relu(norm()(conv(self.filters, (3, 3), self.strides)(y)))
        y = conv(self.filters * 4, (1, 1))(y)
        # Zero-init of the last BN scale makes each block start as identity,
        # which is what lets large-batch LARS training warm up stably.
        y = norm(scale_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)))(y)
        if residual.shape != y.shape:
            residual = conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(residual)
            residual = norm(name="norm_proj")(residual)
        return nn.relu(residual + y)


class ResNet(nn.Module):
    """ResNet v1.5 with bottleneck blocks.

    small_inputs swaps the ImageNet stem (7x7/2 conv + 3x3/2 max-pool) for one
    3x3/1 conv, so tiny images (the CPU preset's 32x32 digits) keep their pixels.

    folded is the inference form: every batch norm is merged into the conv
    before it (see fold_batch_norm), so the convs have biases and there are no
    norms. It is the form to quantize: the int8 kernels then carry the norms'
    scales, and no float op sits between a conv and its ReLU.
    """

    stage_sizes: Sequence[int]
    num_classes: int = 1000
    # Inputs are pixels, 0-255 (uint8 from the input pipeline); the model normalises them
    # in float32 with ImageNet's channel statistics before its first conv.
    mean_rgb: Sequence[float] = MEAN_RGB
    std_rgb: Sequence[float] = STD_RGB
    num_filters: int = 64
    small_inputs: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    folded: bool = False

    @nn.compact
    def __call__(self, x, train: bool = True):
        if self.folded and train:
            raise ValueError("a folded ResNet is for inference only: call it with train=False")
        conv = _conv(self.dtype, self.param_dtype, self.folded)
        norm = _norm(self.dtype, self.param_dtype, train, self.folded)
        x = normalize(x, self.mean_rgb, self.std_rgb).astype(self.dtype)
        if self.small_inputs:
            x = conv(self.num_filters, (3, 3), name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
        else:
            x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)],
                     name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = BottleneckBlock(
                    self.num_filters * 2**i, strides, self.dtype, self.param_dtype, train,
                    self.folded,
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.normal(0.01), DENSE_AXES
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("classes",)),
        )(x)
        # Logits in f32 so the softmax cross-entropy is computed at full precision.
        return x.astype(jnp.float32)


# The named models (--config.model): blocks per stage, width and stem.
SHAPES = {
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), num_filters=64, small_inputs=False),
    # CPU-sized: one block per stage, narrow, small-image stem (the digits' 16x16 pixels).
    "resnet_tiny": dict(stage_sizes=(1, 1, 1, 1), num_filters=8, small_inputs=True),
    # The same blocks behind ResNet-50's stem, for images at the reference 224x224: the
    # small-image stem would run stage 1 on all 50,176 pixels, the ImageNet one on 3,136.
    "resnet_tiny224": dict(stage_sizes=(1, 1, 1, 1), num_filters=8, small_inputs=False),
}
ResNet50 = functools.partial(ResNet, **SHAPES["resnet50"])
ResNetTiny = functools.partial(ResNet, **SHAPES["resnet_tiny"], num_classes=10)


# The norm that follows each conv. Unnamed layers pair by index (Conv_k feeds
# BatchNorm_k, since every conv in a block is followed by exactly one norm); the
# named ones are listed. These are the training checkpoint's names, so they stay.
_NAMED_CONV_NORMS = {"conv_init": "bn_init", "conv_proj": "norm_proj"}


def _norm_after(conv_name: str) -> str | None:
    if conv_name in _NAMED_CONV_NORMS:
        return _NAMED_CONV_NORMS[conv_name]
    if conv_name.startswith("Conv_"):
        return "BatchNorm_" + conv_name.removeprefix("Conv_")
    return None


def fold_batch_norm(params: Any, batch_stats: Any, epsilon: float = BN_EPSILON) -> dict:
    """Params of the folded=True ResNet, computing what the train=False one computes.

    Each eval-mode norm is the per-channel affine map x * s + (beta - mean * s)
    with s = gamma / sqrt(var + eps); applied after a conv it is the same conv
    with its kernel's output channels scaled by s, plus that shift as a bias.
    Takes boxed or unboxed trees; returns unboxed ones. Pure, so it can be jitted.
    """
    params, batch_stats = nn.unbox(params), nn.unbox(batch_stats)

    def fold(module: dict, stats: dict) -> dict:
        norms = {name for name in module if "mean" in stats.get(name, {})}
        folded, unused = {}, set(norms)
        for name, sub in module.items():
            norm = _norm_after(name)
            if name in norms:
                continue  # folded into its conv
            if norm is not None:
                if norm not in norms:
                    raise ValueError(f"conv {name} has no batch norm {norm} to fold")
                scale = module[norm]["scale"] * jax.lax.rsqrt(stats[norm]["var"] + epsilon)
                folded[name] = {
                    "kernel": sub["kernel"] * scale,  # broadcasts over the output axis
                    "bias": module[norm]["bias"] - stats[norm]["mean"] * scale,
                }
                unused.discard(norm)
            elif "kernel" in sub:
                folded[name] = dict(sub)  # the classifier: no norm after it
            else:
                folded[name] = fold(sub, stats.get(name, {}))
        if unused:
            raise ValueError(f"batch norms with no conv before them: {sorted(unused)}")
        return folded

    return fold(params, batch_stats)


def conv_flops(h: int, w: int, k: int, c_in: int, c_out: int) -> int:
    """Multiply-adds x2 of one conv producing an h x w output map."""
    return 2 * h * w * k * k * c_in * c_out


def forward_flops_per_example(
    stage_sizes: Sequence[int],
    num_filters: int,
    num_classes: int,
    image_size: int,
    small_inputs: bool = False,
) -> int:
    """Forward-pass FLOPs of one image, counted by hand from the architecture.

    Counts convolutions and the classifier (the matmul work); batch norm,
    ReLU and pooling are a rounding error next to them and cost no MXU/tensor-core time.
    """
    if small_inputs:
        size = image_size
        flops = conv_flops(size, size, 3, 3, num_filters)
    else:
        size = -(-image_size // 2)  # 7x7 stride 2, SAME-like padding
        flops = conv_flops(size, size, 7, 3, num_filters)
        size = -(-size // 2)  # max-pool stride 2
    c_in = num_filters
    for i, num_blocks in enumerate(stage_sizes):
        filters = num_filters * 2**i
        for j in range(num_blocks):
            stride = 2 if i > 0 and j == 0 else 1
            out = -(-size // stride)
            flops += conv_flops(size, size, 1, c_in, filters)
            flops += conv_flops(out, out, 3, filters, filters)
            flops += conv_flops(out, out, 1, filters, filters * 4)
            if c_in != filters * 4 or stride != 1:
                flops += conv_flops(out, out, 1, c_in, filters * 4)
            c_in, size = filters * 4, out
    return flops + 2 * c_in * num_classes
