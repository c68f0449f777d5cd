"""Sum-pooled embedding bags, plain or with the table's rows split over a mesh axis.

Left to itself, XLA's partitioner turns a gather from a row-split table into local gathers
whose [batch, hotness, dim] partial rows are then summed across the row shards: for a
feature with 100 ids per example that moves 100 times the data the pooled [batch, dim]
result needs. The row-sharded bag below pools on each shard first, as torchrec's row-wise
sharding does: ids are all-gathered over the row axis (ids are small), each shard sums the
rows it owns, and one reduce-scatter hands every device the pooled vectors of its examples.
Where the row axis is large and bags are small, row_routed_pooled instead sends each id only
to its owner with all_to_all (prefer_all_to_all counts the bytes of both).
"""

import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P


def pooled(table: jax.Array, ids: jax.Array) -> jax.Array:
    """[rows, dim] table, [batch, hotness] ids -> [batch, dim]: the sum of each bag's rows."""
    return jnp.take(table, ids, axis=0).sum(axis=1)


def row_sharded_pooled(table: jax.Array, ids: jax.Array, *, mesh: Mesh, row_axis: str,
                       batch_axes: tuple[str, ...]) -> jax.Array:
    """pooled() for a table split by rows over mesh axis row_axis, with ids split by
    examples over batch_axes (which must include row_axis): same result, pooled per shard."""
    if row_axis not in batch_axes:
        raise ValueError(f"the batch must be split over the row axis {row_axis!r} too")

    def local(shard, bag_ids):
        # Every example of this row group, so each shard sees all ids it may own.
        bag_ids = jax.lax.all_gather(bag_ids, row_axis, axis=0, tiled=True)
        rows = shard.shape[0]
        local_ids = bag_ids - jax.lax.axis_index(row_axis) * rows
        owned = (local_ids >= 0) & (local_ids < rows)
        vectors = jnp.take(shard, jnp.where(owned, local_ids, 0), axis=0)
        partial = jnp.where(owned[..., None], vectors, 0.0).sum(axis=1)
        # Sum the shards' partial bags; each device keeps its own examples' rows.
        return jax.lax.psum_scatter(partial, row_axis, scatter_dimension=0, tiled=True)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(row_axis, None), P(batch_axes, None)),
                         out_specs=P(batch_axes, None))(table, ids)


def capacity(ids_per_device: int, shards: int, factor: float) -> int:
    """Slots per destination of an all_to_all route: factor times an even share of a
    device's ids, never more than all of them (factor <= 0: all of them, which no batch
    can overflow)."""
    if factor <= 0:
        return ids_per_device
    return max(1, min(ids_per_device, math.ceil(factor * ids_per_device / shards)))


def prefer_all_to_all(hotness: int, dim: int, shards: int, factor: float, rows: int,
                      local_batch: int) -> bool:
    """Whether routing a table's ids with all_to_all moves fewer bytes than all_gather.

    Per device and example, all_gather brings in the row group's ids (shards * hotness)
    and the reduce-scatter of pooled vectors (shards * dim); all_to_all sends out and gets
    back factor * hotness ids and as many rows (dim each). So all_to_all wins for few ids
    per example on a large row axis: factor * hotness * (1 + dim) < shards * (hotness + dim).
    Its buffers hold an even share of a device's ids per shard (times factor), which a
    table of fewer rows than shards times those ids cannot spread: such tables gather.
    """
    if shards == 1 or factor <= 0:  # exact capacity moves shards times all_gather's ids
        return False
    if rows < shards * local_batch * hotness:
        return False
    return factor * hotness * (1 + dim) < shards * (hotness + dim)


def route(owner: jax.Array, shards: int) -> jax.Array:
    """owner [m] (each id's destination shard) -> slot [m]: its place in the destination's
    buffer, in order of appearance. Ids whose slot is >= capacity do not fit."""
    one_hot = jax.nn.one_hot(owner, shards, dtype=jnp.int32)
    slot = (jnp.cumsum(one_hot, axis=0) - 1) * one_hot
    return slot.sum(axis=1)


def pack(values: jax.Array, owner: jax.Array, slot: jax.Array, shards: int, slots: int,
         fill) -> jax.Array:
    """values [m, ...] -> [shards, slots, ...] laid out for all_to_all (overflow left out;
    callers detect it from slot)."""
    out = jnp.full((shards, slots, *values.shape[1:]), fill, values.dtype)
    return out.at[owner, slot].set(values, mode="drop")


def _slots(flat_ids: jax.Array, shard_rows: int, shards: int,
           factor: float) -> tuple[jax.Array, jax.Array, int]:
    """One device's ids [m] -> (owner [m], slot [m], slots per destination)."""
    owner = flat_ids // shard_rows
    return owner, route(owner, shards), capacity(flat_ids.shape[0], shards, factor)


def routed_overflow(ids: jax.Array, *, rows: int, mesh: Mesh, row_axis: str,
                    batch_axes: tuple[str, ...], capacity_factor: float) -> jax.Array:
    """How many ids [batch, hotness] of a table of `rows` rows row_routed_pooled finds no
    slot for, over all devices (an int32 scalar): the run's way to tell an overflow from
    a loss that diverged, both being non-finite."""
    shards = mesh.shape[row_axis]

    def local(bag_ids):
        _, slot, slots = _slots(bag_ids.reshape(-1), rows // shards, shards, capacity_factor)
        return jax.lax.psum((slot >= slots).sum(dtype=jnp.int32), batch_axes)

    return jax.shard_map(local, mesh=mesh, in_specs=P(batch_axes, None), out_specs=P())(ids)


def row_routed_pooled(table: jax.Array, ids: jax.Array, *, mesh: Mesh, row_axis: str,
                      batch_axes: tuple[str, ...], capacity_factor: float) -> jax.Array:
    """row_sharded_pooled() with each id sent only to the shard that owns its row
    (all_to_all), which sends the row back; the asking device pools. Buffers hold
    capacity() ids per destination: a batch with more ids for one shard pools NaN for the
    examples that did not fit, so the loss turns non-finite and the run aborts loudly
    instead of training on dropped ids."""
    if row_axis not in batch_axes:
        raise ValueError(f"the batch must be split over the row axis {row_axis!r} too")
    shards = mesh.shape[row_axis]

    def local(shard, bag_ids):
        batch, hot = bag_ids.shape
        rows = shard.shape[0]
        flat = bag_ids.reshape(-1)
        owner, slot, slots = _slots(flat, rows, shards, capacity_factor)
        asked = pack(flat - owner * rows, owner, slot, shards, slots, -1)
        asked = jax.lax.all_to_all(asked, row_axis, 0, 0, tiled=True)
        found = jnp.where((asked >= 0)[..., None], jnp.take(shard, jnp.maximum(asked, 0),
                                                             axis=0), 0.0)
        found = jax.lax.all_to_all(found, row_axis, 0, 0, tiled=True)
        vectors = found.at[owner, slot].get(mode="fill", fill_value=jnp.nan)
        return vectors.reshape(batch, hot, -1).sum(axis=1)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(row_axis, None), P(batch_axes, None)),
                         out_specs=P(batch_axes, None))(table, ids)
