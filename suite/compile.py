"""Sharded, jitted, ahead-of-time compiled init/train/eval for one workload and config."""

import dataclasses
import functools
from typing import Any

import jax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding

from suite import mesh as mesh_lib
from suite import training
from suite.workload import DataInfo, Workload


@dataclasses.dataclass
class Compiled:
    mesh: Mesh
    state_shardings: Any
    abstract_state: Any  # unboxed ShapeDtypeStructs
    batch_sharding: NamedSharding
    init: Any  # jitted: key -> state (sharded)
    train_step: Any  # compiled: (state, batch, key) -> (state, metrics, key)
    eval_step: Any  # compiled: (state, batch) -> sums


def build(workload: Workload, cfg, mesh: Mesh, local_batch: int, process_count: int,
          data: DataInfo | None = None) -> Compiled:
    """data: the run's data facts (the optimizer's schedule reads the epoch length); None
    for a throughput build on synthetic batches, which stands in for the config's sizes."""
    data = workload.synthetic_data_info(cfg) if data is None else data
    rules = workload.logical_axis_rules(cfg)
    key = jax.random.key(0)
    with nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(functools.partial(workload.init, cfg, data), key)
    shardings = mesh_lib.state_shardings(boxed, mesh, rules)
    abstract = nn.unbox(boxed)
    batch_sh = mesh_lib.batch_sharding(mesh, rules)
    repl = mesh_lib.replicated(mesh)

    def init(rng):
        return nn.unbox(workload.init(cfg, data, rng))

    def train(state, batch, rng):
        # The key travels with the state so the host never makes one per step.
        rng, step_rng = jax.random.split(rng)
        state, metrics = workload.train_step(cfg, data, state, batch, step_rng, mesh=mesh)
        return state, metrics, rng

    def evaluate(state, batch):
        return workload.eval_step(cfg, training.eval_params(state), state.model_state, batch,
                                  mesh=mesh)

    init_jit = jax.jit(init, out_shardings=shardings)
    train_jit = jax.jit(
        train,
        in_shardings=(shardings, batch_sh, repl),
        out_shardings=(shardings, repl, repl),
        donate_argnums=(0,),
    )
    eval_jit = jax.jit(evaluate, in_shardings=(shardings, batch_sh), out_shardings=repl)

    def placed(tree, sh):
        if isinstance(sh, NamedSharding):  # one sharding for every leaf
            sh = jax.tree.map(lambda _: sh, tree)
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            tree, sh)

    global_batch = local_batch * process_count
    abs_state = placed(abstract, shardings)
    train_batch = placed(workload.batch_spec(cfg, "train", global_batch), batch_sh)
    eval_batch = placed(workload.batch_spec(cfg, "eval", workload.eval_batch_size(cfg)),
                        batch_sh)
    key_spec = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=repl)
    with nn.logical_axis_rules(rules):
        train_c = train_jit.lower(abs_state, train_batch, key_spec).compile()
        eval_c = eval_jit.lower(abs_state, eval_batch).compile()
    return Compiled(mesh, shardings, abstract, batch_sh, init_jit, train_c, eval_c)
