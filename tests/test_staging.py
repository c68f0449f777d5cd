"""Batches staged on the devices ahead of their step (suite.staging)."""

import itertools

import jax
import numpy as np
import pytest

from suite import mesh as mesh_lib
from suite import perf, staging


def _source(count: int, read: list):
    for i in range(count):
        read.append(i)
        yield {"image": np.full((8, 2, 2, 3), i, np.uint8), "label": np.arange(8, dtype=np.int32)}


def _sharding():
    return mesh_lib.batch_sharding(mesh_lib.make_mesh())


def test_staged_batches_come_in_order_one_step_ahead():
    read: list = []
    staged = staging.Staged(_source(5, read), _sharding())
    first = next(staged)
    assert isinstance(first["image"], jax.Array) and first["image"].dtype == np.uint8
    assert int(first["image"][0, 0, 0, 0]) == 0
    assert read == [0, 1]  # batch 1 already sent while step 0 would run
    rest = list(staged)
    assert [int(b["image"][0, 0, 0, 0]) for b in rest] == [1, 2, 3, 4]
    assert read == [0, 1, 2, 3, 4]  # nothing read twice, nothing lost at the end
    np.testing.assert_array_equal(rest[-1]["label"], np.arange(8))
    assert staged.wait_s > 0


def test_depth_one_reads_no_further_than_the_step():
    read: list = []
    staged = staging.Staged(_source(3, read), _sharding(), depth=1)
    next(staged)
    assert read == [0]
    with pytest.raises(ValueError, match="depth must be >= 1"):
        staging.Staged(iter(()), _sharding(), depth=0)


def test_an_endless_source_is_read_lazily():
    read: list = []
    endless = itertools.chain.from_iterable(_source(2, read) for _ in itertools.count())
    staged = staging.Staged(endless, _sharding())
    for _ in range(10):
        next(staged)
    assert len(read) == 11


def test_bytes_per_step_are_counted_by_field():
    spec = {"image": jax.ShapeDtypeStruct((512, 224, 224, 3), np.uint8),
            "label": jax.ShapeDtypeStruct((512,), np.int32)}
    # A quarter of the float32 batch's 308 MB.
    assert staging.batch_bytes(spec) == 512 * 224 * 224 * 3 + 512 * 4
    line = staging.describe(spec, processes=2)
    assert "154.14 MB a step" in line and "2 processes x 77.07 MB" in line
    assert "image uint8[512, 224, 224, 3]" in line and "label int32[512]" in line


def test_host_overhead_is_the_input_share_of_the_block():
    assert perf.BlockStats(100, 10, 2.0, 0.5).host_overhead == 0.25
    assert perf.BlockStats(100, 10, 2.0).host_overhead is None  # a loop without batches
