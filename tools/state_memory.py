"""Bytes of train state each device holds, for any workload and mesh, without allocating it.

    python -m tools.state_memory --workload=dlrm_dcnv2 --devices=8 --model=8

The state's shapes come from jax.eval_shape of the workload's init, its shardings from the
same logical axis rules the runner uses, so a 26-billion-parameter DLRM is sized on a laptop.
"""

import argparse
import functools
import math

import jax
from flax import linen as nn
from jax.sharding import PartitionSpec

from suite import mesh as mesh_lib
from suite import registry


def bytes_per_device(workload, cfg, num_devices: int) -> dict[str, int]:
    """{"total": bytes of the whole state, "per_device": bytes of the largest shard set,
    "replicated": bytes every device holds in full}."""
    rules = workload.logical_axis_rules(cfg)
    sizes = mesh_lib.axis_sizes(num_devices, cfg.mesh.fsdp, cfg.mesh.model)
    with nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(functools.partial(workload.init, cfg), jax.random.key(0))
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True, choices=registry.names())
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--fsdp", type=int, default=1)
    parser.add_argument("--model", type=int, default=1)
    parser.add_argument("--compute_dtype", default="bfloat16")
    args = parser.parse_args(argv)
    workload = registry.get(args.workload)
    cfg = workload.config(args.preset)
    cfg.mesh.fsdp, cfg.mesh.model = args.fsdp, args.model
    cfg.compute_dtype = args.compute_dtype
    mesh_lib.check_shape(args.devices, args.fsdp, args.model)
    b = bytes_per_device(workload, cfg, args.devices)
    gib = 2**30
    print(f"{args.workload} {args.preset} on {args.devices} devices (fsdp={args.fsdp}, "
          f"model={args.model}): state {b['total'] / gib:,.2f} GiB in all, "
          f"{b['per_device'] / gib:,.2f} GiB per device "
          f"({b['replicated'] / gib:,.3f} GiB of it replicated)")


if __name__ == "__main__":
    main()
