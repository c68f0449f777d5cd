"""DLRM-DCNv2: exact size at the reference shape, padded tables, the forward pass against a
NumPy re-implementation, torch-style init, hand-counted FLOPs, logical axis names, and a
row-sharded table that the partitioner gathers in place."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from input_pipelines import criteo
from models import dlrm

REFERENCE = dlrm.DLRMConfig(criteo.REFERENCE_VOCAB_SIZES, criteo.REFERENCE_HOTNESS)
# Three tables of different sizes and hotness, and unequal layer widths, so a swapped
# table or a transposed kernel fails loudly.
SMALL = dlrm.DLRMConfig(vocab_sizes=(5, 7, 3), hotness=(2, 1, 3), embed_dim=4, num_dense=3,
                        bottom_mlp=(8, 4), top_mlp=(8, 1), dcn_low_rank=2)


def _linear_params(fan_in, widths):
    """Kernels and biases of a stack of linear layers."""
    total = 0
    for width in widths:
        total += fan_in * width + width
        fan_in = width
    return total


def _batch(cfg, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(batch_size, cfg.num_dense)).astype(np.float32)
    sparse = np.concatenate(
        [rng.integers(0, vocab, size=(batch_size, hot))
         for vocab, hot in zip(cfg.vocab_sizes, cfg.hotness, strict=True)], axis=1)
    return dense, sparse.astype(np.int32)


def _random_params(cfg, seed=0):
    """Params of init's shapes but random values everywhere, cross-net biases included
    (init zeroes them, which would hide a forward pass that forgot them). Cheaper too:
    XLA on CPU takes seconds to compile init's random number generation."""
    rng = np.random.default_rng(seed)
    shapes = nn.unbox(dlrm.abstract_variables(cfg))["params"]
    return jax.tree.map(lambda a: rng.normal(0, 0.5, a.shape).astype(np.float32), shapes)


def _numpy_forward(cfg, params, dense, sparse, dedup_bags=False):
    """The whole forward pass in float64 NumPy, straight from the architecture's equations.

    dedup_bags pools each bag's distinct ids only: the wrong semantics, kept to show that
    the repeated-id check can fail.
    """
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

    def linear(layer, x):
        return x @ layer["kernel"] + layer["bias"]

    x = dense.astype(np.float64)
    for i in range(len(cfg.bottom_mlp)):
        x = np.maximum(linear(p["bottom_mlp"][f"dense_{i}"], x), 0)
    features, column = [x], 0
    for k, hot in enumerate(cfg.hotness):
        pooled = []
        for row in sparse[:, column:column + hot]:
            ids = sorted(set(row)) if dedup_bags else row
            pooled.append(sum(p[f"embedding_{k}"][i] for i in ids))
        features.append(np.stack(pooled))
        column += hot
    x0 = x = np.concatenate(features, axis=1)
    cross = p["cross_net"]
    for layer in range(cfg.dcn_layers):
        low = x @ cross[f"v_{layer}"]["kernel"]
        x = x0 * linear(cross[f"w_{layer}"], low) + x
    for i in range(len(cfg.top_mlp)):
        x = linear(p["top_mlp"][f"dense_{i}"], x)
        if i < len(cfg.top_mlp) - 1:
            x = np.maximum(x, 0)
    return x[:, 0]


def test_reference_param_count_from_layer_sizes():
    cfg, d = REFERENCE, REFERENCE.embed_dim
    interaction = (1 + len(criteo.REFERENCE_VOCAB_SIZES)) * d
    assert interaction == 3456
    tables = sum(criteo.REFERENCE_VOCAB_SIZES) * d
    bottom = _linear_params(cfg.num_dense, (512, 256, 128))
    cross = 3 * (interaction * 512 + 512 * interaction + interaction)
    top = _linear_params(interaction, (1024, 1024, 512, 256, 1))
    count = dlrm.param_count(cfg)
    assert count == tables + bottom + cross + top
    assert dlrm.embedding_rows(cfg) == sum(criteo.REFERENCE_VOCAB_SIZES)

    params = nn.unbox(dlrm.abstract_variables(cfg))["params"]
    stored_tables = sum(params[f"embedding_{k}"].size for k in range(cfg.num_tables))
    assert stored_tables == sum(criteo.REFERENCE_VOCAB_SIZES) * 128


def test_row_multiple_pads_stored_rows_not_the_count():
    padded = dataclasses.replace(REFERENCE, row_multiple=8)
    params = nn.unbox(dlrm.abstract_variables(padded))["params"]
    for k, vocab in enumerate(criteo.REFERENCE_VOCAB_SIZES):
        rows = params[f"embedding_{k}"].shape[0]
        assert rows % 8 == 0 and vocab <= rows < vocab + 8
        assert rows == padded.padded_rows(k)
    assert params["embedding_5"].shape == (8, 128)  # vocab 3
    assert params["embedding_0"].shape == (40000000, 128)  # already a multiple
    assert dlrm.param_count(padded) == dlrm.param_count(REFERENCE)


def test_forward_matches_numpy_and_repeated_ids_count_twice():
    model, params = dlrm.DLRM(SMALL), _random_params(SMALL)
    dense, sparse = _batch(SMALL, 6, seed=1)
    # Row 0 repeats an id in table 0's bag (columns 0:2) and in table 2's (columns 3:6).
    sparse[0] = [4, 4, 6, 1, 1, 2]
    logits = jax.jit(model.apply)({"params": params}, dense, sparse)
    assert logits.shape == (6,) and logits.dtype == jnp.float32

    expected = _numpy_forward(SMALL, params, dense, sparse)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    as_sets = _numpy_forward(SMALL, params, dense, sparse, dedup_bags=True)
    assert abs(logits[0] - as_sets[0]) > 1e-3


def test_init_ranges_follow_torch():
    cfg = dataclasses.replace(SMALL, embed_dim=16, bottom_mlp=(8, 16), row_multiple=8)
    dense, sparse = _batch(cfg, 2)
    # Jitted: op-by-op Flax on CPU would compile every small op separately.
    variables = jax.jit(dlrm.DLRM(cfg).init)(jax.random.key(0), dense, sparse)
    params = nn.unbox(variables)["params"]
    for k, vocab in enumerate(cfg.vocab_sizes):
        table = np.asarray(params[f"embedding_{k}"])
        assert table.shape == (8, 16) and table.dtype == np.float32
        # The bound comes from the real vocabulary; the padded one would be tighter.
        assert np.sqrt(1 / cfg.padded_rows(k)) < np.abs(table).max() <= np.sqrt(1 / vocab)
    cross = params["cross_net"]
    for layer in range(cfg.dcn_layers):
        np.testing.assert_array_equal(cross[f"w_{layer}"]["bias"], 0)
        assert "bias" not in cross[f"v_{layer}"]
    for mlp in ("bottom_mlp", "top_mlp"):
        for layer in params[mlp].values():
            bound = 1 / np.sqrt(layer["kernel"].shape[0])
            assert np.abs(layer["kernel"]).max() <= bound
            assert np.abs(layer["bias"]).max() <= bound


def test_forward_flops():
    # SMALL by hand: bottom 3->8->4, pooling adds (1+0+2)*4, cross 3 x (16->2->16),
    # top 16->8->1.
    bottom = 2 * (3 * 8 + 8 * 4)
    pooling = (1 + 0 + 2) * 4
    cross = 3 * 2 * (16 * 2 + 2 * 16)
    top = 2 * (16 * 8 + 8 * 1)
    assert dlrm.forward_flops(SMALL) == bottom + pooling + cross + top == 780

    dense_params = dlrm.param_count(REFERENCE) - sum(criteo.REFERENCE_VOCAB_SIZES) * 128
    approx = 2 * dense_params + sum(criteo.REFERENCE_HOTNESS) * 128 + 3 * 3 * 3456
    assert dlrm.forward_flops(REFERENCE) == pytest.approx(approx, rel=0.01)


def test_logical_axis_names_and_dtypes():
    cfg = dataclasses.replace(REFERENCE, dtype=jnp.bfloat16)
    abstract = dlrm.abstract_variables(cfg)
    specs = nn.get_partition_spec(abstract)["params"]
    for k in range(cfg.num_tables):
        assert specs.pop(f"embedding_{k}") == PartitionSpec("table_rows", "table_dim")
    dense_specs = jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, PartitionSpec))
    assert len(dense_specs) == 2 * 3 + 3 * 3 + 2 * 5  # bottom, cross (V, W, b), top
    for spec in dense_specs:
        assert spec and not any(name.startswith("table_") for name in spec)

    params = nn.unbox(abstract)["params"]
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    dense = jax.ShapeDtypeStruct((4, cfg.num_dense), jnp.float32)
    sparse = jax.ShapeDtypeStruct((4, cfg.sparse_width), jnp.int32)
    logits = jax.eval_shape(dlrm.DLRM(cfg).apply, {"params": params}, dense, sparse)
    assert logits.shape == (4,) and logits.dtype == jnp.float32


def test_row_sharded_table_gathers_in_place():
    # XLA weighs the cost: a table of a few rows is cheaper to all-gather than the ids, so
    # table 0 is made big enough that splitting its rows is what a real table would see.
    cfg = dataclasses.replace(SMALL, vocab_sizes=(4096, 7, 3), row_multiple=4)
    model, params = dlrm.DLRM(cfg), _random_params(cfg)
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    rules = [("batch", ("data", "model")), ("table_rows", "model")]
    shardings = nn.logical_to_mesh_sharding(
        nn.get_partition_spec(dlrm.abstract_variables(cfg)), mesh, rules)["params"]
    assert shardings["embedding_0"].spec == PartitionSpec("model", None)
    batch_sharding = NamedSharding(mesh, PartitionSpec(("data", "model")))
    apply = jax.jit(model.apply, in_shardings=({"params": shardings}, batch_sharding,
                                               batch_sharding))
    dense, sparse = _batch(cfg, 8, seed=2)
    compiled = apply.lower({"params": params}, dense, sparse).compile()
    hlo = compiled.as_text().splitlines()
    # Each shard gathers its own rows and the partial bags are summed (an f32 all-reduce);
    # the big table itself never travels.
    assert not any(" all-gather(" in line and "f32[4096," in line for line in hlo)
    assert any(" all-reduce(" in line and "f32[" in line for line in hlo)

    args = jax.device_put(({"params": params}, dense, sparse),
                          ({"params": shardings}, batch_sharding, batch_sharding))
    np.testing.assert_allclose(compiled(*args), _numpy_forward(cfg, params, dense, sparse),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", [
    dict(hotness=(2, 1)),
    dict(vocab_sizes=(5, 0, 3)),
    dict(hotness=(2, 0, 3)),
    dict(bottom_mlp=(8, 5)),
    dict(top_mlp=(8, 2)),
    dict(row_multiple=0),
    dict(dcn_layers=-1),
])
def test_config_rejects_inconsistent_shapes(change):
    with pytest.raises(ValueError):
        dataclasses.replace(SMALL, **change)


def test_config_from_lists_is_hashable_and_offsets_cover_sparse():
    cfg = dataclasses.replace(SMALL, vocab_sizes=[5, 7, 3], hotness=[2, 1, 3])
    assert cfg == SMALL and hash(cfg) == hash(SMALL)
    assert cfg.sparse_width == 6 and cfg.sparse_offsets == (0, 2, 3)
    dense, sparse = _batch(cfg, 2)
    with pytest.raises(ValueError, match="sparse"):
        jax.eval_shape(dlrm.DLRM(cfg).init, jax.random.key(0), dense, sparse[:, :-1])
