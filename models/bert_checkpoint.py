"""BERT params <-> the TensorFlow name-based checkpoint of google-research BERT.

MLPerf's BERT benchmark continues pretraining from the MLCommons phase-1 checkpoint
(model.ckpt-28252), a TF1 checkpoint in that format. Each param of models.bert.Bert has
exactly one variable there; the layouts differ only where this model keeps attention
heads as their own axis ([hidden, heads, head_dim] for a TF [hidden, hidden] kernel)
and in the next-sentence weights, which TF stores as [2, hidden]. Everything else the
checkpoint holds (Adam slots, global_step, loss scale) is ignored.

TensorFlow is imported inside the functions: training from random init never needs it.
"""

import os

import numpy as np
from flax import linen as nn

from common import quiet_tf
from common.errors import UserError
from models.bert import BertConfig, abstract_variables

_FIX = ("pass the MLCommons BERT phase-1 checkpoint (model.ckpt-28252) "
        "or a config that matches it")

# How a param's layout differs from its TF variable's.
_SAME = "same"
_SPLIT_HEADS = "split_heads"  # flax [..., heads, head_dim] <- TF [..., hidden]
_HEADS_IN = "heads_in"  # flax [heads, head_dim, hidden] <- TF [hidden, hidden]
_TRANSPOSED = "transposed"  # flax [hidden, 2] <- TF [2, hidden]


def _tf_shape(flax_shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    if layout == _SPLIT_HEADS:
        return (*flax_shape[:-2], flax_shape[-2] * flax_shape[-1])
    if layout == _HEADS_IN:
        return (flax_shape[0] * flax_shape[1], *flax_shape[2:])
    if layout == _TRANSPOSED:
        return tuple(reversed(flax_shape))
    return tuple(flax_shape)


def _variable_map(layers: int) -> list[tuple[tuple[str, ...], str, str]]:
    """(param path, TF variable name, layout) for every param of a `layers`-layer Bert."""
    entries = []

    def add(path, name, layout=_SAME):
        entries.append((tuple(path.split("/")), name, layout))

    def dense(path, name, layout=_SAME, bias_layout=_SAME):
        add(f"{path}/kernel", f"{name}/kernel", layout)
        add(f"{path}/bias", f"{name}/bias", bias_layout)

    def layer_norm(path, name):
        add(f"{path}/scale", f"{name}/gamma")
        add(f"{path}/bias", f"{name}/beta")

    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        add(f"embeddings/{table}", f"bert/embeddings/{table}")
    layer_norm("embeddings/layer_norm", "bert/embeddings/LayerNorm")
    for i in range(layers):
        ours, theirs = f"encoder/layer_{i}", f"bert/encoder/layer_{i}"
        for proj in ("query", "key", "value"):
            dense(f"{ours}/attention/{proj}", f"{theirs}/attention/self/{proj}",
                  _SPLIT_HEADS, _SPLIT_HEADS)
        dense(f"{ours}/attention/out", f"{theirs}/attention/output/dense", _HEADS_IN)
        layer_norm(f"{ours}/attention_norm", f"{theirs}/attention/output/LayerNorm")
        dense(f"{ours}/wi", f"{theirs}/intermediate/dense")
        dense(f"{ours}/wo", f"{theirs}/output/dense")
        layer_norm(f"{ours}/mlp_norm", f"{theirs}/output/LayerNorm")
    dense("pooler", "bert/pooler/dense")
    dense("mlm_head/transform", "cls/predictions/transform/dense")
    layer_norm("mlm_head/transform_norm", "cls/predictions/transform/LayerNorm")
    add("mlm_head/output_bias", "cls/predictions/output_bias")
    add("nsp_head/kernel", "cls/seq_relationship/output_weights", _TRANSPOSED)
    add("nsp_head/bias", "cls/seq_relationship/output_bias")
    return entries


def reference_names(layers: int) -> dict[tuple[str, ...], str]:
    """Param path -> the reference's TF variable name, for a `layers`-layer Bert. The
    reference's optimizer chooses what to decay by these names."""
    return {path: name for path, name, _ in _variable_map(layers)}


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _put(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _checked_reader(path: str, cfg: BertConfig):
    """The checkpoint's reader, once every variable Bert(cfg) needs is there in its shape."""
    tf = quiet_tf.import_tensorflow()

    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(
            f"cannot read BERT checkpoint {path}: {_one_line(e)}; pass the checkpoint's "
            "path prefix (e.g. .../model.ckpt-28252, beside its .index and .data-* files)"
        ) from None
    found_shapes = reader.get_variable_to_shape_map()
    expected = nn.unbox(abstract_variables(cfg))["params"]
    problems = []
    for param_path, name, layout in _variable_map(cfg.layers):
        want = _tf_shape(_get(expected, param_path).shape, layout)
        if name not in found_shapes:
            problems.append(f"variable {name} is missing (expected shape {list(want)})")
        elif tuple(found_shapes[name]) != want:
            problems.append(f"variable {name} has shape {list(found_shapes[name])}, "
                            f"expected {list(want)}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"BERT checkpoint {path}: {problems[0]}{more}; {_FIX}")
    return reader, expected


def check_reference_checkpoint(path: str, cfg: BertConfig) -> None:
    """UserError, in one line, unless `path` holds every variable Bert(cfg) needs in its
    shape; reads only the checkpoint's index."""
    _checked_reader(path, cfg)


def load_reference_checkpoint(path: str, cfg: BertConfig) -> dict:
    """Params for Bert(cfg) (unboxed float32 numpy arrays) from a reference TF checkpoint.

    `path` is the checkpoint prefix (e.g. .../model.ckpt-28252) or a directory whose
    `checkpoint` file names one. UserError, in one line, for an unreadable path or any
    variable missing or shaped differently from what cfg needs.
    """
    reader, expected = _checked_reader(path, cfg)
    params: dict = {}
    for param_path, name, layout in _variable_map(cfg.layers):
        value = np.asarray(reader.get_tensor(name), np.float32)
        if layout == _TRANSPOSED:
            value = value.T
        _put(params, param_path, np.ascontiguousarray(
            value.reshape(_get(expected, param_path).shape)))
    return params


def write_reference_checkpoint(params, path: str) -> None:
    """Writes Bert params (boxed or not) as a reference TF checkpoint at prefix `path`:
    path.index and path.data-00000-of-00001, readable by load_reference_checkpoint and
    by the reference's own init_checkpoint."""
    tf = quiet_tf.import_tensorflow()

    params = nn.unbox(params)
    layers = sum(1 for key in params["encoder"] if key.startswith("layer_"))
    names, tensors = [], []
    for param_path, name, layout in _variable_map(layers):
        value = np.asarray(_get(params, param_path), np.float32)
        if layout == _TRANSPOSED:
            value = value.T
        else:
            value = value.reshape(_tf_shape(value.shape, layout))
        names.append(name)
        tensors.append(np.ascontiguousarray(value))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=path, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
