"""Reader of the click logs that MLPerf's DLRM-DCNv2 trains on: the MLCommons reference's
materialised multi-hot Criteo 1TB, read with NumPy through memory maps.

A dataset directory holds, for each day d of `num_days` (24 for the real set):
  day_{d}_dense.npy              float32 (N_d, 13), already log-transformed
  day_{d}_labels.npy             int32 (N_d, 1), 0 or 1
  day_{d}_sparse_multi_hot.npz   uncompressed npz with members 0.npy .. {K-1}.npy; member k
                                 is int32 (N_d, hotness[k]), ids taken modulo vocab_sizes[k]
Days 0..num_days-2 are the training set; the last day's first ceil(N/2) rows are the
validation split ("val") and the rest the test split.

The real set is about 3.8 TB, so nothing is ever loaded whole: every .npy, and every member
inside the npz, is memory-mapped at its byte offset, and a batch copies only its own rows.
open_click_logs reads headers alone but checks them all, so a missing, truncated or
mis-shaped file fails at start-up with one line, not hours into a run.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator

import numpy as np

from common.errors import UserError
from input_pipelines import npy_files
from input_pipelines import prefetch as prefetch_lib

NUM_DENSE = 13
# Facts of the MLPerf set (MLCommons reference, Criteo 1TB with multi-hot sparse features).
REFERENCE_NUM_DAYS = 24
REFERENCE_HOTNESS = (3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3,
                     1, 1)
REFERENCE_VOCAB_SIZES = (40_000_000, 39_060, 17_295, 7_424, 20_265, 3, 7_122, 1_543, 63,
                         40_000_000, 3_067_956, 405_282, 10, 2_209, 11_938, 155, 4, 976, 14,
                         40_000_000, 40_000_000, 40_000_000, 590_152, 12_973, 108, 36)
REFERENCE_TRAIN_ROWS = 4_195_197_692
REFERENCE_VAL_ROWS = 89_137_319
SPLITS = ("train", "val", "test")
_FIX = "regenerate it with the reference preprocessing or pass the right --data_dir"


@dataclasses.dataclass(frozen=True)
class ClickLogs:
    """An opened, validated dataset: where its files are and how many rows each day has.

    byte_offsets[d] = (dense, labels, (member 0, ..., member K-1)): where each array's data
    starts in its file, found by open_click_logs so that readers map without re-parsing.
    """

    data_dir: str
    num_days: int
    hotness: tuple[int, ...]
    vocab_sizes: tuple[int, ...]
    day_rows: tuple[int, ...]
    byte_offsets: tuple[tuple[int, int, tuple[int, ...]], ...] = dataclasses.field(
        default=(), repr=False, compare=False)

    def split_rows(self, split: str) -> int:
        """Rows of "train", "val" or "test"."""
        last = self.day_rows[-1]
        if split == "train":
            return sum(self.day_rows[:-1])
        if split == "val":
            return (last + 1) // 2
        if split == "test":
            return last // 2
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")

    def paths(self, day: int) -> tuple[str, str, str]:
        """(dense, labels, sparse) file paths of one day."""
        return day_paths(self.data_dir, day)


def day_paths(data_dir: str, day: int) -> tuple[str, str, str]:
    """(dense, labels, sparse) file paths of one day, named as the reference names them."""
    return tuple(os.path.join(data_dir, f"day_{day}_{kind}")
                 for kind in ("dense.npy", "labels.npy", "sparse_multi_hot.npz"))


def sparse_offsets(hotness: tuple[int, ...]) -> tuple[int, ...]:
    """First column of each feature's ids in a batch's "sparse" array."""
    return tuple(int(x) for x in np.cumsum((0, *hotness[:-1])))


# Opening: headers only.


def open_click_logs(data_dir: str, *, num_days: int, hotness: tuple[int, ...],
                    vocab_sizes: tuple[int, ...]) -> ClickLogs:
    """Checks every file's header against the others and the config; reads no data.

    Raises UserError, one line naming the file, on anything missing, truncated or mis-shaped.
    """
    hotness, vocab_sizes = tuple(int(h) for h in hotness), tuple(int(v) for v in vocab_sizes)
    if len(hotness) != len(vocab_sizes) or not hotness:
        raise UserError(f"{len(hotness)} hotness values but {len(vocab_sizes)} vocabulary "
                        "sizes; give one of each per sparse feature")
    if min(hotness) < 1 or min(vocab_sizes) < 1 or max(vocab_sizes) > np.iinfo(np.int32).max:
        raise UserError(f"hotness must be >= 1 and vocabulary sizes in 1..2**31-1, got "
                        f"hotness={hotness} vocab_sizes={vocab_sizes}")
    if num_days < 2:
        raise UserError(f"num_days={num_days}: click logs need at least one training day and "
                        "one evaluation day")
    if not os.path.isdir(data_dir):
        raise UserError(f"--data_dir {data_dir} is not a directory; pass the directory "
                        "holding day_0_dense.npy .. day_N_sparse_multi_hot.npz")
    logs = ClickLogs(data_dir, num_days, hotness, vocab_sizes, (), ())
    day_rows, byte_offsets = [], []
    for day in range(num_days):
        dense_path, labels_path, sparse_path = logs.paths(day)
        for path in (dense_path, labels_path, sparse_path):
            if not os.path.isfile(path):
                raise UserError(f"{path} is missing (day {day} of {num_days}); {_FIX}")
        rows, dense_offset = npy_files.open_npy(dense_path, NUM_DENSE, np.float32, None,
                                                "dense features", _FIX)
        _, labels_offset = npy_files.open_npy(
            labels_path, 1, np.int32, rows,
            f"labels (rows as in {os.path.basename(dense_path)})", _FIX)
        member_offsets = npy_files.open_npz_members(sparse_path, rows, hotness, _FIX)
        day_rows.append(rows)
        byte_offsets.append((dense_offset, labels_offset, member_offsets))
    return dataclasses.replace(logs, day_rows=tuple(day_rows), byte_offsets=tuple(byte_offsets))


# Reading: batches copied out of memory maps.


class _Days:
    """Memory maps of each day's arrays, opened on first use. Reading threads share them; two
    threads mapping the same day at once only waste a map."""

    def __init__(self, logs: ClickLogs):
        self.logs = logs
        self.offsets = sparse_offsets(logs.hotness)
        self._maps: dict[int, tuple] = {}

    def _arrays(self, day: int) -> tuple:
        if day not in self._maps:
            logs, rows = self.logs, self.logs.day_rows[day]
            dense_path, labels_path, sparse_path = logs.paths(day)
            dense_at, labels_at, member_at = logs.byte_offsets[day]

            def mapped(path, dtype, offset, columns):
                if rows == 0:  # mmap refuses empty regions
                    return np.zeros((0, columns), dtype)
                return np.memmap(path, dtype, "r", offset, (rows, columns))

            self._maps[day] = (
                mapped(dense_path, np.float32, dense_at, NUM_DENSE),
                mapped(labels_path, np.int32, labels_at, 1),
                [mapped(sparse_path, np.int32, at, h)
                 for at, h in zip(member_at, logs.hotness, strict=True)],
            )
        return self._maps[day]

    def empty_batch(self, size: int) -> dict[str, np.ndarray]:
        return {
            "dense": np.zeros((size, NUM_DENSE), np.float32),
            "sparse": np.zeros((size, sum(self.logs.hotness)), np.int32),
            "label": np.zeros((size,), np.float32),
        }

    def copy_rows(self, day: int, lo: int, hi: int, batch: dict, at: int) -> None:
        """Rows lo..hi of `day` into batch rows at..at+hi-lo."""
        dense, labels, members = self._arrays(day)
        end = at + hi - lo
        batch["dense"][at:end] = dense[lo:hi]
        batch["label"][at:end] = labels[lo:hi, 0]
        sparse = batch["sparse"]
        for member, start, h, vocab in zip(members, self.offsets, self.logs.hotness,
                                           self.logs.vocab_sizes, strict=True):
            ids = member[lo:hi]
            # Integer division costs three times a copy; ids already in range (as
            # preprocessed sets usually have them) need none, and the scan that tells is cheap
            # on the contiguous rows of the file.
            if ids.size and (ids.min() < 0 or ids.max() >= vocab):
                np.remainder(ids, vocab, out=sparse[at:end, start:start + h])
            else:
                sparse[at:end, start:start + h] = ids


def _day_starts(day_rows: tuple[int, ...]) -> list[int]:
    return [int(x) for x in np.cumsum((0, *day_rows))]


def _read_train(days: _Days, starts: list[int], first: int, size: int) -> dict:
    """Training rows first..first+size of the days concatenated, crossing day files."""
    batch = days.empty_batch(size)
    row, filled = first, 0
    while filled < size:
        day = bisect.bisect_right(starts, row) - 1
        take = min(size - filled, starts[day + 1] - row)
        days.copy_rows(day, row - starts[day], row - starts[day] + take, batch, filled)
        row, filled = row + take, filled + take
    return batch


def train_steps_per_epoch(logs: ClickLogs, global_batch_size: int) -> int:
    """Full global batches in one pass over the training days; the remainder is dropped."""
    return logs.split_rows("train") // global_batch_size


def train_batches(logs: ClickLogs, *, local_batch_size: int, process_index: int,
                  process_count: int, seed: int = 0, prefetch: int = 2,
                  read_threads: int = 1) -> Iterator[dict]:
    """This process's training batches, forever: {"dense", "sparse", "label"} NumPy arrays.

    Process p of P owns the contiguous shard of training rows starting at p * (rows // P) and
    reads it in order, a step's global batch being the processes' local batches in process
    order; after train_steps_per_epoch batches it starts again at its shard's start.

    `seed` is accepted for symmetry with the other readers and ignored: the reference trains
    on the preprocessed, already shuffled days in file order without reshuffling, and order
    within a batch cannot change a step. Background threads read up to `prefetch` batches
    ahead (0: read in the caller's thread), `read_threads` batches at a time.
    """
    del seed
    _check_processes(local_batch_size, process_index, process_count)
    steps = train_steps_per_epoch(logs, local_batch_size * process_count)
    if steps < 1:
        raise UserError(f"a global batch of {local_batch_size * process_count} rows exceeds the "
                        f"{logs.split_rows('train')} training rows in {logs.data_dir}; use a "
                        "smaller batch or more data")
    shard_start = process_index * (logs.split_rows("train") // process_count)
    starts = _day_starts(logs.day_rows[:-1])

    def reads() -> Iterator[Callable[[], dict]]:
        days = _Days(logs)
        while True:
            for step in range(steps):
                yield functools.partial(_read_train, days, starts,
                                        shard_start + step * local_batch_size, local_batch_size)

    return prefetch_lib.prefetched(reads, prefetch, read_threads, name="criteo-read")


def _eval_share(logs: ClickLogs, split: str, process_index: int,
                process_count: int) -> tuple[int, int]:
    """This process's rows of the split as (first, end) rows of the last day."""
    if split not in ("val", "test"):
        raise ValueError(f"eval split must be 'val' or 'test', got {split!r}")
    split_start = 0 if split == "val" else logs.split_rows("val")
    rows = logs.split_rows(split)
    # Shares differ by at most one row.
    lo = split_start + process_index * rows // process_count
    hi = split_start + (process_index + 1) * rows // process_count
    return lo, hi


def num_eval_batches(logs: ClickLogs, split: str, *, local_batch_size: int,
                     process_count: int) -> int:
    """Batches every process yields for the split: enough for the largest share."""
    largest_share = -(-logs.split_rows(split) // process_count)
    return -(-largest_share // local_batch_size)


def eval_batches(logs: ClickLogs, split: str, *, local_batch_size: int, process_index: int,
                 process_count: int, prefetch: int = 2, read_threads: int = 1) -> Iterator[dict]:
    """One pass over this process's share of "val" or "test": batches as in train_batches plus
    "mask" (1 real row, 0 padding). Every process yields num_eval_batches batches, so that
    collective eval steps stay in lockstep; rows past a share's end are zeros with mask 0."""
    _check_processes(local_batch_size, process_index, process_count)
    lo, hi = _eval_share(logs, split, process_index, process_count)
    count = num_eval_batches(logs, split, local_batch_size=local_batch_size,
                             process_count=process_count)
    last_day = logs.num_days - 1

    days = _Days(logs)

    def read(first: int) -> dict:
        end = min(first + local_batch_size, hi)
        batch = days.empty_batch(local_batch_size)
        days.copy_rows(last_day, first, end, batch, 0)
        batch["mask"] = np.zeros((local_batch_size,), np.float32)
        batch["mask"][: end - first] = 1.0
        return batch

    def reads() -> Iterator[Callable[[], dict]]:
        for i in range(count):
            yield functools.partial(read, min(lo + i * local_batch_size, hi))

    return prefetch_lib.prefetched(reads, prefetch, read_threads, name="criteo-read")


def _check_processes(local_batch_size: int, process_index: int, process_count: int) -> None:
    if local_batch_size < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"need local_batch_size >= 1 and 0 <= process_index < process_count, "
                         f"got {local_batch_size}, {process_index}, {process_count}")
