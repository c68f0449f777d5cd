"""Batch-norm folding and int8 post-training quantization of ResNet.

The folded model must compute what the eval-mode model computes; the int8 model
must really run int8 convolutions and matmuls once compiled, and must classify
held-out digits about as well as the float model it came from.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from sklearn.datasets import load_digits

from models import resnet
from suite.serving import quantize

TRAIN_EXAMPLES = 1400  # of sklearn's 1797 digits; the rest are held out


def _jitted(model):
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def _init(model):
    # Jitted, and always for the same input shape: eager init compiles op by op,
    # and one program is compiled once for the whole test session.
    x = jnp.zeros((1, 16, 16, 3))
    return nn.unbox(jax.jit(lambda: model.init(jax.random.key(0), x, train=False))())


def _init_shapes(model, x):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def test_folded_model_computes_the_eval_model():
    model, folded = resnet.ResNetTiny(), resnet.ResNetTiny(folded=True)
    variables = _init(model)
    rng = np.random.default_rng(0)
    # Norms far from identity (the zero-init last scale would even drop every
    # block's third conv out of the comparison), as after real training.
    params = jax.tree.map(lambda p: p + rng.normal(0, 0.5, p.shape), variables["params"])
    draw = {"mean": lambda s: rng.normal(0, 1, s), "var": lambda s: rng.uniform(0.2, 3, s)}
    batch_stats = jax.tree.map_with_path(
        lambda path, v: draw[path[-1].key](v.shape).astype(np.float32),
        variables["batch_stats"])
    x = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
    expected = _jitted(model)({"params": params, "batch_stats": batch_stats}, x)

    folded_params = jax.jit(resnet.fold_batch_norm)(params, batch_stats)
    folded_shapes = nn.unbox(_init_shapes(folded, x))
    assert jax.tree.structure(folded_params) == jax.tree.structure(folded_shapes["params"])
    got = _jitted(folded)({"params": folded_params}, x)
    assert float(jnp.std(expected)) > 0.1  # logits that a wrong fold would visibly move
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(jnp.abs(expected).max()))


def test_folding_keeps_training_names_and_logical_axes():
    x = jnp.zeros((1, 16, 16, 3))
    params = _init_shapes(resnet.ResNetTiny(), x)["params"]
    # Training checkpoints are keyed by these names.
    assert set(params["BottleneckBlock_0"]) == {
        "Conv_0", "Conv_1", "Conv_2", "BatchNorm_0", "BatchNorm_1", "BatchNorm_2",
        "conv_proj", "norm_proj"}
    assert {"conv_init", "bn_init", "Dense_0"} <= set(params)
    folded = _init_shapes(resnet.ResNetTiny(folded=True), x)
    specs = nn.get_partition_spec(folded)["params"]["BottleneckBlock_0"]
    assert set(specs) == {"Conv_0", "Conv_1", "Conv_2", "conv_proj"}
    assert specs["Conv_1"]["kernel"] == jax.sharding.PartitionSpec(*resnet.CONV_AXES)
    assert specs["Conv_1"]["bias"] == jax.sharding.PartitionSpec("conv_out")


def _digits():
    """sklearn's 8x8 digits, 16x16 (each pixel doubled), grey in 3 channels, as uint8
    pixels like the input pipeline's (the model normalises them)."""
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    images = np.repeat(images[..., None], 3, axis=-1)
    return images, digits.target.astype(np.int32)


@pytest.fixture(scope="module")
def trained_digits_model():
    """ResNetTiny after 300 Adam steps on digits, folded and quantized on training images."""
    images, labels = _digits()
    model = resnet.ResNetTiny()
    variables = _init(model)
    optimizer = optax.adam(3e-3)

    @jax.jit
    def step(params, batch_stats, opt_state, x, y):
        def loss_fn(p):
            logits, new = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
        grads, new = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), new["batch_stats"], opt_state

    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(0)
    for _ in range(300):
        idx = rng.choice(TRAIN_EXAMPLES, 64, replace=False)
        params, batch_stats, opt_state = step(params, batch_stats, opt_state, images[idx],
                                              labels[idx])

    folded = resnet.ResNetTiny(folded=True)
    folded_params = jax.jit(resnet.fold_batch_norm)(params, batch_stats)
    calibration = [images[i:i + 100] for i in range(0, 400, 100)]  # training images only
    qmodel, qvariables = quantize.quantize_int8(folded, {"params": folded_params}, calibration)
    return dict(images=images, labels=labels, model=model,
                variables={"params": params, "batch_stats": batch_stats},
                qmodel=qmodel, qvariables=qvariables)


def test_int8_model_runs_int8_convolutions_and_matmuls(trained_digits_model):
    t = trained_digits_model
    x = t["images"][:32]
    fp32_hlo = _jitted(t["model"]).lower(t["variables"], x).compile().as_text()
    int8_hlo = _jitted(t["qmodel"]).lower(t["qvariables"], x).compile().as_text()
    fp32, int8 = quantize.matmuls(fp32_hlo), quantize.matmuls(int8_hlo)
    print("fp32:", collections.Counter((m.kind, m.input_types) for m in fp32))
    print("int8:", collections.Counter((m.kind, m.input_types) for m in int8))
    assert fp32 and all(m.input_types == ("f32", "f32") for m in fp32)
    assert not quantize.int8_matmuls(fp32_hlo)
    assert {m.kind for m in quantize.int8_matmuls(int8_hlo)} == {"convolution", "dot"}
    # No float matmul is left: XLA:CPU widens a few int8 convs to s32, still integer math.
    assert all(set(m.input_types) <= {"s8", "s32"} for m in int8)
    assert len(int8) == len(fp32)


def test_int8_model_classifies_held_out_digits_like_fp32(trained_digits_model):
    t = trained_digits_model
    x, y = t["images"][TRAIN_EXAMPLES:], t["labels"][TRAIN_EXAMPLES:]
    fp32 = np.asarray(_jitted(t["model"])(t["variables"], x)).argmax(-1)
    int8 = np.asarray(_jitted(t["qmodel"])(t["qvariables"], x)).argmax(-1)
    fp32_top1, int8_top1 = (fp32 == y).mean(), (int8 == y).mean()
    print(f"held-out top-1: fp32 {fp32_top1:.4f}, int8 {int8_top1:.4f}, "
          f"agreement {(fp32 == int8).mean():.4f}")
    assert fp32_top1 > 0.9  # the model learned something, so agreement means something
    assert int8_top1 >= 0.99 * fp32_top1
    assert (int8 == fp32).mean() > 0.97


def test_activation_scales_are_fixed_by_calibration(trained_digits_model):
    # A dynamic scale would stretch to fit faint inputs. The static ones, set on
    # real digits, round inputs 10^4 times fainter to zero at the first conv, so
    # every image gets the same int8 logits; the float model still tells them apart.
    t = trained_digits_model
    faint = t["images"][:8] * 1e-4
    int8 = np.asarray(_jitted(t["qmodel"])(t["qvariables"], faint))
    fp32 = np.asarray(_jitted(t["model"])(t["variables"], faint))
    np.testing.assert_array_equal(int8, np.broadcast_to(int8[0], int8.shape))
    assert np.ptp(fp32, axis=0).max() > 0
