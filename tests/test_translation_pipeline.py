"""The Transformer (WMT en->de) input pipeline on real text: the built-in numbers corpus and a
tiny WMT that tfds's own wmt17/wmt14 builders read."""

import collections
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow_datasets as tfds

from input_pipelines import numbers_translate as nt
from input_pipelines import subwords as sw
from input_pipelines import translation as tr
from tests.helpers import one_line_error
from tools import make_tiny_wmt

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MONTHS_DE = "Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember"


def _segments(row: dict, side: str) -> list[np.ndarray]:
    """The token runs of each segment (1, 2, ...) on one side of a packed row."""
    segments = row[f"{side}_segmentation"]
    return [row[side][segments == s] for s in range(1, segments.max() + 1)]


# The vocabulary.


def test_vocab_round_trips_text(vocab):
    assert vocab.size == 512
    texts = [t for pair in nt.pairs("test") for t in pair]
    encoded = vocab.encode(texts)
    for text, ids in zip(texts, encoded, strict=True):
        assert ids[-1] == sw.EOS and sw.EOS not in ids[:-1]
        assert all(sw.UNK < i < vocab.size for i in ids[:-1]), ids
        assert vocab.decode(ids) == text
    # Decoding stops at the first EOS and drops padding, as model outputs need.
    padded = np.zeros((2, 40), np.int32)
    padded[0, : len(encoded[0])] = encoded[0]
    padded[1, : len(encoded[1])] = encoded[1]
    padded[0, len(encoded[0]) :] = 7  # junk after EOS
    assert vocab.decode_batch(padded) == texts[:2]
    assert vocab.decode([sw.PAD, *encoded[2]]) == texts[2]
    assert "⁇" in vocab.decode([vocab.size + 5, sw.EOS])  # past the vocabulary: UNK


def test_vocab_is_deterministic_and_loads(vocab, numbers, tmp_path):
    again = sw.build_vocab(tr.train_texts(numbers, "train"), 512, str(tmp_path / "again.model"))
    with open(vocab.path, "rb") as a, open(again.path, "rb") as b:
        assert a.read() == b.read()
    loaded = sw.load_vocab(vocab.path)
    assert loaded.fingerprint == vocab.fingerprint
    assert loaded.encode(["I saw twelve cats."]) == vocab.encode(["I saw twelve cats."])
    assert not glob.glob(str(tmp_path / "*partial*"))


def test_vocab_bad_input(tmp_path):
    missing = str(tmp_path / "missing.model")
    one_line_error(lambda: sw.load_vocab(missing), f"vocabulary file {missing} does not exist",
                    "--config.vocab_path")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a sentencepiece model\n" * 10)
    one_line_error(lambda: sw.load_vocab(str(garbage)), "is not a sentencepiece model",
                    "--config.vocab_path")
    other_ids = tmp_path / "other_ids.model"  # sentencepiece's defaults: unk 0, bos 1, eos 2
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c", "d e f"] * 50),
                                   model_prefix=str(other_ids)[: -len(".model")],
                                   vocab_size=10, minloglevel=2)
    one_line_error(lambda: sw.load_vocab(str(other_ids)), "pad/eos/unk/bos ids (-1, 2, 0, 1)",
                    "--config.vocab_path")
    one_line_error(lambda: sw.build_vocab(["a b", "c d"], 5000, str(tmp_path / "v.model")),
                    "cannot build a 5000-piece vocabulary", "smaller --config.vocab_size")
    one_line_error(lambda: sw.build_vocab(["", " "], 100, str(tmp_path / "v.model")),
                    "no text to build the vocabulary")


# Packing.


def test_pack_keeps_every_example_once():
    rng = np.random.default_rng(0)
    length, examples = 16, []
    for i in range(500):
        n_in, n_tgt = rng.integers(1, 20, size=2)
        # Token values name their example, so each can be traced into the rows.
        examples.append((np.full(n_in, 3 + i), np.full(n_tgt, 3 + i)))
    stats = tr.PackStats()
    rows = list(tr.pack(iter(examples), length, stats))
    fits = [e for e in examples if len(e[0]) <= length and len(e[1]) <= length]
    assert stats.examples == 500 and stats.discarded == 500 - len(fits) > 0
    assert stats.rows == len(rows)
    seen = []
    for row in rows:
        assert set(row) == set(tr.PACKED_KEYS)
        assert all(v.shape == (length,) and v.dtype == np.int32 for v in row.values())
        inputs, targets = _segments(row, "inputs"), _segments(row, "targets")
        assert len(inputs) == len(targets) >= 1  # an example is in a row with both sides
        for side in ("inputs", "targets"):
            segments, positions = row[f"{side}_segmentation"], row[f"{side}_position"]
            used = np.count_nonzero(segments)
            assert np.all(segments[used:] == 0) and np.all(row[side][used:] == 0)
            assert np.all(np.diff(segments[:used]) >= 0)  # contiguous, in order
            for s in range(1, segments.max() + 1):
                assert list(positions[segments == s]) == list(range(np.sum(segments == s)))
        for a, b in zip(inputs, targets, strict=True):
            assert len(set(a)) == 1 and set(a) == set(b)
            seen.append((len(a), len(b), int(a[0])))
    assert sorted(seen) == sorted((len(a), len(b), int(a[0])) for a, b in fits)
    assert stats.tokens / (2 * length * len(rows)) > 0.6


def test_pack_fills_rows_on_the_corpus(numbers, vocab):
    at_32 = tr.pack_stats(numbers, "train", vocab, 32)
    at_64 = tr.pack_stats(numbers, "train", vocab, 64)
    assert at_32.examples == at_64.examples == 20000
    assert at_32.discarded > 0 == at_64.discarded
    assert tr.packed_rows_per_epoch(numbers, "train", vocab, 64) == at_64.rows
    assert at_64.tokens / (2 * 64 * at_64.rows) > 0.85
    assert at_64.rows < 20000 / 3


# Training batches.


def _train(builder, vocab, **kwargs):
    args = dict(split="train", local_batch_size=8, max_length=48, process_index=0,
                process_count=1, seed=0)
    return tr.train_batches(builder, vocab=vocab, **(args | kwargs))


def test_train_batches_hold_real_pairs(numbers, vocab):
    batches = _train(numbers, vocab)
    first = next(batches)
    assert set(first) == set(tr.PACKED_KEYS)
    assert all(v.shape == (8, 48) and v.dtype == np.int32 for v in first.values())
    corpus = set(nt.pairs("train"))
    for row in range(8):
        one = {k: v[row] for k, v in first.items()}
        for a, b in zip(_segments(one, "inputs"), _segments(one, "targets"), strict=True):
            assert (vocab.decode(a), vocab.decode(b)) in corpus
    assert sw.EOS in first["targets"][0]
    again = next(_train(numbers, vocab))
    other = next(_train(numbers, vocab, seed=1))
    assert np.array_equal(again["inputs"], first["inputs"])
    assert not np.array_equal(other["inputs"], first["inputs"])


def _sources_seen(batches, vocab, count) -> collections.Counter:
    seen = collections.Counter()
    for _ in range(count):
        batch = next(batches)
        for row in range(len(batch["inputs"])):
            one = {k: v[row] for k, v in batch.items()}
            seen.update(vocab.decode(s) for s in _segments(one, "inputs"))
    return seen


def test_train_processes_read_disjoint_shares(tiny_wmt, vocab):
    builder = tr.open_builder(make_tiny_wmt.TRAIN_DATASET, tiny_wmt)
    rows = tr.packed_rows_per_epoch(builder, "train", vocab, 48)
    # Enough batches for more than one epoch of each process's half.
    shares = [
        _sources_seen(_train(builder, vocab, process_index=i, process_count=2), vocab,
                      rows // 8 + 2)
        for i in (0, 1)
    ]
    assert not set(shares[0]) & set(shares[1])
    assert set(shares[0]) | set(shares[1]) == {en for en, _ in nt.pairs("train")[:300]}
    assert max(shares[0].values()) > 1  # it went on into the next epoch


def test_train_batches_read_nothing_until_next(numbers_dir, vocab, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(numbers_dir, copy)
    builder = tr.open_builder(nt.NAME, str(copy))
    batches = _train(builder, vocab)
    for record in glob.glob(f"{copy}/{nt.NAME}/*/*.tfrecord*"):
        os.remove(record)  # built already; only reading can notice
    one_line_error(lambda: next(batches), "damaged or missing", "prepare it again")


def test_train_batches_bad_sizes(numbers, vocab):
    one_line_error(lambda: _train(numbers, vocab, max_length=1), "max_length >= 2")
    one_line_error(lambda: _train(numbers, vocab, local_batch_size=0), "batch size >= 1")


# Evaluation batches.


@pytest.mark.parametrize("process_count,batch_size", [(1, 64), (2, 64), (3, 7)])
def test_eval_covers_each_example_once(numbers, vocab, process_count, batch_size):
    sources, references = tr.sources(numbers, "test"), tr.references(numbers, "test")
    assert sorted(zip(sources, references, strict=True)) == sorted(nt.pairs("test"))
    steps = tr.eval_steps(numbers, "test", batch_size * process_count)
    seen = []
    for process in range(process_count):
        batches = list(tr.eval_batches(numbers, "test", vocab, local_batch_size=batch_size,
                                       max_length=64, process_index=process,
                                       process_count=process_count))
        assert len(batches) == steps
        for batch in batches:
            assert batch["inputs"].shape == batch["targets"].shape == (batch_size, 64)
            assert batch["index"].dtype == np.int32 and batch["mask"].dtype == np.float32
            assert np.array_equal(batch["mask"], (batch["index"] >= 0).astype(np.float32))
            assert not batch["inputs"][batch["mask"] == 0].any()
            for index, inputs, targets in zip(batch["index"], batch["inputs"],
                                              batch["targets"], strict=True):
                if index >= 0:
                    assert vocab.decode(inputs) == sources[index]
                    assert vocab.decode(targets) == references[index]
                    seen.append(int(index))
    assert sorted(seen) == list(range(500))


def test_eval_truncates_long_sentences(numbers, vocab):
    (batch,) = tr.eval_batches(numbers, "test", vocab, local_batch_size=500, max_length=6,
                               process_index=0, process_count=1)
    full = vocab.encode(tr.sources(numbers, "test"))
    for ids, row in zip(full, batch["inputs"], strict=True):
        kept = ids if len(ids) <= 6 else [*ids[:5], sw.EOS]
        assert list(row[: len(kept)]) == kept and not row[len(kept) :].any()
    assert sum(len(ids) > 6 for ids in full) > 100


# The tiny WMT, read by tfds's own builders.


def test_tiny_wmt_is_read_by_tfds_own_builders(tiny_wmt):
    from tensorflow_datasets.translate import wmt14, wmt17

    train = tfds.builder("wmt17_translate/de-en", data_dir=tiny_wmt, try_gcs=False)
    test = tfds.builder("wmt14_translate/de-en", data_dir=tiny_wmt, try_gcs=False)
    assert type(train) is wmt17.Wmt17Translate and type(test) is wmt14.Wmt14Translate
    assert train.is_prepared() and test.is_prepared()
    assert {n: s.num_examples for n, s in train.info.splits.items()} == {
        "train": 300, "validation": 20}
    assert {n: s.num_examples for n, s in test.info.splits.items()} == {"test": 50}
    read = {(e["en"].decode(), e["de"].decode())
            for e in tfds.as_numpy(train.as_dataset(split="train"))}
    assert read == set(nt.pairs("train")[:300])
    validation = {e["en"] for e in tfds.as_numpy(train.as_dataset(split="validation"))}
    assert len(validation) == 20


def test_tiny_wmt_through_the_pipeline(tiny_wmt, vocab):
    builder = tr.open_builder(make_tiny_wmt.EVAL_DATASET, tiny_wmt)
    assert sorted(tr.references(builder, "test")) == sorted(de for _, de in nt.pairs("test")[:50])
    batches = list(tr.eval_batches(builder, "test", vocab, local_batch_size=16, max_length=64,
                                   process_index=1, process_count=2))
    assert len(batches) == 2 and sum(b["mask"].sum() for b in batches) == 25


def test_dataset_without_the_split(tmp_path, vocab):
    sentences = [pair for pair in nt.pairs("test") if pair[0].endswith(".")][:5]
    make_tiny_wmt.write_dataset(str(tmp_path), make_tiny_wmt.EVAL_DATASET,
                                {"validation": sentences})
    builder = tr.open_builder(make_tiny_wmt.EVAL_DATASET, str(tmp_path))
    one_line_error(
        lambda: tr.eval_batches(builder, "test", vocab, local_batch_size=4, max_length=16,
                                process_index=0, process_count=1),
        "wmt14_translate/de-en/1.0.0", "has no split 'test'; it has: validation")
    one_line_error(lambda: _train(builder, vocab, split="test"), "has no split 'test'")
    # Only sentences, each longer than 4 tokens: training must stop, not read forever.
    one_line_error(lambda: next(_train(builder, vocab, split="validation", max_length=4)),
                    "every example is longer than max_length 4")


def test_unprepared_data_dir(tmp_path):
    one_line_error(lambda: tr.open_builder(make_tiny_wmt.TRAIN_DATASET, str(tmp_path)),
                    "no prepared wmt17_translate/de-en", "tfds build wmt17_translate/de-en",
                    "tools.make_tiny_wmt")
    one_line_error(lambda: tr.open_builder(make_tiny_wmt.TRAIN_DATASET, str(tmp_path / "no")),
                    "does not exist")
    one_line_error(lambda: tr.open_builder(make_tiny_wmt.TRAIN_DATASET, None), "--data_dir")


def test_make_tiny_wmt_refuses_bad_input(tiny_wmt):
    one_line_error(lambda: make_tiny_wmt.make(tiny_wmt), "already exists")
    one_line_error(lambda: make_tiny_wmt.make(tiny_wmt, test_examples=500),
                    "--validation_examples")
    with pytest.raises(SystemExit, match="^error: .* already exists"):
        make_tiny_wmt.main(["--out", tiny_wmt])


def test_importable_without_tensorflow(vocab, tmp_path):
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None\n"
        "from input_pipelines import subwords as sw\n"
        "from input_pipelines import translation as tr\n"
        "from common.errors import UserError\n"
        f"vocab = sw.load_vocab({vocab.path!r})\n"
        "(ids,) = vocab.encode(['I saw twelve cats.'])\n"
        "rows = list(tr.pack([(ids, ids)] * 2, 2 * len(ids)))\n"
        "print(vocab.decode(rows[0]['inputs']), len(rows))\n"
        "try:\n"
        f"    tr.open_builder('wmt14_translate/de-en', {str(tmp_path)!r})\n"
        "except UserError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "I saw twelve cats. 1"
    assert "TensorFlow" in lines[1] and len(lines) == 2
