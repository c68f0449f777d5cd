"""The MLPerf BERT reference's optimizer, from optax parts: LAMB after global-norm clipping,
with a linear warmup into a polynomial decay.

The reference (MLCommons' TF run_pretraining.py and lamb_optimizer_v1.py):
  - gradients are clipped to global norm 1.0 before the optimizer sees them;
  - Adam moments with bias correction, epsilon added after the square root;
  - weight decay added to the update, then the layer-wise trust ratio |w| / |update|
    (1 where either norm is 0), then the learning rate;
  - variables whose TF name holds "LayerNorm", "layer_norm" or "bias" get neither the
    decay nor the trust ratio (optax.lamb's mask covers only the decay, hence the chain);
  - the learning rate at step t (0 at the first update) is
      base * (t - start_warmup_step) / warmup         while t - start_warmup_step < warmup,
      base * (1 - min(t, training_steps) / training_steps) ** power   after.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from models import bert_checkpoint

# Substrings of the reference's TF variable names that exclude a variable from the weight
# decay and the trust ratio.
NO_DECAY = ("LayerNorm", "layer_norm", "bias")


@dataclasses.dataclass(frozen=True)
class LambConfig:
    base_lr: float
    training_steps: int  # opt_learning_rate_training_steps: where the decay reaches 0
    warmup_steps: int = 0
    start_warmup_step: int = 0  # may be negative: the warmup then starts part-way
    poly_power: float = 1.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    weight_decay: float = 0.01
    clip_norm: float = 1.0


def learning_rate(c: LambConfig) -> optax.Schedule:
    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        done = jnp.minimum(step, c.training_steps) / c.training_steps
        decayed = c.base_lr * (1.0 - done) ** c.poly_power
        if not c.warmup_steps:
            return decayed
        since = step - c.start_warmup_step
        warming = c.base_lr * since / c.warmup_steps
        return jnp.where(since < c.warmup_steps, warming, decayed)

    return schedule


def decay_mask(params, layers: int):
    """True for the params the reference decays and trust-ratio scales (boxed or not)."""
    names = bert_checkpoint.reference_names(layers)

    def decays(path, _):
        keys = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
        return not any(word in names[keys] for word in NO_DECAY)

    return jax.tree_util.tree_map_with_path(decays, params)


def lamb(c: LambConfig, layers: int) -> optax.GradientTransformation:
    def mask(params):
        return decay_mask(params, layers)

    return optax.chain(
        optax.clip_by_global_norm(c.clip_norm),
        optax.scale_by_adam(b1=c.beta_1, b2=c.beta_2, eps=c.epsilon),
        optax.masked(optax.add_decayed_weights(c.weight_decay), mask),
        optax.masked(optax.scale_by_trust_ratio(), mask),
        optax.scale_by_learning_rate(learning_rate(c)),
    )
