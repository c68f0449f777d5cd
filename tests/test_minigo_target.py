"""MiniGo's target model: the reference's checkpoint names, an exact round trip through our
writer, TF's own forward pass of the reference network against ours, and one-line refusals."""

import hashlib
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from common import quiet_tf
from common.errors import UserError
from models import minigo
from models import minigo_target as target
from tests.helpers import ROOT

TINY = minigo.MiniGoConfig(board_size=9, conv_width=8, trunk_layers=2, fc_width=16)


def _random_variables(cfg, seed):
    """MiniGoNet(cfg)'s variables with every leaf random (variances positive), so a swapped
    or misordered weight shows in the outputs."""
    rng = np.random.default_rng(seed)
    shapes = minigo.init_variables(cfg, jax.random.key(0))
    return jax.tree_util.tree_map_with_path(
        lambda path, x: (rng.uniform(0.5, 2.0, x.shape) if path[-1].key == "var"
                         else rng.normal(0.0, 0.3, x.shape)).astype(np.float32), shapes)


def _boards(cfg, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.random((4, cfg.board_size, cfg.board_size, cfg.input_planes)) < 0.3).astype(
        np.float32)


def _forward(cfg, variables, boards):
    logits, value = minigo.MiniGoNet(cfg).apply(variables, boards, train=False)
    return np.asarray(logits), np.asarray(value)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    variables = _random_variables(TINY, 0)
    prefix = str(tmp_path_factory.mktemp("target") / "target")
    digest = target.save_target(variables, TINY, prefix)
    return variables, prefix, digest


def test_names_are_the_compliance_checkers():
    """MLPerf's minigo compliance file lists the reference's initialised tensors (the 19x19
    target's architecture): our trainable names must be exactly those, global_step aside."""
    import mlperf_logging

    path = os.path.join(os.path.dirname(mlperf_logging.__file__), "compliance_checker",
                        "training_2.1.0", "closed_minigo.yaml")
    with open(path) as f:
        listed = re.findall(r'^#\s+"([^"]+)",?\s*$', f.read(), re.MULTILINE)
    assert "conv2d_13/kernel" in listed and "global_step" in listed
    names = target.reference_names(target.TARGET_CONFIG)
    trainable = {name for keys, name in names.items() if keys[0] == "params"}
    assert trainable == set(listed) - {"global_step"}


def test_round_trip_is_exact(saved):
    variables, prefix, digest = saved
    loaded = target.load_target(prefix, TINY, sha256=digest)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(variables)
    for ours, back in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded), strict=True):
        assert back.dtype == np.float32 and np.array_equal(ours, back)
    boards = _boards(TINY)
    for a, b in zip(_forward(TINY, variables, boards), _forward(TINY, loaded, boards),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # What the reference's freeze_graph.py restores: weights, moving statistics, a Momentum
    # slot per trainable variable, and global_step; index and data only.
    tf = quiet_tf.import_tensorflow()
    names = target.reference_names(TINY)
    slots = {f"{name}/Momentum" for keys, name in names.items() if keys[0] == "params"}
    assert ({name for name, _ in tf.train.list_variables(prefix)}
            == set(names.values()) | slots | {"global_step"})
    files = sorted(os.listdir(os.path.dirname(prefix)))
    assert files == ["target.data-00000-of-00001", "target.index"]
    # The pinned digest is what `cat target.index target.data-* | sha256sum` prints.
    whole = b"".join(open(os.path.join(os.path.dirname(prefix), n), "rb").read()
                     for n in reversed(files))
    assert digest == target.target_model_sha256(prefix) == hashlib.sha256(whole).hexdigest()


def _keras_reference(cfg, layout):
    """The reference's dual network from Keras layers (tf.layers' successors, which name
    layers by the same per-kind counters), created in its order, in its data layout, and
    flattened with a plain reshape as it does."""
    import keras

    keras.backend.clear_session()  # restart the per-kind name counters: conv2d, conv2d_1...
    first = layout == "nchw"
    n = cfg.board_size
    fmt = "channels_first" if first else "channels_last"

    def conv_norm(x, filters, size, **norm):
        x = keras.layers.Conv2D(filters, size, padding="same", use_bias=False,
                                data_format=fmt)(x)
        return keras.layers.BatchNormalization(axis=1 if first else -1, momentum=0.95,
                                               epsilon=1e-5, **norm)(x)

    relu = keras.ops.relu
    boards = keras.Input((cfg.input_planes, n, n) if first else (n, n, cfg.input_planes))
    x = relu(conv_norm(boards, cfg.conv_width, 3))
    for _ in range(cfg.trunk_layers):
        inner = relu(conv_norm(x, cfg.conv_width, 3))
        x = relu(x + conv_norm(inner, cfg.conv_width, 3))
    policy = relu(conv_norm(x, cfg.policy_conv_width, 1, center=False, scale=False))
    logits = keras.layers.Dense(cfg.moves)(
        keras.layers.Reshape((cfg.policy_conv_width * n * n,))(policy))
    value = relu(conv_norm(x, cfg.value_conv_width, 1, center=False, scale=False))
    hidden = relu(keras.layers.Dense(cfg.fc_width)(
        keras.layers.Reshape((cfg.value_conv_width * n * n,))(value)))
    value = keras.ops.tanh(keras.layers.Dense(1)(hidden))
    return keras.Model(boards, [logits, value])


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_tf_forward_of_the_reference_equals_ours(tmp_path, layout):
    """Weights made and saved by TF alone (Keras layers, TF's Saver), loaded by load_target:
    TF's forward pass of the reference network equals MiniGoNet's."""
    tf = quiet_tf.import_tensorflow()
    model = _keras_reference(TINY, layout)
    assert ({v.path for v in model.weights}
            == set(target.reference_names(TINY).values()))
    rng = np.random.default_rng(2)
    for v in model.weights:
        v.assign((rng.uniform(0.5, 2.0, v.shape) if v.path.endswith("moving_variance")
                  else rng.normal(0.0, 0.3, v.shape)).astype(np.float32))
    prefix = str(tmp_path / "target")
    tf.compat.v1.train.Saver({v.path: v.value for v in model.weights}).save(
        None, prefix, write_meta_graph=False, write_state=False)

    boards = _boards(TINY)
    fed = boards.transpose(0, 3, 1, 2) if layout == "nchw" else boards
    tf_logits, tf_value = (np.asarray(t) for t in model(fed, training=False))
    logits, value = _forward(TINY, target.load_target(prefix, TINY, layout=layout), boards)
    np.testing.assert_allclose(logits, tf_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, tf_value[:, 0], rtol=1e-5, atol=1e-5)
    if layout == "nchw":  # the rows' order matters: read as NHWC, the policy is another one
        wrong, _ = _forward(TINY, target.load_target(prefix, TINY, layout="nhwc"), boards)
        assert not np.allclose(wrong, tf_logits, atol=1e-3)


def _resave_without(src, dst, dropped):
    """A copy of checkpoint `src` at `dst` lacking variable `dropped`, written by TF."""
    tf = quiet_tf.import_tensorflow()
    reader = tf.train.load_checkpoint(src)
    names = sorted(n for n in reader.get_variable_to_shape_map() if n != dropped)
    tf.raw_ops.SaveV2(prefix=dst, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[reader.get_tensor(n) for n in names])


def test_refusals_are_one_line(saved, tmp_path):
    _, prefix, digest = saved

    def refusal(path, cfg=TINY, **kw):
        with pytest.raises(UserError) as e:
            target.load_target(str(path), cfg, **kw)
        message = str(e.value)
        assert "\n" not in message
        return message

    message = refusal(tmp_path / "nowhere")
    assert "not found" in message and "nowhere.index" in message and "target.data" in message
    frozen = tmp_path / "target.minigo"
    frozen.write_bytes(b"<minigo>" + bytes(24))
    assert "frozen .minigo" in refusal(frozen)
    _resave_without(prefix, str(tmp_path / "lacking"), "dense_1/bias")
    message = refusal(tmp_path / "lacking")
    assert "lacks variable dense_1/bias" in message and "[16]" in message
    message = refusal(prefix, minigo.MiniGoConfig(board_size=9, conv_width=8, trunk_layers=2,
                                                  fc_width=32))
    assert "variable dense_1/bias has shape [16], the config needs [32]" in message
    deeper = str(tmp_path / "deeper")
    target.save_target(_random_variables(minigo.MiniGoConfig(
        board_size=9, conv_width=8, trunk_layers=3, fc_width=16), 3), minigo.MiniGoConfig(
        board_size=9, conv_width=8, trunk_layers=3, fc_width=16), deeper)
    message = refusal(deeper)
    assert "has 3 trunk layers" in message and "the config 2" in message
    message = refusal(prefix, sha256="0" * 64)
    assert f"has sha256 {digest}, expected {'0' * 64}" in message
    assert "layout" in refusal(prefix, layout="hwcn")
    broken = tmp_path / "broken"
    (tmp_path / "broken.index").write_bytes(b"not an index")
    (tmp_path / "broken.data-00000-of-00001").write_bytes(b"")
    assert "cannot read MiniGo target model" in refusal(broken)


def test_the_tool_refuses_in_one_line(tmp_path):
    """tools.minigo_target starts as every tool does (suite.cli.call): its own refusal and
    write()'s UserError end in one line on stderr and exit 2, nothing written."""
    def tool(*args):
        return subprocess.run([sys.executable, "-m", "tools.minigo_target", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    proc = tool("--workload=minigo")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --target_dir is required: the directory to write the target model into"]
    out = tmp_path / "target"
    proc = tool("--workload=resnet", f"--target_dir={out}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: a target model is MiniGo's dual network: pass --workload=minigo "
        "--preset=reference (or --config.network=dual_net)"]
    assert not out.exists()
