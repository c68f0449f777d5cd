"""Post-training static int8 quantization of a Flax linen model, with qwix.

Method (no retraining; this text is the submission's calibration.md):

1. Batch norm is folded into the convolution before it, first, by the caller
   (for ResNet: `models.resnet.fold_batch_norm` and the `folded=True` model).
   Each eval-mode norm is a per-channel affine map, so the folded model computes
   the same function; quantizing the folded kernels quantizes what actually runs.
2. Weights: int8, symmetric, one scale per output channel, scale = max|w| / 127.5
   over that channel (qwix "absmax" weight calibration: max|w| falls on the
   outer edge of the 127 bucket; values are rounded to nearest and clipped).
3. Activations (the input of every convolution and matmul, the network's input
   included): int8, symmetric, one static scale per tensor, fixed before
   serving from a fixed calibration set. qwix's static-range ("absmax") method:
   for each image, max|x| over the tensor; the scale is the mean of that value
   over all calibration images, divided by 127.5, so rare outliers beyond the
   typical range are clipped rather than stretching the grid. Each calibration
   batch weighs equally, so give batches of one size. Calibration runs the model
   with weights and activations already fake-quantized, so each layer's range is
   measured on the inputs it will see at int8.
4. Convolutions and matmuls then run int8 x int8 with int32 accumulation; the
   result is rescaled by (activation scale x weight scale) to float, where bias,
   ReLU, residual adds, pooling and the logits stay. (A backend may still widen
   the int8 inputs of some convs to int32, exactly; `matmuls` shows what runs.)

Only convolutions and dot_generals are quantized; everything else is unchanged.
"""

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import qwix
from flax import linen as nn
from flax import traverse_util

# The conv half of qwix's QT path; reached into only for the workaround below.
from qwix._src.core import conv_general_qt


def _rule(rule_type):
    return rule_type(
        weight_qtype=jnp.int8,
        weight_calibration_method="absmax",
        act_qtype=jnp.int8,
        act_calibration_method="absmax",
        act_static_scale=True,
    )


class _CalibrationProvider(qwix.QtProvider):
    """qwix's QT provider, whose conv skips the custom_vjp wrapper.

    In qwix 0.1.8 a QT conv updates its quant_stats inside the custom_vjp
    function, so under jax.jit the update leaks a tracer (UnexpectedTracerError);
    its dot_general collects stats outside and is fine. Calibration needs no
    gradient, so calling the forward half directly computes the same thing and
    lets the whole calibration step be jitted: one compile, where eager op-by-op
    dispatch (the other way round the leak) spent 13 s compiling single ops for
    ResNetTiny on 2 CPU cores, and again for each new batch shape.
    """

    def conv_general_dilated(self, lhs, rhs, window_strides, padding, lhs_dilation=None,
                             rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                             batch_group_count=1, precision=None, preferred_element_type=None,
                             out_sharding=None):
        # The one rule matches every module, so every conv is quantized here.
        rule, op_id = self._get_current_rule_and_op_id("conv_general_dilated")
        config = self._create_conv_general_qt_config(rule, op_id, lhs, rhs)
        out, _ = conv_general_qt.conv_general_qt_fwd(
            lhs, rhs, config, window_strides, padding, lhs_dilation, rhs_dilation,
            dimension_numbers, feature_group_count, batch_group_count, out_sharding)
        return out


def _calibrate(module: nn.Module, variables: dict, batches: list[np.ndarray]) -> dict:
    """qwix quant_stats (running sums of per-image activation absmax) over batches."""
    qt_module = qwix.quantize_model(module, _CalibrationProvider([_rule(qwix.QtRule)]))

    @jax.jit
    def step(stats, images):
        _, new = qt_module.apply({**variables, **stats}, images, train=False,
                                 mutable=["quant_stats"])
        return new

    # Start from zeroed stats of the right structure rather than none, so the
    # first step and the rest share one compiled program; zero sums and count
    # are exactly what qwix creates on a first step.
    shapes = jax.eval_shape(step, {}, jnp.asarray(batches[0]))
    stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    for images in batches:
        stats = step(stats, jnp.asarray(images))
    return stats["quant_stats"]


def quantize_int8(
    module: nn.Module, variables: Any, calibration_batches: Iterable[np.ndarray]
) -> tuple[nn.Module, dict]:
    """(qmodule, qvariables): the int8 model, applied as qmodule.apply(qvariables, x, train=False).

    module is called as module.apply(variables, images, train=False); variables
    holds "params" and any other collections the eval call reads, which pass
    through unchanged. The result is jittable and its weights are stored int8.
    """
    variables = dict(nn.unbox(variables))
    batches = list(calibration_batches)
    if not batches:
        raise ValueError("quantization needs at least one calibration batch")
    quant_stats = _calibrate(module, variables, batches)
    qmodule = qwix.quantize_model(module, qwix.PtqProvider([_rule(qwix.QuantizationRule)]))
    # The PTQ model's own init says, per param, how qwix will quantize it; only
    # its shapes are needed, so nothing is computed.
    abstract = jax.eval_shape(
        lambda x: qmodule.init(jax.random.key(0), x, train=False), jnp.asarray(batches[0][:1]))
    abstract_params = abstract["params"]
    # Jitted, the weights quantize as one program, not op by op (each op its own
    # compile); the activation scales stay eager because qwix checks each
    # stat's count in Python. The two trees hold disjoint leaves.
    weights = jax.jit(lambda p: qwix.quantize_params(p, abstract_params))(variables["params"])
    scales = qwix.quantize_params({}, abstract_params, quant_stats)
    qparams = traverse_util.unflatten_dict(
        traverse_util.flatten_dict(weights) | traverse_util.flatten_dict(scales))
    return qmodule, {**variables, "params": qparams}


# One compiled-HLO instruction: "%name = type opcode(operands), attributes".
_INSTRUCTION = re.compile(r"%([\w.\-]+) = (.+?) ([a-z][\w\-]*)\(([^)]*)\)(.*)")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_MATMUL_TARGET = re.compile(r"conv|gemm|matmul", re.IGNORECASE)


class Matmul(NamedTuple):
    kind: str  # the opcode, or a library call's (cuDNN, cuBLAS, oneDNN) custom-call target
    name: str
    input_types: tuple[str, ...]  # element types of the two inputs, e.g. ("s8", "s8")


def matmuls(hlo_text: str) -> list[Matmul]:
    """Every convolution and matmul in compiled HLO, with its inputs' element types.

    Read compiled HLO (`jit(f).lower(...).compile().as_text()`): it is what runs,
    after the backend's rewrites. XLA:CPU, for one, feeds some int8 convs to its
    kernels as s32 (exact, but not int8 arithmetic), which lowered HLO would hide.
    """
    instructions = [m.groups() for m in map(_INSTRUCTION.search, hlo_text.splitlines()) if m]
    element_type = {name: out.split("[", 1)[0] for name, out, *_ in instructions}
    found = []
    for name, _, opcode, args, attributes in instructions:
        kind = opcode
        if opcode == "custom-call":
            target = _TARGET.search(attributes)
            kind = target.group(1) if target else opcode
            if not _MATMUL_TARGET.search(kind):
                continue
        elif opcode not in ("convolution", "dot"):
            continue
        inputs = re.findall(r"%([\w.\-]+)", args)[:2]
        found.append(Matmul(kind, name, tuple(element_type.get(x, "?") for x in inputs)))
    return found


def int8_matmuls(hlo_text: str) -> list[Matmul]:
    """The convolutions and matmuls of compiled HLO that run int8 x int8."""
    return [m for m in matmuls(hlo_text) if m.input_types == ("s8", "s8")]
