"""DLRM-DCNv2's sparse table update (the looked-up rows only) equals the dense one, and ids
routed to their shard by all_to_all pool and differentiate like the all_gather route."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from models import embedding_bag
from suite import compile as compile_lib
from suite import lifecycle, sparse_adagrad
from suite import mesh as mesh_lib
from suite.config import RunOptions
from tests.helpers import read_log
from tests.test_dlrm_workload import _batches, _small_cfg


def test_row_update_is_the_dense_adagrad_step_with_repeated_ids():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(10, 3)).astype(np.float32)
    acc = np.zeros((10, 3), np.float32)
    acc[2] = 0.5  # an earlier step's accumulator
    ids = np.array([[2, 2], [7, 2], [0, 7]], np.int32)  # id 2 three times, 7 twice
    bag_grads = rng.normal(size=(3, 3)).astype(np.float32)
    dense_grad = np.zeros_like(table)
    np.add.at(dense_grad, ids.reshape(-1), np.repeat(bag_grads, 2, axis=0))
    tx = sparse_adagrad.reference_adagrad(0.1, 1e-8)
    steps, state = tx.update(dense_grad, (sparse_adagrad.optax.ScaleByRssState(acc),
                                          tx.init(table)[1]))
    new_table, new_acc = jax.jit(sparse_adagrad.update_bags)(table, acc, ids, bag_grads, 0.1,
                                                             1e-8)
    np.testing.assert_allclose(new_acc, state[0].sum_of_squares, rtol=1e-6)
    np.testing.assert_allclose(new_table, table + steps, rtol=1e-6)
    # By hand for one repeated row: the reference's formula on the summed gradient.
    g = bag_grads[0] * 2 + bag_grads[1]
    np.testing.assert_allclose(new_table[2], table[2] - 0.1 * g / (np.sqrt(0.5 + g * g) + 1e-8),
                               rtol=1e-6)
    new_table, new_acc = np.asarray(new_table), np.asarray(new_acc)
    untouched = [r for r in range(10) if r not in (0, 2, 7)]
    assert (new_table[untouched] == table[untouched]).all() and not new_acc[untouched].any()


# Three tables (20, 600 and 100 rows; 2, 3 and 1 ids an example): compiling the sharded
# step is most of this file's time, and more tables would test nothing new.
TABLES = dict(vocab_sizes=(20, 600, 100), hotness=(2, 3, 1))


def _train(sharding, model, batches, fsdp=1, **fields):
    workload, cfg = _small_cfg(sharding, model, fsdp)
    for name, value in {**TABLES, **fields}.items():
        setattr(cfg, name, value)
    devices = jax.devices() if model * fsdp > 1 else jax.devices()[:1]
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model, devices=devices)
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1)
    state, key, losses = fns.init(jax.random.key(0)), jax.random.key(1), []
    for batch in batches:
        state, metrics, key = fns.train_step(state, mesh_lib.to_global(batch, fns.batch_sharding),
                                             key)
        losses.append(float(metrics["loss"]))
        if fields.get("id_routing") == "all_to_all" and model > 1:
            # The step counts what its routes dropped: room for every id, so nothing.
            assert int(metrics["id_overflow"]) == 0
    return cfg, jax.device_get(state), losses


@pytest.fixture(scope="module")
def dense_one_device():
    _, cfg = _small_cfg("replicated", 1)
    cfg.update(TABLES)
    # Tables of 20 to 600 rows and 64 examples a batch: ids repeat within a batch, so the
    # sparse update must sum an id's gradients before squaring them, as the dense one does.
    batches = _batches(cfg, 3)
    return batches, _train("replicated", 1, batches, sparse_update="none")


# With fsdp 2 the batch splits over fsdp as well as model: each row shard's update gathers
# the examples of its fsdp copies before it routes their ids.
@pytest.mark.parametrize("sharding,model,fsdp,routing", [
    ("replicated", 1, 1, "auto"), ("row", 8, 1, "all_to_all"), ("row", 4, 2, "all_to_all"),
    ("row", 4, 2, "all_gather")])
def test_sparse_update_equals_the_dense_one(sharding, model, fsdp, routing, dense_one_device):
    batches, (_, dense, dense_losses) = dense_one_device
    cfg, state, losses = _train(sharding, model, batches, fsdp, sparse_update="all",
                                id_routing=routing)
    assert (cfg.mesh.model, cfg.mesh.fsdp) == (model, fsdp)
    # One checkpoint layout whichever update ran.
    assert jax.tree.structure(state) == jax.tree.structure(dense)
    np.testing.assert_allclose(losses, dense_losses, rtol=2e-5)
    accs, dense_accs = state.opt_state[0].sum_of_squares, dense.opt_state[0].sum_of_squares
    for k, vocab in enumerate(cfg.vocab_sizes):
        name = f"embedding_{k}"
        # Adagrad steps lr * g / (sqrt(acc) + eps): a relative rounding error in g moves an
        # element by that share of lr. 8 devices sum in another order, which costs the
        # few elements whose gradients were all near zero (sums that cancel: acc below
        # 1e-12) up to a thousandth of lr; the rest agree within a hundred-thousandth.
        near_zero = dense_accs[name] < 1e-12
        diff = np.abs(state.params[name][:vocab] - dense.params[name])
        assert diff[~near_zero].max() < 5e-4 * cfg.base_lr
        assert diff[near_zero].max(initial=0) < 5e-3 * cfg.base_lr
        np.testing.assert_allclose(accs[name][:vocab], dense_accs[name], rtol=1e-4, atol=1e-9)
        assert not state.params[name][vocab:].any() and not accs[name][vocab:].any()
    np.testing.assert_allclose(state.params["top_mlp"]["dense_0"]["kernel"],
                               dense.params["top_mlp"]["dense_0"]["kernel"],
                               atol=5e-4 * cfg.base_lr)
    assert int(state.opt_state[1].count) == 3


def test_all_to_all_route_pools_and_differentiates_like_all_gather():
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    axes = dict(mesh=mesh, row_axis="model", batch_axes=("data", "model"))
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.normal(size=(64, 5)).astype(np.float32))
    ids = rng.integers(0, 64, size=(32, 3)).astype(np.int32)  # 12 ids a device
    ids[:4] = 5  # one device's ids all owned by shard 0 (and repeated)
    cotangent = jnp.asarray(rng.normal(size=(32, 5)).astype(np.float32))

    def run(bag):
        def loss(t):
            return (bag(t, ids) * cotangent).sum()
        return jax.jit(lambda t: (bag(t, ids), jax.grad(loss)(t)))(table)

    gathered = run(lambda t, i: embedding_bag.row_sharded_pooled(t, i, **axes))
    np.testing.assert_allclose(gathered[0], jnp.take(table, ids, axis=0).sum(1),
                               rtol=1e-6, atol=1e-6)
    # Exact capacity (every id of a device fits any one destination), then 3 slots a
    # destination, which the skewed device overflows: its examples pool NaN, never less.
    exact = run(lambda t, i: embedding_bag.row_routed_pooled(t, i, **axes, capacity_factor=0))
    for got, want in zip(exact, gathered, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert embedding_bag.capacity(12, 4, 1.0) == 3
    tight = run(lambda t, i: embedding_bag.row_routed_pooled(t, i, **axes, capacity_factor=1))
    overflowed = np.isnan(np.asarray(tight[0])).any(axis=1)
    # Device 0's first example fills shard 0's 3 slots; its other 3 examples overflow.
    assert not overflowed[0] and overflowed[1:4].all()
    np.testing.assert_allclose(tight[0][~overflowed], gathered[0][~overflowed], rtol=1e-6,
                               atol=1e-6)
    # The reference's shapes, 8 shards, 8,192 examples a device: a 40M-row table of one id
    # an example routes; of 100 ids, or a small table, or with exact capacity, gathers.
    assert embedding_bag.prefer_all_to_all(1, 128, 8, 2.0, 40_000_000, 8192)
    assert not embedding_bag.prefer_all_to_all(100, 128, 8, 2.0, 40_000_000, 8192)
    assert not embedding_bag.prefer_all_to_all(1, 128, 8, 2.0, 40_000, 8192)
    assert not embedding_bag.prefer_all_to_all(1, 128, 8, 0.0, 40_000_000, 8192)



def test_all_to_all_update_keeps_every_id_the_forward_pass_found_room_for():
    """With the batch split over fsdp too, each device's update gathers its fsdp copies'
    examples before routing them: its buffers must hold what those copies routed."""
    mesh = mesh_lib.make_mesh(2, 4)  # (data 1, fsdp 2, model 4)
    axes = dict(mesh=mesh, row_axis="model", batch_axes=("data", "fsdp", "model"))
    rng = np.random.default_rng(2)
    table = rng.normal(size=(64, 2)).astype(np.float32)  # 16 rows a shard
    acc = np.zeros_like(table)
    # Device (fsdp f, model m) holds examples 2b and 2b+1, b = 4f + m, one id each: one id
    # to shard m+1 and one to shard m+2, so one slot a destination fits its forward pass,
    # and the two devices of a model column send two ids to each of those shards.
    ids = np.zeros((16, 1), np.int32)
    for f in range(2):
        for m in range(4):
            b = 4 * f + m
            ids[2 * b], ids[2 * b + 1] = 16 * ((m + 1) % 4) + f, 16 * ((m + 2) % 4) + 8 + f
    assert embedding_bag.capacity(2, 4, 1.0) == 1
    pooled = jax.jit(lambda t: embedding_bag.row_routed_pooled(t, ids, **axes,
                                                               capacity_factor=1.0))(table)
    np.testing.assert_array_equal(pooled, table[ids[:, 0]])  # no overflow: nothing NaN
    bag_grads = rng.normal(size=(16, 2)).astype(np.float32)
    want = sparse_adagrad.update_bags(table, acc, ids, bag_grads, 0.1, 1e-8)
    got = jax.jit(lambda t, a, g: sparse_adagrad.row_sharded_update(
        t, a, ids, g, 0.1, 1e-8, **axes, capacity_factor=1.0))(table, acc, bag_grads)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    assert (np.asarray(got[1]).any(axis=1) == np.isin(np.arange(64), ids)).all()



def test_overflowing_all_to_all_buffers_abort_the_run_naming_the_fix(tmp_path):
    """The run, not just the bag: a buffer that overflows makes the loss NaN, and the abort
    says why and what to change instead of blaming the learning rate."""
    workload, cfg = _small_cfg("row", 8)
    cfg.update(TABLES)
    # One slot a destination for 8 to 24 ids a device: random ids crowd some shard. The
    # dense update (the sparse one counts overflows in test_sparse_update_equals_...).
    cfg.id_routing, cfg.route_capacity, cfg.sparse_update = "all_to_all", 0.25, "none"
    # Synthetic batches (ids over whole tables), 40 steps an epoch: a block is 2 steps.
    cfg.train_examples, cfg.eval_examples = 40 * cfg.global_batch_size, 64
    opts = RunOptions("dlrm_dcnv2", "tiny", str(tmp_path), data="synthetic")
    result = lifecycle.run(workload, cfg, opts, workload.synthetic_data_info(cfg), False)
    reason = ("non-finite training loss at step 1 (epoch 0.05); the all_to_all id buffers "
              "overflowed: raise --config.route_capacity or use --config.id_routing=all_gather")
    assert (result.status, result.reason) == ("aborted", reason)
    stop = [e for e in read_log(result.log_path) if e["key"] == "run_stop"]
    assert stop[0]["metadata"]["reason"] == reason
    # A loss that diverged with every id routed keeps the loop's own advice.
    assert workload.nonfinite_loss_cause(cfg, {"loss": np.nan, "id_overflow": 0}) is None


def test_ids_overflowing_at_eval_give_no_auc_but_the_cause():
    """Eval routes ids as training does: an overflowed example's logit is NaN, which a
    ranking would silently misplace, so there is no AUC, and the count says why."""
    workload, cfg = _small_cfg("row", 8)
    cfg.update(TABLES)
    cfg.id_routing, cfg.route_capacity, cfg.sparse_update = "all_to_all", 0.25, "none"
    mesh = mesh_lib.make_mesh(cfg.mesh.fsdp, cfg.mesh.model, devices=jax.devices())
    fns = compile_lib.build(workload, cfg, mesh, cfg.global_batch_size, 1)
    batch = {**_batches(cfg, 1)[0], "mask": np.ones(cfg.eval_batch_size, np.float32)}
    out = jax.device_get(fns.eval_step(fns.init(jax.random.key(0)),
                                       mesh_lib.to_global(batch, fns.batch_sharding)))
    assert np.isnan(out["logit"]).any() and int(out["id_overflow"]) > 0
    metrics = workload.finalize_eval(cfg, [out], None)
    assert np.isnan(metrics["auc"]) and metrics["id_overflow"] == int(out["id_overflow"])
    assert workload.nonfinite_loss_cause(cfg, metrics).startswith(
        "the all_to_all id buffers overflowed")


def test_bench_embedding_counts_bytes_by_hand_and_the_sparse_win_at_reference_size():
    from suite.workloads.dlrm import DLRMWorkload
    from tools import bench_embedding, state_memory

    # 800 rows over 8 shards, 2 ids an example, 4 floats wide, 16 examples (2 a device):
    # every shard handles all 32 ids; rows of 16 bytes.
    t = bench_embedding.Table(rows=800, hotness=2)
    dense = bench_embedding.table_bytes(t, 4, 16, 8, sparse=False, capacity_factor=None)
    sparse = bench_embedding.table_bytes(t, 4, 16, 8, sparse=True, capacity_factor=None)
    per_id = 2 * 32 * 16
    assert dense == {"memory": per_id + 6 * 100 * 16,
                     "collective": 7 * (4 * 4 + 2 * 16) + 7 * 2 * 16}
    assert sparse == {"memory": per_id + 4 * 4 * 16 + 2 * 32 * 4,
                      "collective": 7 * (4 * 4 + 2 * 16) + 7 * (2 * 16 + 4 * 4)}
    workload = DLRMWorkload()
    cfg = workload.config("reference")
    full_dense = bench_embedding.step_bytes(workload, cfg, 8, "none", None)
    full_sparse = bench_embedding.step_bytes(workload, cfg, 8, "auto", None)
    assert full_sparse["memory"] * 5 < full_dense["memory"]
    assert full_sparse["collective"] < 1.1 * full_dense["collective"]
    # The table shard and its accumulator are the state tools.state_memory counts, less
    # the dense layers (under a GiB).
    cfg.mesh.model = 8
    state = state_memory.bytes_per_device(workload, cfg, 8)["per_device"]
    assert 0 < state - 2 * full_dense["shard"] < 2**30
