"""BERT pretraining data: the reference's TFRecord layout written and read back by
input_pipelines.bert_records (per-process shards, padded eval, one-line errors), and the
tiny preset's generated corpus in input_pipelines.tiny_wiki (masking and next-sentence rules,
special ids, byte-identical regeneration)."""

import collections
import os

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from common.errors import UserError
from input_pipelines import bert_records as br
from input_pipelines import tiny_wiki as tw
from input_pipelines import tiny_wiki_text

SEQ, PRED = 16, 4
SMALL = dict(seq_len=64, max_predictions=10, vocab_size=1024, train_examples=1200,
             eval_examples=300, train_shards=2, seed=3)


def _example(i: int, seq: int = SEQ, pred: int = PRED) -> dict[str, np.ndarray]:
    """A hand-made example whose every feature encodes i, so rows identify themselves."""
    real, masked = 4 + i % (seq - 4), 1 + i % pred
    return dict(
        input_ids=(np.arange(seq) + 100 * i).astype(np.int32) * (np.arange(seq) < real),
        input_mask=(np.arange(seq) < real).astype(np.int32),
        segment_ids=((np.arange(seq) >= real // 2) & (np.arange(seq) < real)).astype(np.int32),
        masked_lm_positions=np.where(np.arange(pred) < masked, np.arange(pred) + 1, 0).astype(
            np.int32),
        masked_lm_ids=np.where(np.arange(pred) < masked, 7 * i + np.arange(pred), 0).astype(
            np.int32),
        masked_lm_weights=(np.arange(pred) < masked).astype(np.float32),
        next_sentence_labels=np.array([i % 2], np.int32))


def _rows(batches) -> list[dict]:
    return [{name: b[name][r] for name in br.FEATURES} for b in batches
            for r in range(len(b["input_ids"]))]


def _key(row: dict) -> int:
    return int(row["input_ids"][0]) // 100  # the i of _example(i)


def _assert_rows(rows: list[dict], ids) -> None:
    assert [_key(row) for row in rows] == list(ids)
    for row, i in zip(rows, ids, strict=True):
        want = _example(i)
        for name in br.FEATURES:
            np.testing.assert_array_equal(row[name], want[name].reshape(row[name].shape), name)


def _take(iterator, n: int) -> list[dict]:
    return [next(iterator) for _ in range(n)]


@pytest.fixture(scope="module")
def train_files(tmp_path_factory) -> list[str]:
    """Three files of four examples each: 0-3, 4-7, 8-11."""
    root = tmp_path_factory.mktemp("bert_train")
    for k in range(3):
        br.write_examples(str(root / f"part-{k:05d}-of-00003"),
                          [_example(i) for i in range(4 * k, 4 * k + 4)])
    return br.list_files(str(root))


def _train(files, **kwargs):
    args = dict(seq_len=SEQ, max_predictions=PRED, local_batch_size=3, process_index=0,
                process_count=1, seed=0, shuffle_buffer=1) | kwargs
    return br.train_batches(files, **args)


def test_train_round_trip_epochs_and_dtypes(train_files):
    assert [os.path.basename(f)[:10] for f in train_files] == ["part-00000", "part-00001",
                                                               "part-00002"]
    batch = next(_train(train_files))
    assert {name: (v.dtype, v.shape) for name, v in batch.items()} == {
        name: (np.float32 if name == "masked_lm_weights" else np.int32,
               (3,) if name == "next_sentence_labels" else (3, PRED if "masked" in name else SEQ))
        for name in br.FEATURES}
    # Equal files read round robin: every 12 rows are exactly one epoch, files reshuffled.
    rows = _rows(_take(_train(train_files, seed=1), 12))
    orders = [[_key(r) for r in rows[start:start + 12]] for start in (0, 12, 24)]
    for order in orders:
        assert sorted(order) == list(range(12))
    assert len({tuple(order) for order in orders}) > 1
    _assert_rows(rows, [_key(r) for r in rows])
    # With a shuffle buffer: the same rows, in an order fixed by the seed.
    shuffled = _rows(_take(_train(train_files, shuffle_buffer=100), 4))
    assert collections.Counter(map(_key, shuffled)).keys() <= set(range(12))
    _assert_rows(shuffled, [_key(r) for r in shuffled])
    again = _rows(_take(_train(train_files, shuffle_buffer=100), 4))
    assert [_key(r) for r in again] == [_key(r) for r in shuffled]


def test_train_shards_files_or_records_across_processes(train_files):
    second = _rows(_take(_train(train_files, process_index=1, process_count=2), 4))
    assert sorted(_key(r) for r in second[:4]) == [4, 5, 6, 7]  # files 1::2: part-00001 only
    first = _rows(_take(_train(train_files, process_index=0, process_count=2), 8))
    assert sorted(_key(r) for r in first[:8]) == [0, 1, 2, 3, 8, 9, 10, 11]
    # One file, two processes: each keeps every other record; together they hold them all.
    one = train_files[:1]
    halves = [sorted(_key(r) for r in _rows(_take(_train(one, process_index=p, process_count=2,
                                                         local_batch_size=2), 1)))
              for p in (0, 1)]
    assert sorted(halves[0] + halves[1]) == [0, 1, 2, 3] and not set(halves[0]) & set(halves[1])


def test_eval_two_processes_cover_every_example_once(tmp_path):
    path = str(tmp_path / "eval.tfrecord")
    assert br.write_examples(path, [_example(i) for i in range(11)]) == 11
    assert br.count_examples(path) == 11
    assert br.check_file(path, SEQ, PRED) == os.path.getsize(path)
    shares = [list(br.eval_batches(path, seq_len=SEQ, max_predictions=PRED, local_batch_size=2,
                                   process_index=p, process_count=2)) for p in (0, 1)]
    assert [len(s) for s in shares] == [3, 3]  # shares of 5 and 6 rows, batches of 2
    real, padding = [], []
    for batches in shares:
        for batch in batches:
            assert batch["mask"].dtype == np.float32 and batch["input_ids"].shape == (2, SEQ)
            rows = _rows([batch])
            real += [r for r, m in zip(rows, batch["mask"], strict=True) if m == 1]
            padding += [r for r, m in zip(rows, batch["mask"], strict=True) if m == 0]
    _assert_rows(real, range(11))  # process 0 holds 0-4, process 1 holds 5-10, in order
    assert len(padding) == 1
    assert not padding[0]["masked_lm_weights"].any()
    assert padding[0]["next_sentence_labels"] == 0
    # max_examples: the first four, split 2 / 2.
    limited = [_rows(br.eval_batches(path, seq_len=SEQ, max_predictions=PRED,
                                     local_batch_size=2, process_index=p, process_count=2,
                                     max_examples=4)) for p in (0, 1)]
    _assert_rows(limited[0] + limited[1], range(4))


def _write_raw(path: str, examples: list[dict]) -> str:
    """Records holding exactly the given features (int64 unless float32)."""
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            features = {
                name: tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
                if values.dtype == np.float32 else
                tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))
                for name, values in example.items()}
            writer.write(tf.train.Example(features=tf.train.Features(feature=features))
                         .SerializeToString())
    return path


def _one_line_error(call, *words: str) -> str:
    with pytest.raises(UserError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_bad_records_are_one_line_errors_naming_file_and_feature(tmp_path):
    missing = _example(0)
    del missing["masked_lm_weights"]
    path = _write_raw(str(tmp_path / "no-weights"), [missing])
    _one_line_error(lambda: br.check_file(path, SEQ, PRED), path, "masked_lm_weights",
                    "missing")
    _one_line_error(lambda: next(_train([path])), path, "masked_lm_weights")

    long_ids = _example(1)
    long_ids["input_ids"] = np.arange(SEQ + 1, dtype=np.int32)
    path = _write_raw(str(tmp_path / "long-ids"), [long_ids])
    _one_line_error(lambda: br.check_file(path, SEQ, PRED), path, "input_ids",
                    f"{SEQ + 1} values, expected {SEQ}")
    # The same mistake past the first record surfaces while reading, still naming the file.
    path = _write_raw(str(tmp_path / "late"), [_example(2), long_ids])
    br.check_file(path, SEQ, PRED)
    _one_line_error(lambda: _take(_train([path], local_batch_size=2), 1), path, "input_ids")
    _one_line_error(lambda: list(br.eval_batches(path, seq_len=SEQ, max_predictions=PRED,
                                                 local_batch_size=2, process_index=0,
                                                 process_count=1)), path, "input_ids")
    # Written for another sequence length: the reader names the first mismatch.
    good = str(tmp_path / "good")
    br.write_examples(good, [_example(3)])
    _one_line_error(lambda: br.check_file(good, 2 * SEQ, PRED), good, "feature",
                    f"{SEQ} values, expected {2 * SEQ}", "seq_len")

    empty = _write_raw(str(tmp_path / "empty"), [])
    _one_line_error(lambda: br.check_file(empty, SEQ, PRED), empty, "no records")
    os.makedirs(tmp_path / "nothing")
    _one_line_error(lambda: br.list_files(str(tmp_path / "nothing")), "nothing", "no BERT")
    _one_line_error(lambda: br.list_files(str(tmp_path / "part-*")), "part-*", "no BERT")


# The tiny preset's generated data.


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("bert_tiny"))
    return out, tw.write(out, **SMALL)


def test_written_data_reads_back(small_data):
    out, manifest = small_data
    assert tw.special_ids(manifest) == dict(pad=0, unk=1, cls=2, sep=3, mask=4)
    files = br.list_files(os.path.join(out, tw.TRAIN_DIR))
    assert [os.path.relpath(f, out) for f in files] == manifest["train_files"]
    assert sum(br.count_examples(f) for f in files) == SMALL["train_examples"]
    batches = list(br.eval_batches(os.path.join(out, manifest["eval_file"]), seq_len=64,
                                   max_predictions=10, local_batch_size=128, process_index=0,
                                   process_count=1))
    assert sum(b["mask"].sum() for b in batches) == SMALL["eval_examples"]
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, manifest["vocab_file"]))
    assert sp.get_piece_size() == manifest["vocab_size"] == SMALL["vocab_size"]
    first = batches[0]["input_ids"][0]
    assert first[0] == 2 and (first == 3).sum() == 2


def test_masking_and_next_sentence_rules(small_data):
    out, manifest = small_data
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, tw.VOCAB))
    special = tw.special_ids(manifest)
    docs = tw.tokenized(tiny_wiki_text.documents(800, seed=5, split="train"), sp)
    examples = tw.create_examples(docs, 2000, seq_len=64, max_predictions=10,
                                  vocab_size=SMALL["vocab_size"], special=special, seed=5,
                                  keep_originals=True)
    kinds, masked, maskable = collections.Counter(), 0, 0
    for ex in examples:
        original, inputs = ex["original_ids"], ex["input_ids"]
        real = int(ex["input_mask"].sum())
        np.testing.assert_array_equal(ex["input_mask"], np.arange(64) < real)
        np.testing.assert_array_equal(original != special["pad"], np.arange(64) < real)
        seps = np.flatnonzero(original == special["sep"])
        assert original[0] == special["cls"] and len(seps) == 2 and seps[1] == real - 1
        want_segments = (np.arange(64) > seps[0]) & (np.arange(64) < real)
        np.testing.assert_array_equal(ex["segment_ids"], want_segments)
        count = int(ex["masked_lm_weights"].sum())
        assert count == min(10, max(1, round(real * tw.MASKED_LM_PROB)))
        positions = ex["masked_lm_positions"][:count]
        assert (np.diff(positions) > 0).all() and not ex["masked_lm_positions"][count:].any()
        assert not np.isin(original[positions], [special["cls"], special["sep"],
                                                 special["pad"]]).any()
        np.testing.assert_array_equal(ex["masked_lm_ids"][:count], original[positions])
        assert not ex["masked_lm_ids"][count:].any()
        untouched = np.ones(64, bool)
        untouched[positions] = False
        np.testing.assert_array_equal(inputs[untouched], original[untouched])
        for position in positions:
            if inputs[position] == special["mask"]:
                kinds["mask"] += 1
            elif inputs[position] == original[position]:
                kinds["kept"] += 1
            else:
                assert max(special.values()) < inputs[position] < SMALL["vocab_size"]
                kinds["random"] += 1
        masked, maskable = masked + count, maskable + real - 3
    assert 0.14 < masked / maskable < 0.18  # 15% of all tokens, [CLS] and [SEP]s included
    assert abs(kinds["mask"] / masked - 0.8) < 0.02
    assert abs(kinds["kept"] / masked - 0.1) < 0.015
    assert abs(kinds["random"] / masked - 0.1) < 0.015
    labels = np.array([ex["next_sentence_labels"][0] for ex in examples])
    assert abs(labels.mean() - 0.5) < 0.04
    # Shorter examples occur (the reference's short_seq_prob), so padding is exercised.
    assert min(int(ex["input_mask"].sum()) for ex in examples) < 40


def test_prepare_is_atomic_cached_and_byte_identical(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tw, "TINY", dict(SMALL, train_examples=400, eval_examples=100))
    first_dir, manifest = tw.prepare(str(tmp_path / "a"))
    second_dir, again = tw.prepare(str(tmp_path / "b"))
    assert manifest == again and sorted(os.listdir(tmp_path / "a")) == ["bert_tiny"]
    assert sorted(os.listdir(first_dir)) == ["eval.tfrecord", "manifest.json", "train",
                                             "vocab.model"]
    for name in ("eval.tfrecord", "vocab.model", *manifest["train_files"]):
        with open(os.path.join(first_dir, name), "rb") as a, open(
                os.path.join(second_dir, name), "rb") as b:
            assert a.read() == b.read(), name
    capsys.readouterr()
    assert tw.prepare(str(tmp_path / "a")) == (first_dir, manifest)
    assert "Preparing" not in capsys.readouterr().out  # cached: nothing rebuilt
