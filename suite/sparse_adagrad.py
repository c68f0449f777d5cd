"""The reference's Adagrad, dense (an optax transform) and sparse (the looked-up rows only).

MLPerf's DLRM-DCNv2 reference updates every parameter as
    acc += g**2;  p -= lr * g / (sqrt(acc) + eps)
(torch's Adagrad, fbgemm's exact Adagrad: eps outside the root). optax.adagrad puts eps inside
(rsqrt(acc + eps)), which moves a step by percents wherever acc is near eps (1e-8), so both
paths here use the reference's form. The state is optax's ScaleByRssState in optax.adagrad's
chain, so a checkpoint has the layout it always had.

A table's gradient is zero outside the rows a batch looked up, so the sparse update reads and
writes those rows alone: each id of a bag gets the gradient of its pooled vector (sum pooling),
an id's copies in the batch are summed first, as the dense gradient sums them, then the same
formula applies. Rows split over a mesh axis are updated by the shard that owns them, the ids
reaching it by all_gather or all_to_all (models.embedding_bag's two routes).
"""

import math

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from models import embedding_bag


def reference_adagrad(learning_rate: optax.ScalarOrSchedule,
                      eps: float) -> optax.GradientTransformation:
    """optax.adagrad's chain and state with the reference's denominator sqrt(acc) + eps."""
    def init(params):
        return optax.ScaleByRssState(sum_of_squares=jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        acc = jax.tree.map(lambda g, a: a + g * g, grads, state.sum_of_squares)
        steps = jax.tree.map(lambda g, a: g / (jnp.sqrt(a) + eps), grads, acc)
        return steps, optax.ScaleByRssState(sum_of_squares=acc)

    return optax.chain(optax.GradientTransformation(init, update),
                       optax.scale_by_learning_rate(learning_rate))


def update_rows(table: jax.Array, acc: jax.Array, ids: jax.Array, grads: jax.Array,
                lr: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """(table, acc) [rows, dim] after one Adagrad step on the rows named by ids [m], each
    with its gradient grads [m, dim]; ids outside [0, rows) are another shard's (ignored)."""
    rows, m = table.shape[0], ids.shape[0]
    table, acc = jnp.asarray(table), jnp.asarray(acc)
    ids = jnp.where((ids >= 0) & (ids < rows), ids, rows)
    unique, inverse = jnp.unique(ids, size=m, fill_value=rows, return_inverse=True)
    g = jax.ops.segment_sum(grads, inverse.reshape(-1), num_segments=m)
    summed = acc.at[unique].get(mode="fill", fill_value=0.0) + g * g
    # The fill entries (index rows) and ignored ids land out of range and are dropped.
    table = table.at[unique].add(-lr * g / (jnp.sqrt(summed) + eps), mode="drop")
    return table, acc.at[unique].set(summed, mode="drop")


def update_bags(table: jax.Array, acc: jax.Array, ids: jax.Array, bag_grads: jax.Array,
                lr: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """update_rows for ids [batch, hotness] and the gradients of their pooled bags
    [batch, dim]: every id of a bag gets its bag's gradient."""
    hot = ids.shape[1]
    return update_rows(table, acc, ids.reshape(-1), jnp.repeat(bag_grads, hot, axis=0), lr,
                       eps)


def row_sharded_update(table: jax.Array, acc: jax.Array, ids: jax.Array,
                       bag_grads: jax.Array, lr: jax.Array, eps: float, *, mesh: Mesh,
                       row_axis: str, batch_axes: tuple[str, ...],
                       capacity_factor: float | None) -> tuple[jax.Array, jax.Array]:
    """update_bags for table and acc split by rows over row_axis, ids and bag_grads split by
    examples over batch_axes. capacity_factor None: every shard gets every id (all_gather)
    and keeps its own; else each id goes to its owner (all_to_all, embedding_bag.capacity
    slots per destination; the forward pass of the same batch has already made the loss
    non-finite if they overflow)."""
    others = tuple(a for a in batch_axes if a != row_axis)
    shards, copies = mesh.shape[row_axis], math.prod(mesh.shape[a] for a in others)

    def local(table, acc, ids, g, lr):
        if others:  # the table is whole along these axes: each copy needs their examples
            ids = jax.lax.all_gather(ids, others, axis=0, tiled=True)
            g = jax.lax.all_gather(g, others, axis=0, tiled=True)
        rows, hot = table.shape[0], ids.shape[1]
        if capacity_factor is None:
            ids = jax.lax.all_gather(ids, row_axis, axis=0, tiled=True)
            g = jax.lax.all_gather(g, row_axis, axis=0, tiled=True)
            own = ids - jax.lax.axis_index(row_axis) * rows
            return update_bags(table, acc, own, g, lr, eps)
        flat = ids.reshape(-1)
        owner = flat // rows
        # Room for what the forward pass routed: each of the `copies` devices whose
        # examples were gathered above had capacity() slots per destination. A capacity
        # counted on the gathered ids rounds differently and can drop ids the forward
        # found room for, silently skipping their update.
        slots = copies * embedding_bag.capacity(flat.shape[0] // copies, shards,
                                                capacity_factor)
        slot = embedding_bag.route(owner, shards)
        sent_ids = embedding_bag.pack(flat - owner * rows, owner, slot, shards, slots, -1)
        sent_g = embedding_bag.pack(jnp.repeat(g, hot, axis=0), owner, slot, shards, slots,
                                    0.0)
        got_ids = jax.lax.all_to_all(sent_ids, row_axis, 0, 0, tiled=True)
        got_g = jax.lax.all_to_all(sent_g, row_axis, 0, 0, tiled=True)
        return update_rows(table, acc, got_ids.reshape(-1),
                           got_g.reshape(-1, got_g.shape[-1]), lr, eps)

    rows_spec, batch_spec = P(row_axis, None), P(batch_axes, None)
    # check_vma=False: JAX marks all_gather's result as varying over the gathered axes,
    # though every copy of a shard gets the same examples and so computes the same rows.
    return jax.shard_map(local, mesh=mesh, check_vma=False,
                         in_specs=(rows_spec, rows_spec, batch_spec, batch_spec, P()),
                         out_specs=(rows_spec, rows_spec))(table, acc, ids, bag_grads, lr)
