"""Device mesh and shardings: from shapes and logical axis rules, never by running init."""

from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from common.errors import UserError

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # default: the global batch is split over both


def check_shape(num_devices: int, fsdp, model) -> None:
    """UserError unless fsdp x model are positive integers that divide the devices."""
    if not (isinstance(fsdp, int) and isinstance(model, int) and fsdp >= 1 and model >= 1
            and num_devices % (fsdp * model) == 0):
        raise UserError(
            f"mesh fsdp={fsdp} x model={model} does not divide {num_devices} devices; "
            "set --config.mesh.fsdp and --config.mesh.model to divisors of the device count"
        )


def make_mesh(fsdp: int = 1, model: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, model) mesh over all devices of all processes."""
    devices = jax.devices() if devices is None else devices
    n = len(devices)
    check_shape(n, fsdp, model)
    shape = (n // (fsdp * model), fsdp, model)
    # Auto axes: the runner fixes the shardings of params, batches and outputs, and XLA's
    # partitioner places everything in between (an embedding gather over a vocab-split
    # table, say). Explicit axes would make each such op spell out its output sharding.
    types = (AxisType.Auto,) * len(AXES)
    if len(devices) == len(jax.devices()):
        return jax.make_mesh(shape, AXES, types, devices=devices)
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=types)


def batch_axes(rules) -> tuple[str, ...]:
    """The mesh axes a workload's logical axis rules split the batch over.

    Most split it over (data, fsdp); DLRM also over model, whose devices hold different
    table rows but run the dense layers on different examples."""
    for name, axes in rules or ():
        if name == "batch":
            return (axes,) if isinstance(axes, str) else tuple(axes or ())
    return BATCH_AXES


def axis_sizes(num_devices: int, fsdp: int, model: int) -> dict[str, int]:
    return {"data": num_devices // (fsdp * model), "fsdp": fsdp, "model": model}


def batch_sharding(mesh: Mesh, rules=None) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(batch_axes(rules)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(abstract_state: Any, mesh: Mesh, rules) -> Any:
    """NamedShardings for an (abstract, possibly logically boxed) state.

    Leaves without logical names are replicated. The result has the structure
    of the *unboxed* state, which is what the jitted functions carry.
    """
    logical = nn.get_partition_spec(abstract_state)
    return nn.logical_to_mesh_sharding(logical, mesh, rules)


def place(host_tree: Any, shardings: Any) -> Any:
    """Host arrays (the same on every process) -> global arrays with these shardings.

    Each process builds only the shards its own devices hold, so it works where a
    sharding spans devices of other processes (jax.device_put would need them all)."""
    def one(array, sharding):
        array = np.asarray(array)
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    return jax.tree.map(one, host_tree, shardings)


def to_global(local_batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's rows of a batch -> one global array per field."""
    return {
        k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()
    }
