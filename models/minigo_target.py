"""MiniGo's target model (the fixed network a run's generations must beat) <-> MiniGoNet's
Flax variables.

The file: MLCommons distributes the target as a TF1 name-based checkpoint, `target.index`
beside `target.data-00000-of-00001`. The reference (tensorflow/minigo `ml_perf/`, which
mlcommons/training `retired_benchmarks/minigo` runs) copies `target.*` and then freezes it
itself into `target.minigo` (a GraphDef whose weights are constants, behind a small header)
with `freeze_graph.py` under `ml_perf/flags/19/architecture.flags`. The checkpoint is what is
distributed, so it is what this module reads and writes; a `.minigo` file is refused with a
pointer to the checkpoint it was frozen from.

Variable names: the reference builds its layers with tf.layers, which names each layer by
kind and creation order (conv2d, conv2d_1, ..., batch_normalization, batch_normalization_1,
..., dense, dense_1, dense_2). Flax linen names MiniGoNet's layers the same way (Conv_0,
BatchNorm_0, Dense_0, ...) because MiniGoNet creates them in the reference's order, so
Conv_k <-> conv2d_k, BatchNorm_k <-> batch_normalization_k, Dense_k <-> dense_k. The heads'
batch norms have neither scale nor offset, so they hold only moving_mean/moving_variance.

Flattening: the heads flatten a [B, N, N, C] (NHWC) tensor into the dense layers here, in
(h, w, c) order. The reference's 19x19 flags set --input_layout=nchw, so its graph flattens
[B, C, N, N] in (c, h, w) order, and the target's dense kernels (policy `dense`, value
`dense_1`) have their rows in that order: the loader permutes them (and the writer back).
`layout="nhwc"` is for files from a reference run with --input_layout=nhwc (its 9x9 flags).

Checksum: the expected digest is the workload's config value (None: not pinned, since the
real file's digest cannot be read here); `target_model_sha256` says what to pin.

TensorFlow is imported inside the functions: the accelerator machines run without it.
"""

import functools
import glob
import hashlib
import os
import re
from typing import Any

import jax
import numpy as np

from common import quiet_tf
from common.errors import UserError
from models.minigo import MiniGoConfig, init_variables

# What the reference's ml_perf/flags/19/architecture.flags build: conv_width 64, fc_width 64,
# trunk_layers 6, and the mlperf07 input features (8 + 1 + 3 + 1 = 13 planes). The loader
# checks the file's shapes against whatever config it is given, this one included.
TARGET_CONFIG = MiniGoConfig(board_size=19, input_planes=13, conv_width=64, trunk_layers=6,
                             fc_width=64)
REFERENCE_LAYOUT = "nchw"  # the 19x19 flags' --input_layout, under which the target is frozen
LAYOUTS = ("nchw", "nhwc")

_FIX = ("pass the MLCommons MiniGo target checkpoint (the prefix of target.index and "
        "target.data-*) or a config that matches it")
_LAYERS = {"Conv": "conv2d", "BatchNorm": "batch_normalization", "Dense": "dense"}
_LEAVES = {"kernel": "kernel", "scale": "gamma", "bias": "beta", "mean": "moving_mean",
           "var": "moving_variance"}  # Flax's leaf -> tf.layers' (dense layers keep theirs)
_CONV_KERNEL = re.compile(r"conv2d(_\d+)?/kernel")
_MINIGO_MAGIC = b"<minigo>"  # the first bytes of the reference's frozen .minigo files


def _tf_name(module: str, leaf: str) -> str:
    kind, index = module.rsplit("_", 1)
    layer = _LAYERS[kind] + ("" if index == "0" else f"_{index}")
    # A dense layer's bias keeps that name; only batch norm's offset is TF's "beta".
    return f"{layer}/{leaf if kind == 'Dense' else _LEAVES[leaf]}"


def _expected(cfg: MiniGoConfig) -> Any:
    """init_variables(cfg)'s tree of shapes, allocating nothing."""
    return jax.eval_shape(functools.partial(init_variables, cfg), jax.random.key(0))


def _entries(cfg: MiniGoConfig) -> list[tuple[tuple[str, str, str], str, tuple[int, ...]]]:
    """((collection, module, leaf), TF variable name, shape) for every variable of
    MiniGoNet(cfg)."""
    entries = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(_expected(cfg))[0]:
        keys = tuple(k.key for k in path)
        entries.append((keys, _tf_name(keys[1], keys[2]), tuple(leaf.shape)))
    return entries


def reference_names(cfg: MiniGoConfig) -> dict[tuple[str, str, str], str]:
    """(collection, module, leaf) -> the reference's TF variable name."""
    return {keys: name for keys, name, _ in _entries(cfg)}


def _flattened_channels(cfg: MiniGoConfig) -> dict[str, int]:
    """The dense layers that read a flattened convolution output, and its channel count."""
    return {"Dense_0": cfg.policy_conv_width, "Dense_1": cfg.value_conv_width}


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise UserError(f"MiniGo target layout {layout!r} is unknown; use one of {LAYOUTS} "
                        "(the reference's --input_layout)")


def _rows_from_tf(kernel: np.ndarray, channels: int, n: int, layout: str) -> np.ndarray:
    """A dense kernel's rows from the reference's flattening order to ours (h, w, c)."""
    if layout == "nhwc":
        return kernel
    out = kernel.shape[-1]
    return kernel.reshape(channels, n, n, out).transpose(1, 2, 0, 3).reshape(-1, out)


def _rows_to_tf(kernel: np.ndarray, channels: int, n: int, layout: str) -> np.ndarray:
    if layout == "nhwc":
        return kernel
    out = kernel.shape[-1]
    return kernel.reshape(n, n, channels, out).transpose(2, 0, 1, 3).reshape(-1, out)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _files(path: str) -> tuple[str, list[str]]:
    """(checkpoint prefix, [index file, data shards...]) for `path`, the prefix or one of
    its files; UserError in one line when they are not there."""
    prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", path)
    if os.path.isdir(prefix):
        raise UserError(f"MiniGo target model {path} is a directory; pass the checkpoint's "
                        f"path prefix (e.g. {os.path.join(prefix, 'target')}, beside its .index "
                        "and .data-* files)")
    if os.path.isfile(prefix):
        try:
            with open(prefix, "rb") as f:
                frozen = f.read(len(_MINIGO_MAGIC)) == _MINIGO_MAGIC
        except OSError as e:
            raise UserError(f"cannot read MiniGo target model {path}: {_one_line(e)}; "
                            f"{_FIX}") from None
        if frozen:
            raise UserError(f"MiniGo target model {path} is the reference's frozen .minigo "
                            "graph; pass the TF checkpoint it was frozen from (the prefix of "
                            "target.index and target.data-*)")
    index = prefix + ".index"
    shards = sorted(glob.glob(glob.escape(prefix) + ".data-[0-9]*-of-[0-9]*"))
    if not os.path.isfile(index) or not shards:
        missing = index if not os.path.isfile(index) else prefix + ".data-00000-of-00001"
        raise UserError(f"MiniGo target model {path} not found: no {missing}; {_FIX}")
    return prefix, [index, *shards]


def target_model_sha256(path: str) -> str:
    """SHA-256 of the checkpoint's .index file followed by its data shards in name order:
    what `cat target.index target.data-* | sha256sum` prints."""
    digest = hashlib.sha256()
    for name in _files(path)[1]:
        try:
            with open(name, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as e:
            raise UserError(f"cannot read MiniGo target model {name}: {_one_line(e)}; "
                            "make it readable or pass another copy") from None
    return digest.hexdigest()


def check_target_sha256(path: str, expected: str | None) -> str:
    """The file's digest; UserError unless it is `expected` (None: not pinned)."""
    actual = target_model_sha256(path)
    if expected is not None and actual != expected.strip().lower():
        raise UserError(f"MiniGo target model {path} has sha256 {actual}, expected {expected}; "
                        "download target.* from MLCommons again, or pin the digest of the "
                        "target you mean to use")
    return actual


def _checked_reader(path: str, cfg: MiniGoConfig):
    """TF's reader of the checkpoint, once it holds every variable MiniGoNet(cfg) needs in
    its shape and no more trunk layers."""
    prefix, _ = _files(path)
    tf = quiet_tf.import_tensorflow()
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f"cannot read MiniGo target model {path}: {_one_line(e)}; "
                        f"{_FIX}") from None
    found = reader.get_variable_to_shape_map()
    # Every trunk layer adds two convolutions to the stem's and the two heads'.
    convs = sum(1 for name in found if _CONV_KERNEL.fullmatch(name))
    wanted = 2 * cfg.trunk_layers + 3
    if convs != wanted and convs >= 3 and (convs - 3) % 2 == 0:
        raise UserError(f"MiniGo target model {path} has {(convs - 3) // 2} trunk layers "
                        f"({convs} convolutions), the config {cfg.trunk_layers}; set "
                        f"trunk_layers to {(convs - 3) // 2} or {_FIX}")
    for _, name, shape in _entries(cfg):
        if name not in found:
            raise UserError(f"MiniGo target model {path} lacks variable {name} (shape "
                            f"{list(shape)}); {_FIX}")
        if tuple(found[name]) != shape:
            raise UserError(f"MiniGo target model {path}: variable {name} has shape "
                            f"{list(found[name])}, the config needs {list(shape)}; {_FIX}")
    return reader, tf


def load_target(path: str, cfg: MiniGoConfig, *, sha256: str | None = None,
                layout: str = REFERENCE_LAYOUT) -> dict:
    """MiniGoNet(cfg)'s variables ({"params", "batch_stats"}, float32 NumPy arrays, shaped as
    init_variables makes them) from the reference's target checkpoint.

    path: the checkpoint prefix (.../target) or its .index file. sha256: the digest to insist
    on (None: not pinned). layout: the reference's --input_layout the target is run under,
    which fixes the row order of the dense layers after the convolutions.
    UserError, in one line, for a file missing or unreadable, a digest, variable, shape or
    trunk depth that differs.
    """
    _check_layout(layout)
    if sha256 is not None:
        check_target_sha256(path, sha256)
    reader, tf = _checked_reader(path, cfg)
    flattened = _flattened_channels(cfg)
    variables: dict = {}
    for (collection, module, leaf), name, _ in _entries(cfg):
        try:
            value = np.asarray(reader.get_tensor(name), np.float32)
        except tf.errors.OpError as e:
            raise UserError(f"cannot read variable {name} of MiniGo target model {path}: "
                            f"{_one_line(e)}; {_FIX}") from None
        if module in flattened and leaf == "kernel":
            value = _rows_from_tf(value, flattened[module], cfg.board_size, layout)
        variables.setdefault(collection, {}).setdefault(module, {})[leaf] = (
            np.ascontiguousarray(value))
    return variables


def save_target(variables: Any, cfg: MiniGoConfig, path: str, *,
                layout: str = REFERENCE_LAYOUT) -> str:
    """Writes MiniGoNet(cfg)'s variables as a target checkpoint at prefix `path`
    (path.index, path.data-00000-of-00001), in the reference's format and names, so both
    load_target and the reference's freeze_graph.py read it. Returns its sha256."""
    _check_layout(layout)
    flattened = _flattened_channels(cfg)
    tensors = {}
    for (collection, module, leaf), name, shape in _entries(cfg):
        try:
            value = np.asarray(variables[collection][module][leaf], np.float32)
        except (KeyError, TypeError):
            raise UserError(f"MiniGo variables lack {collection}/{module}/{leaf}; pass "
                            "MiniGoNet(cfg)'s variables with the config they were made "
                            "with") from None
        if value.shape != shape:
            raise UserError(f"MiniGo variable {collection}/{module}/{leaf} has shape "
                            f"{list(value.shape)}, the config needs {list(shape)}; pass the "
                            "config the variables were made with")
        if module in flattened and leaf == "kernel":
            value = _rows_to_tf(value, flattened[module], cfg.board_size, layout)
        tensors[name] = (value, collection == "params")

    tf = quiet_tf.import_tensorflow()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        for name, (value, trainable) in tensors.items():
            tf.compat.v1.get_variable(name, initializer=value, trainable=trainable)
            # The reference restores every global variable of its model_fn graph, which
            # always builds a Momentum optimizer: without the slots and global_step its
            # freeze_graph.py could not read this file. Zeros: nothing trains from them.
            if trainable:
                tf.compat.v1.get_variable(f"{name}/Momentum", initializer=np.zeros_like(value),
                                          trainable=False)
        tf.compat.v1.get_variable("global_step", initializer=np.int64(0), trainable=False)
        sess.run(tf.compat.v1.global_variables_initializer())
        # No .meta (this graph is not the reference's model) and no `checkpoint` state file:
        # MLCommons' target.* is the index and data alone.
        tf.compat.v1.train.Saver().save(sess, path, write_meta_graph=False, write_state=False)
    return target_model_sha256(path)
