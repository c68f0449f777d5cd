"""Reader and writer of MLPerf BERT's pretraining data: the MLCommons reference's TFRecords.

Each record is a tf.train.Example holding, for a sequence length L and at most P masked-LM
predictions (512 and 76 for the reference):
  input_ids, input_mask, segment_ids          int64 [L]  ([CLS] A [SEP] B [SEP], then padding)
  masked_lm_positions, masked_lm_ids          int64 [P]  (padded with 0)
  masked_lm_weights                           float [P]  (1.0 a real prediction, 0.0 padding)
  next_sentence_labels                        int64 [1]  (1: B is a random segment)
The training set is many files (part-00000-of-00500, ...), the eval set one packed file of
10,000 examples. Batches come out as NumPy: every feature int32 except masked_lm_weights
(float32), next_sentence_labels flattened to [B].

Records are parsed in batches with each record's name ("<file> record <n>") passed along,
so that TensorFlow's parse errors say which file broke; they are re-raised as one-line
UserErrors naming the file and the feature. TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator

import numpy as np

from common.errors import UserError
from input_pipelines.tfds_common import one_line, tf_modules

FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels")
_FLOAT_FEATURES = ("masked_lm_weights",)
_FIX = "regenerate it with the reference's create_pretraining_data.py or pass the right files"
_LENGTH_FIX = ("set seq_len and max_predictions to those the data was made with, or "
               "regenerate it")
# Files read at once while training. The preprocessing already shuffled every file, so a
# few interleaved files and a record buffer mix well enough while staying deterministic.
_CYCLE_LENGTH = 4
_SHUFFLE_BUFFER = 10_000
# TF's parse errors start "Name: <record name>, Key: <feature>, ..." or "..., Feature: <f>".
_PARSE_ERROR = re.compile(r"Name: (?P<name>.+?), (?:Key|Feature): (?P<feature>\w+)")


def feature_lengths(seq_len: int, max_predictions: int) -> dict[str, int]:
    """Values per record of each feature."""
    lengths = dict.fromkeys(FEATURES[:3], seq_len) | dict.fromkeys(FEATURES[3:6], max_predictions)
    return lengths | {"next_sentence_labels": 1}


def write_examples(path: str, examples: Iterable[dict[str, np.ndarray]]) -> int:
    """Writes examples (arrays keyed as FEATURES) to the TFRecord file `path` in the
    reference's layout; returns how many it wrote."""
    tf, _ = tf_modules()

    def feature(name: str, values) -> object:
        values = np.asarray(values).reshape(-1)
        if name in _FLOAT_FEATURES:
            return tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))

    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            proto = tf.train.Example(features=tf.train.Features(
                feature={name: feature(name, example[name]) for name in FEATURES}))
            # deterministic: map fields in key order, so the same examples give the same bytes.
            writer.write(proto.SerializeToString(deterministic=True))
            count += 1
    return count


def list_files(pattern_or_dir: str) -> list[str]:
    """The files of a directory (hidden ones left out) or matching a glob pattern, sorted."""
    tf, _ = tf_modules()
    if tf.io.gfile.isdir(pattern_or_dir):
        files = [os.path.join(pattern_or_dir, name) for name in tf.io.gfile.listdir(pattern_or_dir)
                 if not name.startswith(".")]
        files = [f for f in files if not tf.io.gfile.isdir(f)]
    else:
        files = tf.io.gfile.glob(pattern_or_dir)
    if not files:
        raise UserError(f"{pattern_or_dir}: no BERT TFRecord files there; pass a directory or "
                        "glob pattern (e.g. .../part-*) of the preprocessed pretraining data")
    return sorted(files)


def _named_records(tf, path):
    """(name, serialized record) of each record of `path`, a string tensor."""
    def name(index, record):
        return tf.strings.join([path, " record ", tf.strings.as_string(index)]), record

    return tf.data.TFRecordDataset(path).enumerate().map(name)


def _parser(tf, seq_len: int, max_predictions: int):
    """Batch of (names, records) -> dict of int32/float32 arrays keyed as FEATURES."""
    spec = {name: tf.io.FixedLenFeature([length],
                                        tf.float32 if name in _FLOAT_FEATURES else tf.int64)
            for name, length in feature_lengths(seq_len, max_predictions).items()}

    def parse(names, records):
        parsed = tf.io.parse_example(records, spec, example_names=names)
        batch = {name: parsed[name] if name in _FLOAT_FEATURES
                 else tf.cast(parsed[name], tf.int32) for name in FEATURES}
        batch["next_sentence_labels"] = tf.reshape(batch["next_sentence_labels"], [-1])
        return batch

    return parse


def _problem(text: str) -> str:
    if "required but could not be found" in text:
        return "is missing"
    if found := re.search(r"Values size: (\d+) but output shape: \[(\d+)\]", text):
        return f"has {found[1]} values, expected {found[2]}"
    if found := re.search(r"Data types don't match\. Data type: (\w+) but expected type: (\w+)",
                          text):
        return f"holds {found[1]} values, expected {found[2]}"
    return f"cannot be parsed ({one_line(Exception(text))[:150]})"


@contextlib.contextmanager
def _readable_errors(tf, where: str) -> Iterator[None]:
    """TensorFlow's data errors inside the block re-raised as one-line UserErrors."""
    # Bound now: at interpreter exit, closing an unfinished generator evaluates the except
    # clauses after TensorFlow's module attributes have been torn down.
    invalid, damaged = tf.errors.InvalidArgumentError, (tf.errors.DataLossError,
                                                         tf.errors.NotFoundError)
    try:
        yield
    except invalid as e:
        text = " ".join(str(e).split())  # whole: one_line() may cut off the sizes
        found = _PARSE_ERROR.search(text)
        if found is None:
            raise UserError(f"{where}: unreadable BERT records ({one_line(e)}); {_FIX}") from e
        problem = _problem(text[found.end():])
        fix = _LENGTH_FIX if "values, expected" in problem else _FIX
        raise UserError(f"{found['name']}: feature {found['feature']} {problem}; {fix}") from e
    except damaged as e:
        raise UserError(f"{where}: damaged or missing TFRecord file ({one_line(e)}); "
                        f"{_FIX}") from e


def _translated(tf, batches: Iterator[dict], where: str) -> Iterator[dict]:
    with _readable_errors(tf, where):
        yield from batches


def _check_first_records(files: list[str], seq_len: int, max_predictions: int) -> None:
    """Parses the first record of every file in one pass; UserError on the first bad one."""
    tf, _ = tf_modules()
    for path in files:
        if not tf.io.gfile.exists(path):
            raise UserError(f"{path}: no such file; {_FIX}")
    parse = _parser(tf, seq_len, max_predictions)

    def first(path):
        return _named_records(tf, path).take(1).map(lambda name, record: (path, name, record))

    firsts = (tf.data.Dataset.from_tensor_slices(files).interleave(first, cycle_length=1)
              .batch(len(files)).map(lambda paths, names, records: (paths,
                                                                    parse(names, records))))
    seen: set[str] = set()
    with _readable_errors(tf, files[0] if len(files) == 1 else f"{len(files)} files"):
        for paths, _ in firsts.as_numpy_iterator():
            seen.update(p.decode() for p in paths)
    for path in files:
        if path not in seen:
            raise UserError(f"{path}: holds no records; {_FIX}")


def check_file(path: str, seq_len: int, max_predictions: int) -> int:
    """Checks the first record of `path`: every feature present with its length; returns the
    file's size in bytes. UserError naming the file and the feature otherwise."""
    _check_first_records([path], seq_len, max_predictions)
    tf, _ = tf_modules()
    return int(tf.io.gfile.stat(path).length)


def count_examples(path: str) -> int:
    """Records in the TFRecord file `path` (reads the whole file)."""
    tf, _ = tf_modules()
    with _readable_errors(tf, path):
        return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))


def _check_processes(local_batch_size: int, process_index: int, process_count: int) -> None:
    if local_batch_size < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"need local_batch_size >= 1 and 0 <= process_index < process_count, "
                         f"got {local_batch_size}, {process_index}, {process_count}")


def train_batches(files: list[str], *, seq_len: int, max_predictions: int,
                  local_batch_size: int, process_index: int, process_count: int, seed: int,
                  shuffle_buffer: int = _SHUFFLE_BUFFER) -> Iterator[dict[str, np.ndarray]]:
    """This process's training batches, forever, keyed as FEATURES.

    Process p of P reads files p::P; with fewer files than processes every process reads
    them all and keeps records p::P. Files are reshuffled every epoch (seeded), records pass
    through a shuffle buffer of `shuffle_buffer`. The first record of each file this process
    reads is checked up front, so a wrong file fails at start-up, not mid-run.
    """
    _check_processes(local_batch_size, process_index, process_count)
    if not files:
        raise UserError("no BERT training files given; pass the preprocessed training files")
    tf, _ = tf_modules()
    shard_records = len(files) < process_count
    own = list(files) if shard_records else list(files)[process_index::process_count]
    _check_first_records(own, seq_len, max_predictions)
    # Every process shuffles the file list with the same seed: when records are sharded,
    # they must all walk the same record stream to split it without overlap.
    names = tf.data.Dataset.from_tensor_slices(own).shuffle(
        len(own), seed=seed, reshuffle_each_iteration=True).repeat()
    records = names.interleave(lambda path: _named_records(tf, path),
                               cycle_length=min(len(own), _CYCLE_LENGTH), block_length=1,
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shard_records:
        records = records.shard(process_count, process_index)
    records = records.shuffle(shuffle_buffer, seed=seed * process_count + process_index + 1)
    batches = (records.batch(local_batch_size, drop_remainder=True)
               .map(_parser(tf, seq_len, max_predictions), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
               .prefetch(tf.data.AUTOTUNE))
    where = own[0] if len(own) == 1 else f"{os.path.dirname(own[0])} ({len(own)} files)"
    return _translated(tf, batches.as_numpy_iterator(), where)


def num_eval_batches(num_examples: int, *, local_batch_size: int, process_count: int) -> int:
    """Batches every process yields in one eval pass: enough for the largest share."""
    largest_share = -(-num_examples // process_count)
    return -(-largest_share // local_batch_size)


def _padded(batch: dict, size: int) -> dict:
    """batch (possibly short) padded with zero examples to `size`, plus "mask"."""
    real = len(batch["input_ids"])
    out = {}
    for name, values in batch.items():
        out[name] = np.zeros((size, *values.shape[1:]), values.dtype)
        out[name][:real] = values
    # Zero weights make padding count nowhere in the masked-LM sums; "mask" drops it from
    # the next-sentence accuracy, whose label 0 would otherwise count as a real example.
    out["mask"] = (np.arange(size) < real).astype(np.float32)
    return out


def eval_batches(path: str, *, seq_len: int, max_predictions: int, local_batch_size: int,
                 process_index: int, process_count: int,
                 max_examples: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the packed eval file (its first max_examples records, if given).

    Process p takes the contiguous records [p*N//P, (p+1)*N//P). Every process yields
    num_eval_batches batches, so that collective eval steps stay in lockstep: rows past a
    share's end are zeros (masked_lm_weights 0, next_sentence_labels 0) with "mask" 0.
    """
    _check_processes(local_batch_size, process_index, process_count)
    check_file(path, seq_len, max_predictions)
    total = count_examples(path)
    if max_examples is not None:
        total = min(total, max_examples)
    if total < 1:
        raise UserError(f"{path}: no eval examples to read (max_examples={max_examples}); pass "
                        "a positive max_examples")
    lo = process_index * total // process_count
    hi = (process_index + 1) * total // process_count
    count = num_eval_batches(total, local_batch_size=local_batch_size,
                             process_count=process_count)
    return _eval_pass(path, lo, hi, count, seq_len, max_predictions, local_batch_size)


def _eval_pass(path, lo, hi, count, seq_len, max_predictions, size) -> Iterator[dict]:
    tf, _ = tf_modules()
    records = _named_records(tf, path).skip(lo).take(hi - lo)
    batches = records.batch(size).map(_parser(tf, seq_len, max_predictions)).prefetch(2)
    yielded = 0
    for batch in _translated(tf, batches.as_numpy_iterator(), path):
        yield _padded(batch, size)
        yielded += 1
    empty = {name: np.zeros((0, length), np.float32 if name in _FLOAT_FEATURES else np.int32)
             for name, length in feature_lengths(seq_len, max_predictions).items()}
    empty["next_sentence_labels"] = np.zeros((0,), np.int32)
    for _ in range(count - yielded):
        yield _padded(empty, size)
