"""Sum-pooled embedding bags, plain or with the table's rows split over a mesh axis.

Left to itself, XLA's partitioner turns a gather from a row-split table into local gathers
whose [batch, hotness, dim] partial rows are then summed across the row shards: for a
feature with 100 ids per example that moves 100 times the data the pooled [batch, dim]
result needs. The row-sharded bag below pools on each shard first, as torchrec's row-wise
sharding does: ids are all-gathered over the row axis (ids are small), each shard sums the
rows it owns, and one reduce-scatter hands every device the pooled vectors of its examples.
"""

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
