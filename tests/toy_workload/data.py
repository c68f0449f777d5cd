"""The data: scikit-learn's 1,797 8x8 digits, the first 1,500 to train, the rest to score."""

import functools

import numpy as np

TRAIN = 1500


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


def sizes() -> tuple[int, int]:
    images, _ = _arrays()
    return TRAIN, len(images) - TRAIN


def train_batches(batch: int, process_index: int, process_count: int, seed: int):
    """Endless shuffled batches of this process's rows of each global batch."""
    images, labels = _arrays()
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(TRAIN)
        for start in range(0, TRAIN - batch * process_count + 1, batch * process_count):
            rows = order[start + process_index * batch:start + (process_index + 1) * batch]
            yield {"image": images[rows], "label": labels[rows]}


def eval_batches(batch: int, process_index: int, process_count: int):
    """One pass over the held-out rows, padded to whole batches (mask 0 on padding)."""
    images, labels = _arrays()
    rows = np.arange(TRAIN, len(images))
    step = batch * process_count
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step][process_index * batch:(process_index + 1) * batch]
        pad = batch - len(chunk)
        take = np.concatenate([chunk, np.full(pad, rows[0])]).astype(np.int64)
        yield {"image": images[take], "label": labels[take],
               "mask": np.concatenate([np.ones(len(chunk)), np.zeros(pad)]).astype(np.float32)}
