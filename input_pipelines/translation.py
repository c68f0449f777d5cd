"""Readers for English->German translation datasets prepared by tfds (wmt17_translate/de-en,
wmt14_translate/de-en, jaxperf_numbers_translate): subword vocabulary, packed training rows
and padded eval batches, host-local.

Tokens come from input_pipelines.subwords (PAD 0, EOS 1). Source 'en', target 'de'.

  open_builder(name, data_dir) / require_split   prepared data or UserError
  train_texts(builder, split, limit)        sentences to build the vocabulary from
  pack(examples, length)                    (inputs, targets) pairs -> packed rows
  train_batches(...)                        endless packed [B, L] batches, this process's share
  packed_rows_per_epoch(...) / pack_stats   rows one pass of a split packs into
  eval_batches(...) / eval_steps(...)       one padded pass: inputs, targets, index, mask
  sources(builder, split) / references(...) raw strings in split order, for `index`

A packed row holds several examples end to end: `inputs`/`targets` tokens, `*_segmentation`
(1, 2, ... per example, 0 = padding) and `*_position` (0, 1, ... restarting per example).
TensorFlow is imported inside functions, so synthetic-data runs never import it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from common.errors import UserError
from input_pipelines.subwords import EOS, Vocab
from input_pipelines.tfds_common import one_line, open_prepared, tf_modules

SOURCE, TARGET = "en", "de"
PACKED_KEYS = (
    "inputs", "inputs_position", "inputs_segmentation",
    "targets", "targets_position", "targets_segmentation",
)
NUMBERS = "jaxperf_numbers_translate"
# Rows kept open while packing: more fill rows better (numbers corpus, length 32: 4 rows
# 77% full, 16 rows 84%, 32 rows 86%) but each costs a little time per example.
_OPEN_ROWS = 16
_READ_CHUNK = 1024  # sentences tokenised per sentencepiece call
_PREPARE_HINTS = {
    "wmt17_translate/de-en": "`tfds build wmt17_translate/de-en --data_dir=DATA_DIR`",
    "wmt14_translate/de-en": "`tfds build wmt14_translate/de-en --data_dir=DATA_DIR`",
}
_TINY_HINT = " (or `python -m tools.make_tiny_wmt --out DATA_DIR` for a tiny test copy)"
# In-process caches; keys name the data files, split, vocabulary contents and length.
_TEXTS: dict[tuple, tuple[list[str], list[str]]] = {}
_EVAL: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_STATS: dict[tuple, PackStats] = {}


def open_builder(name: str, data_dir: str | None):  # -> tfds.core.DatasetBuilder
    """tfds's builder for `name` prepared under data_dir (the built-in jaxperf_numbers_translate
    is prepared on first use), or UserError saying how to prepare it."""
    if not data_dir:
        raise UserError(f"no data_dir for {name}; pass --data_dir, a tfds data directory")
    if name == NUMBERS:
        tf_modules()  # without TensorFlow: a UserError, not numbers_translate's ImportError
        from input_pipelines import numbers_translate

        return numbers_translate.prepare(data_dir)
    hint = _PREPARE_HINTS.get(name, f"`tfds build {name} --data_dir=DATA_DIR`") + _TINY_HINT
    hint = hint.replace("DATA_DIR", data_dir)
    if not os.path.isdir(data_dir):
        raise UserError(f"data_dir {data_dir} does not exist; prepare {name} there with {hint}")
    builder = open_prepared(name, data_dir, hint)
    features = builder.info.features
    if not {SOURCE, TARGET} <= set(getattr(features, "languages", ())):
        raise UserError(
            f"{name} under {data_dir} is not an English-German translation dataset (features: "
            f"{one_line(features)}); pick a dataset with 'en' and 'de' text"
        )
    return builder


def require_split(builder, split: str) -> int:
    """Examples in `split` (slicing such as 'train[:10%]' allowed), or UserError."""
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError) as e:
        raise UserError(
            f"dataset {builder.info.full_name} in {builder.data_dir} has no split {split!r}; it "
            f"has: {', '.join(sorted(builder.info.splits.keys())) or 'none'}; pick one of those "
            "or prepare the dataset again with all its splits"
        ) from e


def _read(dataset, builder) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(en, de) arrays of UTF-8 bytes per batch of `dataset`; damaged files -> UserError."""
    tf, tfds = tf_modules()
    # Bound now: at interpreter exit, closing an unfinished generator evaluates the except
    # clause after TensorFlow's module attributes have been torn down.
    damaged = (tf.errors.DataLossError, tf.errors.NotFoundError)
    try:
        for batch in tfds.as_numpy(dataset):
            yield batch[SOURCE], batch[TARGET]
    except damaged as e:
        raise UserError(
            f"data files of {builder.info.full_name} in {builder.data_dir} are damaged or "
            f"missing ({one_line(e)}); prepare it again"
        ) from e


def _utf8(texts: np.ndarray) -> list[str]:
    return [t.decode("utf-8") for t in texts]


def train_texts(builder, split: str, limit: int | None = None) -> Iterator[str]:
    """English and German sentences of the first `limit` examples of `split`, in an order
    mixed across its files (fixed seed), to build the vocabulary from."""
    tf, tfds = tf_modules()
    require_split(builder, split)
    dataset = builder.as_dataset(
        split=split, shuffle_files=True, read_config=tfds.ReadConfig(shuffle_seed=0)
    )
    if limit is not None:
        dataset = dataset.take(limit)
    for en, de in _read(dataset.batch(_READ_CHUNK).prefetch(tf.data.AUTOTUNE), builder):
        for pair in zip(_utf8(en), _utf8(de), strict=True):
            yield from pair


def _tokenized(chunks, vocab: Vocab) -> Iterator[tuple[list[int], list[int]]]:
    for en, de in chunks:
        yield from zip(vocab.encode(_utf8(en)), vocab.encode(_utf8(de)), strict=True)


@dataclasses.dataclass
class PackStats:
    """What packing did: examples seen, discarded as too long, rows made, real tokens."""

    examples: int = 0
    discarded: int = 0
    rows: int = 0
    tokens: int = 0  # inputs + targets, padding excluded


def _pack_members(
    examples, length: int, stats: PackStats, epoch: int = 0
) -> Iterator[list[tuple]]:
    """First fit over a few open rows; yields each row's (inputs, targets) members.

    `epoch`: examples in one pass of an endless stream; if all of them are too long, raise
    rather than read forever.
    """
    rows: list[list] = []  # [free input slots, free target slots, members]
    for inputs, targets in examples:
        stats.examples += 1
        n_in, n_tgt = len(inputs), len(targets)
        if n_in > length or n_tgt > length:
            stats.discarded += 1  # MLPerf's "discard" for over-long sentences
            if stats.examples == epoch == stats.discarded:
                raise UserError(
                    f"every example is longer than max_length {length} tokens; pass a larger "
                    "--config.max_length"
                )
            continue
        stats.tokens += n_in + n_tgt
        row = next((r for r in rows if r[0] >= n_in and r[1] >= n_tgt), None)
        if row is None:
            if len(rows) == _OPEN_ROWS:
                stats.rows += 1
                yield rows.pop(0)[2]  # the oldest row has had the most chances to fill
            row = [length, length, []]
            rows.append(row)
        row[0] -= n_in
        row[1] -= n_tgt
        row[2].append((inputs, targets))
        if min(row[0], row[1]) < 2:  # no room left for even one token + EOS
            rows.remove(row)
            stats.rows += 1
            yield row[2]
    for row in rows:
        stats.rows += 1
        yield row[2]


def _write_row(out: dict[str, np.ndarray], members: list[tuple]) -> None:
    """Writes a packed row into zeroed 1-D arrays `out` (views into a batch are fine)."""
    for side, column in (("inputs", 0), ("targets", 1)):
        tokens, positions = out[side], out[f"{side}_position"]
        segments, start = out[f"{side}_segmentation"], 0
        for segment, member in enumerate(members, start=1):
            n = len(member[column])
            tokens[start : start + n] = member[column]
            positions[start : start + n] = np.arange(n)
            segments[start : start + n] = segment
            start += n


def pack(
    examples: Iterable[tuple[Sequence[int], Sequence[int]]],
    length: int,
    stats: PackStats | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Packs (input ids, target ids) pairs into rows of `length` int32 tokens (PACKED_KEYS);
    an example joins a row only if both sides fit, and is discarded (counted in `stats`) if
    either side is longer than `length`."""
    for members in _pack_members(examples, length, stats or PackStats()):
        row = {key: np.zeros(length, np.int32) for key in PACKED_KEYS}
        _write_row(row, members)
        yield row


def _check_sizes(local_batch_size: int, max_length: int) -> None:
    if local_batch_size < 1 or max_length < 2:
        raise UserError(
            f"need a batch size >= 1 and max_length >= 2 (one token + EOS); got "
            f"{local_batch_size} and {max_length}"
        )


def _process_shard(builder, split: str, process_index: int, process_count: int):
    """(this process's contiguous slice of `split`, its size); slices cover it exactly once."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    _, tfds = tf_modules()
    require_split(builder, split)
    shard = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
    return shard, require_split(builder, shard)


def train_batches(
    builder,
    split: str,
    vocab: Vocab,
    *,
    local_batch_size: int,
    max_length: int,
    process_index: int,
    process_count: int,
    seed: int,
    shuffle_buffer: int = 32_768,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless batches of packed rows, {key: int32 [local_batch_size, max_length]} for
    PACKED_KEYS, from this process's share of `split`, reshuffled every epoch.

    Reads nothing until the first next(): callers may build it before the clock starts.
    """
    _check_sizes(local_batch_size, max_length)
    tf, tfds = tf_modules()
    shard, shard_size = _process_shard(builder, split, process_index, process_count)
    if shard_size == 0:
        raise UserError(
            f"split {split!r} of {builder.info.full_name} has too few examples to give each of "
            f"{process_count} processes one to train on"
        )
    file_seed, shuffle_seed = (
        int(s) for s in np.random.SeedSequence([seed, process_index]).generate_state(2)
    )
    dataset = builder.as_dataset(
        split=shard, shuffle_files=True, read_config=tfds.ReadConfig(shuffle_seed=file_seed)
    )
    # Shuffle before repeat: each epoch is a fresh (seeded) permutation, and epochs never mix.
    dataset = dataset.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat().batch(_READ_CHUNK).prefetch(tf.data.AUTOTUNE)
    return _packed_batches(dataset, builder, vocab, local_batch_size, max_length, shard_size)


def _packed_batches(dataset, builder, vocab, batch_size, length, epoch):
    examples = _tokenized(_read(dataset, builder), vocab)
    rows = _pack_members(examples, length, PackStats(), epoch)
    while True:
        batch = {key: np.zeros((batch_size, length), np.int32) for key in PACKED_KEYS}
        for r in range(batch_size):
            _write_row({key: value[r] for key, value in batch.items()}, next(rows))
        yield batch


def pack_stats(builder, split: str, vocab: Vocab, max_length: int) -> PackStats:
    """What packing one pass of `split` in file order gives (cached in-process)."""
    key = (builder.data_dir, split, vocab.fingerprint, max_length)
    if key not in _STATS:
        tf, _ = tf_modules()
        require_split(builder, split)
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        dataset = dataset.batch(_READ_CHUNK).prefetch(tf.data.AUTOTUNE)
        stats = PackStats()
        for _ in _pack_members(_tokenized(_read(dataset, builder), vocab), max_length, stats):
            pass
        _STATS[key] = stats
    return dataclasses.replace(_STATS[key])


def packed_rows_per_epoch(builder, split: str, vocab: Vocab, max_length: int) -> int:
    """Packed rows of max_length tokens one pass of `split` makes: an epoch's worth."""
    return pack_stats(builder, split, vocab, max_length).rows


def _texts(builder, split: str) -> tuple[list[str], list[str]]:
    """(English, German) sentences of `split` in file order, cached in-process."""
    key = (builder.data_dir, split)
    if key not in _TEXTS:
        tf, _ = tf_modules()
        require_split(builder, split)
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        en, de = [], []
        for en_chunk, de_chunk in _read(dataset.batch(_READ_CHUNK), builder):
            en += _utf8(en_chunk)
            de += _utf8(de_chunk)
        _TEXTS[key] = en, de
    return _TEXTS[key]


def sources(builder, split: str) -> list[str]:
    """English sentences of `split` in the order eval_batches' `index` counts."""
    return list(_texts(builder, split)[0])


def references(builder, split: str) -> list[str]:
    """German reference translations of `split`, in the order of eval_batches' `index`."""
    return list(_texts(builder, split)[1])


def _padded(ids: list[list[int]], length: int) -> np.ndarray:
    """[N, length] int32; a longer sentence keeps its first length-1 tokens and its EOS."""
    out = np.zeros((len(ids), length), np.int32)
    for i, row in enumerate(ids):
        row = row if len(row) <= length else [*row[: length - 1], EOS]
        out[i, : len(row)] = row
    return out


def eval_steps(builder, split: str, global_batch_size: int) -> int:
    """Batches every process yields from eval_batches: one pass, the last batch padded."""
    return math.ceil(require_split(builder, split) / global_batch_size)


def eval_batches(
    builder,
    split: str,
    vocab: Vocab,
    *,
    local_batch_size: int,
    max_length: int,
    process_index: int,
    process_count: int,
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over `split`: {'inputs', 'targets': int32 [B, max_length], 'index': int32 [B]
    (position in the split; -1 for padding), 'mask': float32 [B] (1 real, 0 padding)}.

    Each example appears once across processes; every process yields eval_steps(...)
    batches, so collective eval steps line up.
    """
    _check_sizes(local_batch_size, max_length)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    key = (builder.data_dir, split, vocab.fingerprint, max_length)
    if key not in _EVAL:
        en, de = _texts(builder, split)
        _EVAL[key] = _padded(vocab.encode(en), max_length), _padded(vocab.encode(de), max_length)
    inputs, targets = _EVAL[key]
    shard = np.array_split(np.arange(len(inputs)), process_count)[process_index]
    steps = eval_steps(builder, split, local_batch_size * process_count)
    return _eval_batches(inputs, targets, shard, steps, local_batch_size)


def _eval_batches(inputs, targets, shard, steps, batch_size):
    for step in range(steps):
        chosen = shard[step * batch_size : (step + 1) * batch_size]
        index = np.full(batch_size, -1, np.int32)
        index[: len(chosen)] = chosen
        batch = {
            "inputs": np.zeros((batch_size, inputs.shape[1]), np.int32),
            "targets": np.zeros((batch_size, targets.shape[1]), np.int32),
            "index": index,
            "mask": (index >= 0).astype(np.float32),
        }
        batch["inputs"][: len(chosen)] = inputs[chosen]
        batch["targets"][: len(chosen)] = targets[chosen]
        yield batch
