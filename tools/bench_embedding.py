"""DLRM-DCNv2's table update, dense against sparse: step time measured at a scaled-down size,
bytes counted at any size (the reference's 26 tables, up to 40 M rows, included).

    python -m tools.bench_embedding --workload=dlrm_dcnv2 --preset=reference --devices=8

Measures (on --devices devices; on a CPU host, that many fake ones): train steps of the
reference's tables divided by --scale, row-split over all devices, with the update dense
(--config.sparse_update=none), sparse (auto, all) and sparse with ids routed by all_to_all.
Small dense layers stand in for the reference's unless --config.* sets them, so the time
is the tables'. Then counts, per device and step, the bytes each update reads and writes
and the bytes its collectives move, at the measured size and at the full size of the
config (the reference's: batch 65,536, 26 tables, 128 wide), beside each device's shard of
the state (tools.state_memory). --workload, --preset and every --config.* work as in
suite.main (one parser).
"""

import dataclasses
import math
import os

from absl import app, flags

from common.errors import UserError
from suite import cli
from tools import bench_step, state_memory

# --devices (the model axis the tables split over; on a CPU host, that many fake ones) is
# tools.state_memory's flag, --steps and --warmup (of each variant; 0 steps: count only)
# tools.bench_step's.
FLAGS = flags.FLAGS
_SCALE = flags.DEFINE_integer("scale", 1000, "Measured tables have 1/scale of the rows.")
_HBM = flags.DEFINE_float("hbm_tb_per_s", 4.19, "Memory bandwidth for the time estimates "
                          "(an H200's, measured).")

F32 = 4
# Fields the measured config takes unless the command line sets them: CPU-sized dense layers.
CPU_SIZES = dict(global_batch_size=1024, eval_batch_size=1024, embed_dim=32,
                 bottom_mlp=(64, 32), top_mlp=(64, 1), dcn_layers=1, dcn_low_rank=16)
# (name, --config.* fields) of each measured variant.
VARIANTS = (("dense", dict(sparse_update="none")),
            ("sparse auto", dict(sparse_update="auto", id_routing="all_gather")),
            ("sparse all", dict(sparse_update="all", id_routing="all_gather")),
            ("sparse all, all_to_all x2", dict(sparse_update="all", id_routing="auto",
                                               route_capacity=2.0)))


@dataclasses.dataclass(frozen=True)
class Table:
    rows: int  # stored (padded) rows of the whole table
    hotness: int


def table_bytes(t: Table, dim: int, batch: int, shards: int, sparse: bool,
                capacity_factor: float | None) -> dict[str, int]:
    """One table's bytes per device and step: 'memory', read and written by its update
    (gradient included), and 'collective', brought in by the routes of its ids, rows and
    gradients (forward and update). capacity_factor None: all_gather route; else all_to_all.

    Both updates form one gradient row per id their shard handles (written, then read);
    the dense update then reads and writes its whole shard of table, accumulator and
    gradient (6 passes), the sparse one reads and writes table and accumulator rows of the
    distinct ids it owns (4 passes; ids spread evenly over the shards), and sorts its ids."""
    from models import embedding_bag

    shard_rows, local = t.rows // shards, batch // shards
    ids = local * t.hotness  # of one device's examples
    row = dim * F32
    if capacity_factor is None:
        handled = batch * t.hotness  # every id reaches every shard, which masks others'
        forward = (shards - 1) * (ids * 4 + local * row)  # gather ids, reduce-scatter bags
        # Dense: the reduce-scatter's transpose gathers the bags' gradients; sparse
        # gathers the ids again with them.
        update = (shards - 1) * (local * row + (0 if not sparse else ids * 4))
    else:
        slots = embedding_bag.capacity(ids, shards, capacity_factor)
        handled = shards * slots
        forward = (shards - 1) * slots * (4 + row)  # ids out, rows back
        update = (shards - 1) * slots * (row + (4 if sparse else 0))  # gradients (and ids)
    per_id = 2 * handled * row
    if sparse:
        owned = min(shard_rows, math.ceil(batch * t.hotness / shards))
        memory = per_id + 4 * owned * row + 2 * handled * 4
    else:
        memory = per_id + 6 * shard_rows * row
    return {"memory": memory, "collective": forward + update}


def step_bytes(workload, cfg, shards: int, sparse_update: str,
               capacity_factor: float | None) -> dict[str, int]:
    """table_bytes summed over the config's tables, each sparse or dense as the workload's
    sparse_tables picks under sparse_update, each routed by all_to_all where
    capacity_factor is set and id_routing=auto would pick it; 'shard' is each device's
    table bytes."""
    from models import embedding_bag

    cfg = cfg.copy_and_resolve_references()
    cfg.sparse_update, cfg.mesh.model = sparse_update, shards
    model_cfg = workload.model_config(cfg)
    sparse = set(workload.sparse_tables(cfg))
    total = {"memory": 0, "collective": 0, "shard": 0}
    for k, hot in enumerate(cfg.hotness):
        t = Table(model_cfg.padded_rows(k), hot)
        local = cfg.global_batch_size // shards
        routed = capacity_factor is not None and embedding_bag.prefer_all_to_all(
            hot, cfg.embed_dim, shards, capacity_factor, t.rows, local)
        b = table_bytes(t, cfg.embed_dim, cfg.global_batch_size, shards, k in sparse,
                        capacity_factor if routed else None)
        total["memory"] += b["memory"]
        total["collective"] += b["collective"]
        total["shard"] += t.rows // shards * cfg.embed_dim * F32
    return total


def update_alone(rows: int, hotness: int, dim: int, batch: int, steps: int) -> dict:
    """ms of one table's Adagrad update alone on one device, dense (the gradient scattered
    into a table-sized array, then every row stepped) and sparse (sparse_adagrad), state
    donated as in the train step, on uniform random ids."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from suite import sparse_adagrad

    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, rows, (batch, hotness)), jnp.int32)
    grads = jnp.asarray(rng.normal(size=(batch, dim)), jnp.float32)
    tx = sparse_adagrad.reference_adagrad(0.005, 1e-8)

    # ids and gradients are arguments: as constants XLA would fold the sort at compile time.
    def dense(table, acc, ids, grads):
        g = jnp.zeros_like(table).at[ids.reshape(-1)].add(jnp.repeat(grads, hotness, 0))
        step, (rss, _) = tx.update(g, (sparse_adagrad.optax.ScaleByRssState(acc),
                                      tx.init(table)[1]))
        return table + step, rss.sum_of_squares

    def sparse(table, acc, ids, grads):
        return sparse_adagrad.update_bags(table, acc, ids, grads, 0.005, 1e-8)

    out = {}
    for name, fn in (("dense", dense), ("sparse", sparse)):
        step = jax.jit(fn, donate_argnums=(0, 1))
        state = step(jnp.zeros((rows, dim)), jnp.zeros((rows, dim)), ids, grads)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for _ in range(steps):
            state = step(*state, ids, grads)
        jax.block_until_ready(state)
        out[name] = 1e3 * (time.perf_counter() - t0) / steps
    return out


def _scaled(cfg, scale: int, explicit: set[str]):
    cfg = cfg.copy_and_resolve_references()
    for name, value in CPU_SIZES.items():
        if name not in explicit:
            setattr(cfg, name, value)
    if "vocab_sizes" not in explicit:
        cfg.vocab_sizes = tuple(max(1, -(-v // scale)) for v in cfg.vocab_sizes)
    return cfg


def _gib(n: float) -> str:
    return f"{n / 2**30:,.3f} GiB"


def _counts(workload, cfg, shards: int, hbm: float, title: str) -> None:
    print(f"\n{title}: {len(cfg.hotness)} tables, {sum(cfg.vocab_sizes):,} rows, "
          f"dim {cfg.embed_dim}, global batch {cfg.global_batch_size}, {shards} shards")
    rows = [("dense", "none", None), ("sparse auto", "auto", None),
            ("sparse all", "all", None), ("sparse all, all_to_all x2", "all", 2.0)]
    dense = None
    for name, mode, factor in rows:
        b = step_bytes(workload, cfg, shards, mode, factor)
        dense = dense or b
        print(f"  {name:28s} update memory {_gib(b['memory']):>14s} "
              f"({b['memory'] / (hbm * 1e12) * 1e3:8.3f} ms at {hbm} TB/s, "
              f"{dense['memory'] / b['memory']:5.1f}x less than dense), "
              f"collectives {_gib(b['collective']):>12s}; table shard {_gib(b['shard'])}")


def run(workload, cfg, devices: int, scale: int, steps: int, warmup: int, hbm: float,
        explicit: set[str]) -> None:
    import jax

    if workload.name != "dlrm_dcnv2":
        raise UserError(f"tools.bench_embedding measures DLRM-DCNv2's tables, not "
                        f"{workload.name}: pass --workload=dlrm_dcnv2")
    if scale < 1 or steps < 0:
        raise UserError("--scale must be >= 1 and --steps >= 0")
    if jax.device_count() < devices:
        raise UserError(f"{jax.device_count()} devices found, --devices={devices} asked")
    full = cfg.copy_and_resolve_references()
    full.mesh.model, full.embedding_sharding = devices, "row"
    state = state_memory.bytes_per_device(workload, full, devices)
    small = _scaled(full, scale, explicit)
    if steps:
        print(f"measured on {devices}x{jax.devices()[0].device_kind}: tables 1/{scale} of "
              f"the config's, global batch {small.global_batch_size}, dim {small.embed_dim}")
        for name, fields in VARIANTS:
            c = small.copy_and_resolve_references()
            c.update(fields)
            r = bench_step.bench(workload, c, steps, warmup)
            print(f"  {name:24s} step {r['step_ms']:8.2f} ms  compile {r['compile_s']:5.1f} s"
                  f"  loss {r['loss']:.4f}")
        print(f"one table's update alone, on one device ({small.global_batch_size} examples):")
        largest = max(small.vocab_sizes)
        pairs = zip(small.vocab_sizes, small.hotness, strict=True)
        for rows, hot in sorted({(v, h) for v, h in pairs if v == largest}):
            r = update_alone(rows, hot, small.embed_dim, small.global_batch_size, steps)
            print(f"  {rows:,} rows, {hot:3d} ids an example: dense {r['dense']:7.2f} ms, "
                  f"sparse {r['sparse']:7.2f} ms")
    _counts(workload, small, devices, hbm, f"counted at the measured size (1/{scale})")
    _counts(workload, full, devices, hbm, "counted at the config's size")
    print(f"  state per device (tools.state_memory): {_gib(state['per_device'])} of "
          f"{_gib(state['total'])}")


def main(argv) -> int:
    # Before JAX starts its CPU backend: fake devices there (a GPU host keeps its GPUs).
    flag = f"--xla_force_host_platform_device_count={FLAGS.devices}"
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    return cli.call(argv, lambda: run(cli.workload(), cli.config(), FLAGS.devices,
                                      _SCALE.value, FLAGS.steps, FLAGS.warmup, _HBM.value,
                                      cli.explicit_fields()) or 0)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parser())
