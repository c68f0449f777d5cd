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
    train_step: "ByShape"  # (state, batch, key) -> (state, metrics, key)
    eval_step: "ByShape"  # (state, batch) -> sums


def shape_key(batch) -> tuple:
    """What picks a compiled step: each field's name and shape."""
    return tuple(sorted((name, tuple(x.shape)) for name, x in batch.items()))


class ByShape:
    """One step compiled for each batch shape a workload's pipeline yields (its length
    buckets), called like a single compiled step: the batch's shapes choose the executable.
    A shape nobody compiled is an error, never a compile inside the timed run."""

    def __init__(self, name: str, executables: dict[tuple, Any]):
        self.name, self.executables = name, executables

    def __call__(self, state, batch, *rest):
        fn = self.executables.get(shape_key(batch))
        if fn is None:
            raise ValueError(f"no {self.name} was compiled for batch shapes {shape_key(batch)};"
                             " the workload's batch_specs must list every shape its "
                             "pipeline yields")
        return fn(state, batch, *rest)

    def memory_analysis(self):
        """The largest shape's (the last compiled): what bounds a step's memory."""
        return list(self.executables.values())[-1].memory_analysis()

    def cost_analysis(self) -> dict:
        """XLA's cost analysis of the largest shape's program, one device's share."""
        costs = list(self.executables.values())[-1].cost_analysis()
        # Older jax returned one dict per program in a list.
        return (costs[0] if isinstance(costs, list) else costs) or {}


def donates_state(mesh: Mesh) -> bool:
    """Whether a step on this mesh's devices should donate the state it is given.

    On an accelerator, donating is what lets the new parameters and optimizer state take
    the old ones' memory. XLA:CPU instead copies nearly every donated parameter when the
    step starts (it cannot prove that the backward pass's last reads of a weight come before
    the update's write into its buffer): 160 copies, 102 MB, in a ResNet-50 step, and 398
    in a Transformer-big step. Without donation the ResNet-50 step at batch 8 took 2.29 s
    against 2.54 s, the Transformer-big one (4 rows of 64 tokens) 2.39 s against 3.48 s
    (2-core CPU, freed host memory kept: common.host_memory).
    """
    return mesh.devices.flat[0].platform != "cpu"


def build(workload: Workload, cfg, mesh: Mesh, local_batch: int, process_count: int,
          data: DataInfo | None = None, every_shape: bool = True,
          donate: bool | None = None) -> Compiled:
    """data: the run's data facts (the optimizer's schedule reads the epoch length); None
    for a throughput build on synthetic batches, which stands in for the config's sizes.
    every_shape=False compiles only batch_spec's shape (a step benchmark), not every
    shape of batch_specs (a run). donate: whether the step reuses the state's buffers for
    the new state; None: on accelerators, not on CPUs (donates_state)."""
    data = workload.synthetic_data_info(cfg) if data is None else data
    donate = donates_state(mesh) if donate is None else donate
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
        donate_argnums=(0,) if donate else (),
    )
    eval_jit = jax.jit(evaluate, in_shardings=(shardings, batch_sh), out_shardings=repl)

    def placed(tree, sh):
        if isinstance(sh, NamedSharding):  # one sharding for every leaf
            sh = jax.tree.map(lambda _: sh, tree)
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            tree, sh)

    def specs(split, batch):
        if every_shape:
            return workload.batch_specs(cfg, split, batch)
        return [workload.batch_spec(cfg, split, batch)]

    global_batch = local_batch * process_count
    abs_state = placed(abstract, shardings)
    key_spec = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=repl)
    train_c, eval_c = {}, {}
    with nn.logical_axis_rules(rules):
        for spec in specs("train", global_batch):
            train_c[shape_key(spec)] = train_jit.lower(
                abs_state, placed(spec, batch_sh), key_spec).compile()
        for spec in specs("eval", workload.eval_batch_size(cfg)):
            eval_c[shape_key(spec)] = eval_jit.lower(abs_state, placed(spec, batch_sh)).compile()
    return Compiled(mesh, shardings, abstract, batch_sh, init_jit,
                    ByShape("train step", train_c), ByShape("eval step", eval_c))
