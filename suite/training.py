"""One training step from a workload's parts: loss and optimizer in, new state out.

value_and_grad -> (accumulate over micro-batches) -> optimizer update -> apply -> EMA.
Workloads supply `loss` and `optimizer`; none of them repeats this sequence.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

# loss(params, model_state, batch, rng) -> (loss, (metrics, new model_state))
LossFn = Callable[[Any, Any, dict, jax.Array], tuple[jax.Array, tuple[dict, Any]]]


@struct.dataclass
class TrainState:
    """What a training step carries. model_state holds non-trained variables (batch-norm
    statistics) and is {} where there are none; ema_params is None unless the run keeps an
    exponential moving average of the params, which eval then uses."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any = struct.field(default_factory=dict)
    ema_params: Any = None


def init_state(params, model_state, tx: optax.GradientTransformation, *,
               ema: bool) -> TrainState:
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), model_state or {},
                      jax.tree.map(jnp.copy, params) if ema else None)


def eval_params(state: TrainState):
    """The weights an eval scores: the EMA where the run keeps one."""
    return state.params if state.ema_params is None else state.ema_params


def _micro_batches(batch: dict, k: int) -> dict:
    """(B, ...) -> (k, B/k, ...) with micro-batch i = rows i, i+k, i+2k, ...

    Strided, not contiguous: the batch is split over devices in contiguous row ranges, so
    every device keeps 1/k of its own rows in each micro-batch and nothing moves."""
    def split(x):
        if x.shape[0] % k:
            raise ValueError(f"batch of {x.shape[0]} rows does not split into {k} micro-batches")
        return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def gradients(loss_fn: LossFn, params, model_state, batch: dict, rng: jax.Array,
              accum_steps: int = 1):
    """(loss, metrics, new model_state, grads), the gradient averaged over accum_steps
    micro-batches run one after another (a scan: one micro-batch's activations alive at a
    time). With equal-sized micro-batches and a mean loss it equals the one big batch's."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if accum_steps == 1:
        (loss, (metrics, model_state)), grads = grad_fn(params, model_state, batch, rng)
        return loss, metrics, model_state, grads

    def one(carry, xs):
        grads_sum, state = carry
        micro, key = xs
        (loss, (metrics, state)), grads = grad_fn(params, state, micro, key)
        return (jax.tree.map(jnp.add, grads_sum, grads), state), (loss, metrics)

    zeros = jax.tree.map(jnp.zeros_like, params)
    keys = jax.random.split(rng, accum_steps)
    (grads, model_state), (losses, metrics) = jax.lax.scan(
        one, (zeros, model_state), (_micro_batches(batch, accum_steps), keys))
    grads = jax.tree.map(lambda g: g / accum_steps, grads)
    return losses.mean(), jax.tree.map(jnp.mean, metrics), model_state, grads


def train_step(loss_fn: LossFn, tx: optax.GradientTransformation, state: TrainState,
               batch: dict, rng: jax.Array, *, accum_steps: int = 1,
               ema_decay: float = 0.0) -> tuple[TrainState, dict]:
    loss, metrics, model_state, grads = gradients(loss_fn, state.params, state.model_state,
                                                  batch, rng, accum_steps)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
        ema = optax.incremental_update(params, ema, 1.0 - ema_decay)
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                        model_state=model_state, ema_params=ema)
    return new, {"loss": loss, **metrics}
