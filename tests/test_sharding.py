"""Sharding on 8 fake CPU devices (tests/conftest.py) must not change the numbers."""

import jax
import numpy as np
import pytest

from common.errors import UserError
from suite import compile as compile_lib
from suite import mesh as mesh_lib
from suite.workloads.resnet import ResNetWorkload


def _losses(mesh, steps=4, batch_size=32):
    workload = ResNetWorkload()
    cfg = workload.config("tiny")
    cfg.compute_dtype = "float32"
    cfg.global_batch_size = batch_size
    fns = compile_lib.build(workload, cfg, mesh, batch_size, 1)
    state = fns.init(jax.random.key(0))
    key = jax.device_put(jax.random.key(1), mesh_lib.replicated(mesh))
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        local = {
            "image": rng.integers(0, 256, (batch_size, 16, 16, 3)).astype(np.uint8),
            "label": rng.integers(0, 10, batch_size).astype(np.int32),
        }
        batch = mesh_lib.to_global(local, fns.batch_sharding)
        state, metrics, key = fns.train_step(state, batch, key)
        losses.append(float(metrics["loss"]))
    return np.array(losses), batch, state


def test_eight_devices_match_one():
    assert jax.device_count() == 8
    one, _, _ = _losses(mesh_lib.make_mesh(devices=jax.devices()[:1]))
    eight, batch, state = _losses(mesh_lib.make_mesh())
    # The batch really is split: each device holds 1/8 of the rows.
    assert len(batch["image"].addressable_shards) == 8
    assert batch["image"].addressable_shards[0].data.shape[0] == 4
    np.testing.assert_allclose(eight, one, rtol=2e-5, atol=2e-6)


def test_batch_split_over_data_and_fsdp_matches_one_device():
    """A data=4 x fsdp=2 mesh splits the batch over all 8 devices and matches one device.

    It tests no fsdp parameter sharding: ResNet's logical axis rules (the default,
    batch -> (data, fsdp)) have no fsdp parameter axis, so every parameter is replicated.
    """
    one, _, _ = _losses(mesh_lib.make_mesh(devices=jax.devices()[:1]), steps=2)
    mesh = mesh_lib.make_mesh(fsdp=2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "model": 1}
    both, batch, state = _losses(mesh, steps=2)
    # Each of the 8 devices holds its own 4 of the 32 rows: the batch is split over both axes.
    shards = batch["image"].addressable_shards
    rows = sorted(s.index[0].indices(32)[:2] for s in shards)
    assert rows == [(i, i + 4) for i in range(0, 32, 4)]
    assert len({s.device for s in shards}) == 8
    params = jax.tree.leaves(state.params)
    assert params and all(p.sharding.is_fully_replicated for p in params)
    np.testing.assert_allclose(both, one, rtol=2e-5, atol=2e-6)


def test_mesh_that_does_not_divide_the_devices_is_refused():
    with pytest.raises(UserError, match="does not divide 8 devices"):
        mesh_lib.make_mesh(fsdp=3)
