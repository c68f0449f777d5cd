"""The Flax examples' train steps as peers of ours: ResNet-50 (examples/imagenet) and
Transformer-big (examples/wmt) from a google/flax checkout, built at our config's model,
batch and dtype and run the way their train.py runs them (jax.pmap over the local devices,
gradients averaged with lax.pmean over axis 'batch').

Their models.py is imported as it is. Their train.py imports clu, TensorFlow, tfds and
orbax for its data, logging and checkpoints, none of which a step needs: its definitions
(train_step, the TrainState, the loss, metric and schedule functions) are executed from the
file itself with only the imports they use, so the step timed is their code, unchanged,
without a data pipeline's dependencies.
"""

import __future__

import ast
import functools
import importlib.util
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common.errors import UserError

# What each example's directory is called and which of our workloads it mirrors.
EXAMPLES = {"resnet": "imagenet", "transformer": "wmt"}
# Modules their train.py imports for data, logging and checkpoints, never in a step
# (flax.training.checkpoints alone would import TensorFlow).
_NOT_FOR_A_STEP = {"clu", "tensorflow", "tensorflow_datasets", "orbax", "input_pipeline",
                   "bleu", "decode", "tokenizer", "checkpoints"}


def _example_dir(checkout: str, workload: str) -> str:
    if workload not in EXAMPLES:
        raise UserError(f"no Flax example mirrors {workload}; peers exist for "
                        f"{', '.join(EXAMPLES)}")
    where = os.path.join(checkout, "examples", EXAMPLES[workload])
    for name in ("models.py", "train.py"):
        if not os.path.isfile(os.path.join(where, name)):
            raise UserError(f"--peers={checkout}: no examples/{EXAMPLES[workload]}/{name}; "
                            "pass the root of a google/flax checkout")
    return where


def load_example(checkout: str, workload: str) -> types.SimpleNamespace:
    """(models, train) of the example: models.py imported, train.py's definitions run."""
    where = _example_dir(checkout, workload)
    name = f"flax_example_{EXAMPLES[workload]}"
    spec = importlib.util.spec_from_file_location(f"{name}_models",
                                                  os.path.join(where, "models.py"))
    models = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = models
    spec.loader.exec_module(models)

    path = os.path.join(where, "train.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)

    def needed(node) -> bool:
        if isinstance(node, ast.Import):
            return not any(a.name.split(".")[0] in _NOT_FOR_A_STEP | {"models"}
                           for a in node.names)
        if isinstance(node, ast.ImportFrom):
            node.names = [a for a in node.names if a.name not in _NOT_FOR_A_STEP]
            return bool(node.names) and (node.module or "").split(".")[0] not in _NOT_FOR_A_STEP
        return isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign))

    tree.body = [node for node in tree.body if needed(node)]
    train = types.ModuleType(f"{name}_train")
    train.__dict__["models"] = models
    sys.modules[train.__name__] = train
    # Annotations stay unevaluated: some name types of the modules left out (tf.data).
    code = compile(tree, path, "exec", flags=__future__.annotations.compiler_flag)
    exec(code, train.__dict__)  # noqa: S102 - their file's definitions, as written
    return types.SimpleNamespace(models=models, train=train)


class PeerStep:
    """Their jax.pmap'd train step on one batch of our shapes: run(n) times n steps."""

    def __init__(self, step, state, batch, extra: dict):
        self.step, self.state, self.batch, self.extra = step, state, batch, extra
        self.compile_s = 0.0

    def compile(self) -> None:
        """Their first two steps, as in their loop: pmap compiles on the first call, and
        again on the second, whose state comes out of the step with other shardings than
        the initial one had (measured: both take the full compile time)."""
        t0 = time.perf_counter()
        self.run(1)
        self.run(1)
        self.compile_s = time.perf_counter() - t0

    def run(self, steps: int) -> tuple[float, list]:
        t0 = time.perf_counter()
        metrics = []
        for _ in range(steps):
            self.state, m = self.step(self.state, self.batch, **self.extra)
            metrics.append(m)
        jax.block_until_ready(metrics[-1])
        return time.perf_counter() - t0, metrics


def _split(x: np.ndarray) -> np.ndarray:
    """A global batch as pmap takes it: [local devices, per-device batch, ...]."""
    n = jax.local_device_count()
    if x.shape[0] % n:
        raise UserError(f"batch of {x.shape[0]} does not split over {n} devices")
    return x.reshape(n, x.shape[0] // n, *x.shape[1:])


def _placed(batch: dict) -> dict:
    """On the devices once, with what their loop places batches with: the step is timed,
    not a host-to-device copy (as ours)."""
    from flax import jax_utils

    return next(jax_utils.prefetch_to_device(iter([batch]), 1))


def resnet_peer(example, cfg, batch: dict) -> PeerStep:
    """examples/imagenet's ResNet-50 at cfg's image size, classes, batch and dtype; their
    init, their SGD with Nesterov momentum and their schedule; half_precision off, since
    dtype is chosen here (their create_model would pick float16 on a GPU, with loss
    scaling) and bfloat16 needs no loss scale."""
    m, t = example.models, example.train
    dtype = jnp.dtype(cfg.compute_dtype)
    # Their loss one-hots labels to this module constant (1000, ImageNet's classes): ours.
    t.NUM_CLASSES = cfg.num_classes
    model = m.ResNet50(num_classes=cfg.num_classes, dtype=dtype)
    config = ml_collections.ConfigDict({"momentum": 0.9, "half_precision": False,
                                        "warmup_epochs": 5.0, "num_epochs": 100.0})
    lr_fn = t.create_learning_rate_fn(config, 0.1 * cfg.global_batch_size / 256, 1000)
    state = t.create_train_state(jax.random.key(0), config, model, cfg.image_size, lr_fn)
    # As their train_and_evaluate pmaps it: the state unreplicated in and out.
    step = jax.pmap(functools.partial(t.train_step, learning_rate_fn=lr_fn),
                    in_axes=(None, 0), out_axes=(None, 0), axis_name="batch")
    # Their input pipeline hands the model images already in its dtype.
    theirs = {"image": _split(np.asarray(batch["image"], np.float32)).astype(dtype),
              "label": _split(np.asarray(batch["label"], np.int32))}
    return PeerStep(step, state, _placed(theirs), {})


def transformer_peer(example, cfg, batch: dict) -> PeerStep:
    """examples/wmt's Transformer at cfg's sizes (Transformer-big in the reference: 6+6
    layers, d 1024, ff 4096, 16 heads), vocabulary, length, dropout and dtype; shared
    embeddings and logits through them as ours; their init (Xavier-uniform kernels), their
    Adam(W) with weight decay 0 as their config sets it, their label smoothing."""
    m, t = example.models, example.train
    if cfg.enc_layers != cfg.dec_layers:
        raise UserError("the Flax example has one num_layers for encoder and decoder")
    import flax.linen as nn
    import optax
    from flax import jax_utils

    train_config = m.TransformerConfig(
        vocab_size=cfg.vocab_size, output_vocab_size=cfg.vocab_size, share_embeddings=True,
        logits_via_embedding=True, dtype=jnp.dtype(cfg.compute_dtype), emb_dim=cfg.emb_dim,
        num_heads=cfg.num_heads, num_layers=cfg.enc_layers, qkv_dim=cfg.emb_dim,
        mlp_dim=cfg.mlp_dim, max_len=cfg.max_length, dropout_rate=cfg.dropout_rate,
        attention_dropout_rate=cfg.attention_dropout_rate, deterministic=False, decode=False,
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=nn.initializers.normal(stddev=1e-6))
    rng, init_rng = jax.random.split(jax.random.key(0))
    shape = (1, cfg.max_length)
    model = m.Transformer(train_config.replace(deterministic=True))
    params = jax.jit(model.init)(init_rng, jnp.ones(shape, jnp.float32),
                                 jnp.ones(shape, jnp.float32))["params"]
    lr_fn = t.create_learning_rate_schedule(learning_rate=cfg.base_lr,
                                            warmup_steps=cfg.warmup_steps)
    state = t.TrainState.create(
        apply_fn=model.apply, params=params,
        tx=optax.adamw(learning_rate=lr_fn, b1=0.9, b2=0.98, eps=1e-9, weight_decay=0.0),
        dynamic_scale=None)
    state = jax_utils.replicate(state)
    step = jax.pmap(functools.partial(t.train_step, config=train_config,
                                      learning_rate_fn=lr_fn,
                                      label_smoothing=cfg.label_smoothing),
                    axis_name="batch", donate_argnums=(0,))
    keys = ("inputs", "targets", "inputs_position", "targets_position",
            "inputs_segmentation", "targets_segmentation")
    theirs = {k: _split(np.asarray(batch[k], np.int32)) for k in keys}
    return PeerStep(step, state, _placed(theirs),
                    {"dropout_rng": jax.random.split(rng, jax.local_device_count())})


PEERS = {"resnet": resnet_peer, "transformer": transformer_peer}


def peer(checkout: str, workload: str, cfg, batch: dict) -> PeerStep:
    """Their step for our workload at cfg, fed the same batch as ours (host arrays)."""
    example = load_example(checkout, workload)
    return PEERS[workload](example, cfg, batch)
