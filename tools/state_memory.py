"""Bytes of train state each device holds, for any workload and mesh, without allocating it.

    python -m tools.state_memory --workload=dlrm_dcnv2 --preset=reference --devices=8 \
        --config.mesh.model=8

--workload, --preset and every --config.* override work as in suite.main (one parser).

The state's shapes come from jax.eval_shape of the workload's init, its shardings from the
same logical axis rules the runner uses, so a 26-billion-parameter DLRM is sized on a laptop.
"""

import functools
import math

import jax
from absl import app, flags
from flax import linen as nn
from jax.sharding import PartitionSpec

from suite import cli
from suite import mesh as mesh_lib


def bytes_per_device(workload, cfg, num_devices: int) -> dict[str, int]:
    """{"total": bytes of the whole state, "per_device": bytes of the largest shard set,
    "replicated": bytes every device holds in full}."""
    rules = workload.logical_axis_rules(cfg)
    sizes = mesh_lib.axis_sizes(num_devices, cfg.mesh.fsdp, cfg.mesh.model)
    with nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(functools.partial(workload.init, cfg,
                                                 workload.synthetic_data_info(cfg)),
                               jax.random.key(0))
    specs = nn.get_partition_spec(boxed)
    leaves = jax.tree.leaves(nn.unbox(boxed))
    spec_leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
    total = per_device = replicated = 0
    for leaf, spec in zip(leaves, spec_leaves, strict=True):
        size = math.prod(leaf.shape) * leaf.dtype.itemsize
        total += size
        mesh_axes = nn.logical_to_mesh_axes(spec, rules)
        split = 1
        for axes in mesh_axes or ():
            for axis in (axes,) if isinstance(axes, str) else (axes or ()):
                split *= sizes[axis]
        per_device += math.ceil(size / split)
        replicated += size if split == 1 else 0
    return {"total": total, "per_device": per_device, "replicated": replicated}


_DEVICES = flags.DEFINE_integer("devices", 8, "Devices the state is sized for.")


def main(argv) -> int:
    workload, cfg = cli.workload(), cli.config()

    def body() -> dict[str, int]:
        mesh_lib.check_shape(_DEVICES.value, cfg.mesh.fsdp, cfg.mesh.model)
        workload.validate(cfg, mesh_lib.axis_sizes(_DEVICES.value, cfg.mesh.fsdp,
                                                   cfg.mesh.model))
        return bytes_per_device(workload, cfg, _DEVICES.value)

    b = cli.call(argv, body)
    gib = 2**30
    print(f"{workload.name} {cli.preset_name()} on {_DEVICES.value} devices "
          f"(fsdp={cfg.mesh.fsdp}, model={cfg.mesh.model}): state {b['total'] / gib:,.2f} GiB "
          f"in all, {b['per_device'] / gib:,.2f} GiB per device "
          f"({b['replicated'] / gib:,.3f} GiB of it replicated)")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
