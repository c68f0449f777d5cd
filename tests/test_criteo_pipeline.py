"""The DLRM click-log reader (input_pipelines.criteo) on planted data in the reference's
multi-hot Criteo layout, the planted-data generator, and tools.make_tiny_criteo."""

import os
import shutil
import threading
import time
import tracemalloc

import numpy as np
import pytest

from common.errors import UserError
from input_pipelines import criteo
from input_pipelines import planted_clicks as pc
from tools import make_tiny_criteo

# Reference hotness (214 ids a row) over capped vocabularies; an odd day length so that the
# last day's val half is the larger one.
DAYS, ROWS = 4, 1001
VOCAB = tuple(min(v, 1000) for v in criteo.REFERENCE_VOCAB_SIZES)
SMALL = dict(num_days=3, rows_per_day=40, vocab_sizes=(5, 7, 11), hotness=(1, 2, 3), seed=3)


@pytest.fixture(scope="module")
def reference_like(tmp_path_factory) -> str:
    data_dir = str(tmp_path_factory.mktemp("criteo"))
    pc.write(data_dir, num_days=DAYS, rows_per_day=ROWS, vocab_sizes=VOCAB,
             hotness=criteo.REFERENCE_HOTNESS, seed=7)
    return data_dir


@pytest.fixture(scope="module")
def logs(reference_like) -> criteo.ClickLogs:
    return criteo.open_click_logs(reference_like, num_days=DAYS, hotness=criteo.REFERENCE_HOTNESS,
                                  vocab_sizes=VOCAB)


@pytest.fixture(scope="module")
def expected(reference_like) -> dict[str, np.ndarray]:
    """Every row of every day as the reader should return it, days concatenated."""
    days = {"dense": [], "sparse": [], "label": []}
    for day in range(DAYS):
        def path(kind, day=day):
            return os.path.join(reference_like, f"day_{day}_{kind}")
        days["dense"].append(np.load(path("dense.npy")))
        days["label"].append(np.load(path("labels.npy"))[:, 0].astype(np.float32))
        with np.load(path("sparse_multi_hot.npz")) as members:
            days["sparse"].append(np.concatenate(
                [members[str(k)] % VOCAB[k] for k in range(len(VOCAB))], axis=1))
    return {key: np.concatenate(parts) for key, parts in days.items()}


def _rows(expected: dict, first: int, end: int) -> dict:
    return {key: value[first:end] for key, value in expected.items()}


def _assert_batch(batch: dict, want: dict) -> None:
    assert batch["dense"].dtype == np.float32 and batch["sparse"].dtype == np.int32
    assert batch["label"].dtype == np.float32
    for key in ("dense", "sparse", "label"):
        np.testing.assert_array_equal(batch[key], want[key], err_msg=key)


def _train(logs, count, **kwargs) -> list[dict]:
    batches = criteo.train_batches(logs, **({"process_index": 0, "process_count": 1} | kwargs))
    try:
        return [next(batches) for _ in range(count)]
    finally:
        batches.close()


# Reading.


def test_open_counts_rows_per_split(logs):
    assert logs.day_rows == (ROWS,) * DAYS
    assert logs.split_rows("train") == (DAYS - 1) * ROWS
    assert (logs.split_rows("val"), logs.split_rows("test")) == (501, 500)  # ceil(N/2), rest
    assert criteo.sparse_offsets((3, 2, 1)) == (0, 3, 5)


def test_first_train_batch_is_the_files_first_rows(logs, expected, reference_like):
    (batch,) = _train(logs, 1, local_batch_size=16)
    _assert_batch(batch, _rows(expected, 0, 16))
    assert batch["sparse"].shape == (16, sum(criteo.REFERENCE_HOTNESS))
    # The planted ids are hash-like (id + vocab * r): the modulo above was really exercised.
    with np.load(os.path.join(reference_like, "day_0_sparse_multi_hot.npz")) as members:
        assert (members["0"] >= VOCAB[0]).any()


def test_batches_cross_day_files_and_wrap_at_the_epoch(logs, expected):
    # 3003 train rows: four batches of 700 (the last three cross a day boundary), then the
    # 203 rows left over are dropped and the second epoch starts again at row 0.
    batches = _train(logs, 5, local_batch_size=700, prefetch=0)
    for step, batch in enumerate(batches[:4]):
        _assert_batch(batch, _rows(expected, step * 700, (step + 1) * 700))
    _assert_batch(batches[4], _rows(expected, 0, 700))


def test_processes_read_disjoint_contiguous_shards(logs, expected):
    # 2 processes x 300 rows: 5 steps an epoch; shards start at rows 0 and 3003 // 2 = 1501.
    for process, shard_start in ((0, 0), (1, 1501)):
        # Parallel reads (process 1) must not change the order.
        batches = _train(logs, 6, local_batch_size=300, process_index=process, process_count=2,
                         prefetch=4, read_threads=1 + 2 * process)
        for step, batch in enumerate(batches):
            first = shard_start + (step % 5) * 300
            _assert_batch(batch, _rows(expected, first, first + 300))


@pytest.mark.parametrize("split,process_count,batch_size", [("val", 3, 64), ("test", 2, 100),
                                                             ("val", 1, 1000), ("test", 600, 1)])
def test_eval_covers_each_row_once_with_equal_batch_counts(logs, expected, split,
                                                           process_count, batch_size):
    first = (DAYS - 1) * ROWS + (0 if split == "val" else logs.split_rows("val"))
    want = _rows(expected, first, first + logs.split_rows(split))
    counts, real = set(), {"dense": [], "sparse": [], "label": []}
    for process in range(process_count):
        # No prefetch threads for 600 processes: starting them would dominate the test.
        batches = list(criteo.eval_batches(logs, split, local_batch_size=batch_size,
                                           process_index=process, process_count=process_count,
                                           prefetch=2 if process_count < 10 else 0))
        counts.add(len(batches))
        for batch in batches:
            keep = batch["mask"] == 1
            assert set(np.unique(batch["mask"])) <= {0.0, 1.0}
            # Padding is zeros and only ever after the real rows.
            assert keep[: keep.sum()].all()
            assert not batch["dense"][~keep].any() and not batch["sparse"][~keep].any()
            for key in real:
                real[key].append(batch[key][keep])
    assert counts == {criteo.num_eval_batches(logs, split, local_batch_size=batch_size,
                                              process_count=process_count)}
    _assert_batch({key: np.concatenate(parts) for key, parts in real.items()}, want)


def test_batches_come_from_memory_maps_not_whole_days(tmp_path):
    # A day is 4 MB here; batches of 8 rows read through memory maps allocate kilobytes,
    # where loading any day, or any one of its arrays, would show up in full.
    rows, hotness = 50_000, (3, 2, 1)
    pc.write(str(tmp_path), num_days=2, rows_per_day=rows, vocab_sizes=(50, 60, 70),
             hotness=hotness)
    logs = criteo.open_click_logs(str(tmp_path), num_days=2, hotness=hotness,
                                  vocab_sizes=(50, 60, 70))
    smallest_array = rows * 4 * min(hotness)
    tracemalloc.start()
    try:
        batches = criteo.train_batches(logs, local_batch_size=8, process_index=1,
                                       process_count=2, prefetch=0)
        for _ in range(3):
            next(batches)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < smallest_array / 2, (peak, smallest_array)


def test_prefetch_thread_raises_in_the_consumer_and_stops_with_the_iterator(tmp_path):
    pc.write(str(tmp_path), **SMALL)
    logs = criteo.open_click_logs(str(tmp_path), num_days=3, hotness=(1, 2, 3),
                                  vocab_sizes=(5, 7, 11))
    os.remove(tmp_path / "day_1_dense.npy")  # after open: the reader only finds out mid-run
    batches = criteo.train_batches(logs, local_batch_size=30, process_index=0, process_count=1)
    next(batches)  # rows 0..29 are in day 0
    with pytest.raises(FileNotFoundError, match="day_1_dense.npy"):
        next(batches)

    batches = criteo.train_batches(logs, local_batch_size=10, process_index=0, process_count=1)
    next(batches)
    batches.close()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("criteo-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "prefetch threads outlived their iterator"
        time.sleep(0.02)


def test_a_batch_larger_than_the_data_is_refused(logs):
    with pytest.raises(UserError, match="exceeds the 3003 training rows"):
        criteo.train_batches(logs, local_batch_size=2000, process_index=0, process_count=2)


# Bad data: one line naming the file, caught at open.


def _damage_truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 7)


def _rewrite_npz(path, drop=None, compressed=False):
    with np.load(path) as members:
        kept = {name: members[name] for name in members.files if name != drop}
    (np.savez_compressed if compressed else np.savez)(path, **kept)


DAMAGE = {
    "truncated dense": ("day_1_dense.npy", _damage_truncate, "truncated"),
    "truncated labels": ("day_0_labels.npy", _damage_truncate, "truncated"),
    "truncated npz": ("day_2_sparse_multi_hot.npz", _damage_truncate, "zip"),
    "dense with 12 columns": (
        "day_1_dense.npy", lambda p: np.save(p, np.zeros((40, 12), np.float32)),
        "float32 (N, 13), found float32 (40, 12)"),
    "float64 dense": ("day_0_dense.npy", lambda p: np.save(p, np.zeros((40, 13))),
                      "found float64"),
    "labels rows differ from dense": (
        "day_2_labels.npy", lambda p: np.save(p, np.zeros((39, 1), np.int32)),
        "int32 (40, 1), found int32 (39, 1)"),
    "npz missing a member": ("day_1_sparse_multi_hot.npz",
                             lambda p: _rewrite_npz(p, drop="1"), "missing ['1.npy']"),
    "compressed npz": ("day_0_sparse_multi_hot.npz",
                       lambda p: _rewrite_npz(p, compressed=True), "savez_compressed"),
    "missing day file": ("day_2_labels.npy", os.remove, "missing"),
}


@pytest.mark.parametrize("name", DAMAGE)
def test_bad_files_fail_at_open_with_one_line_naming_the_file(tmp_path, name):
    file_name, damage, needle = DAMAGE[name]
    pc.write(str(tmp_path), **SMALL)
    damage(str(tmp_path / file_name))
    with pytest.raises(UserError) as info:
        criteo.open_click_logs(str(tmp_path), num_days=3, hotness=(1, 2, 3),
                               vocab_sizes=(5, 7, 11))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / file_name) in message and needle in message, message


def test_config_disagreeing_with_the_files_names_the_file(tmp_path):
    pc.write(str(tmp_path), **SMALL)
    with pytest.raises(UserError, match=r"day_0_sparse_multi_hot.npz: member 2.npy .* int32 "
                                        r"\(40, 4\), found int32 \(40, 3\)"):
        criteo.open_click_logs(str(tmp_path), num_days=3, hotness=(1, 2, 4),
                               vocab_sizes=(5, 7, 11))
    with pytest.raises(UserError, match="day_3_dense.npy is missing"):
        criteo.open_click_logs(str(tmp_path), num_days=4, hotness=(1, 2, 3),
                               vocab_sizes=(5, 7, 11))


def test_missing_data_dir_is_one_line(tmp_path):
    with pytest.raises(UserError, match=f"--data_dir {tmp_path / 'nope'} is not a directory"):
        criteo.open_click_logs(str(tmp_path / "nope"), num_days=3, hotness=(1,),
                               vocab_sizes=(5,))


# The planted data.


def _file_bytes(directory) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def test_planted_logs_are_byte_identical_for_a_seed(tmp_path, monkeypatch):
    first = pc.write(str(tmp_path / "a"), **SMALL)
    # An hour later: zip members carry timestamps, which must not leak into the bytes.
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert pc.write(str(tmp_path / "b"), **SMALL) == first
    assert _file_bytes(tmp_path / "a") == _file_bytes(tmp_path / "b")
    pc.write(str(tmp_path / "c"), **(SMALL | {"seed": 4}))
    assert _file_bytes(tmp_path / "c")["day_0_dense.npy"] != _file_bytes(tmp_path / "a")[
        "day_0_dense.npy"]


def test_planted_logs_have_a_reachable_oracle_and_realistic_click_rate(tmp_path):
    manifest = pc.write(str(tmp_path), **(pc.TINY | {"num_days": 2, "rows_per_day": 20_000}))
    assert 0.75 < manifest["oracle_auc_val"] < 0.95
    assert 0.2 < manifest["positive_rate"] < 0.4
    assert (manifest["train_rows"], manifest["val_rows"]) == (20_000, 10_000)


def test_prepare_writes_once_atomically_and_rebuilds_when_stale(tmp_path, monkeypatch):
    monkeypatch.setitem(pc.DATASETS, "small", SMALL)
    data_dir, manifest = pc.prepare(str(tmp_path), "small")
    assert data_dir == str(tmp_path / "criteo_small")
    assert os.listdir(tmp_path) == ["criteo_small"]  # no staging directory left behind
    criteo.open_click_logs(data_dir, num_days=3, hotness=(1, 2, 3), vocab_sizes=(5, 7, 11))

    def no_write(*args, **kwargs):
        raise AssertionError("prepared data was written again")

    with monkeypatch.context() as m:
        m.setattr(pc, "write", no_write)
        assert pc.prepare(str(tmp_path), "small") == (data_dir, manifest)
    monkeypatch.setitem(pc.DATASETS, "small", SMALL | {"rows_per_day": 50})
    assert pc.prepare(str(tmp_path), "small")[1]["rows_per_day"] == 50
    assert os.listdir(tmp_path) == ["criteo_small"]
    with pytest.raises(UserError, match="no built-in click logs named 'huge'"):
        pc.prepare(str(tmp_path), "huge")


# tools.make_tiny_criteo.


def test_make_tiny_criteo_writes_the_reference_layout(tmp_path, capsys):
    out = tmp_path / "tiny"
    make_tiny_criteo.main(["--out", str(out), "--num_days", "3", "--rows_per_day", "20",
                           "--reference_shape"])
    assert "wrote 3 days x 20 rows" in capsys.readouterr().out
    # Read with the reference's own (uncapped) vocabulary sizes, as a reference config would.
    logs = criteo.open_click_logs(str(out), num_days=3, hotness=criteo.REFERENCE_HOTNESS,
                                  vocab_sizes=criteo.REFERENCE_VOCAB_SIZES)
    assert (logs.split_rows("train"), logs.split_rows("val")) == (40, 10)
    with pytest.raises(SystemExit, match="not empty"):
        make_tiny_criteo.main(["--out", str(out)])
    shutil.rmtree(out)
